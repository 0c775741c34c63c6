# %% [markdown]
# # Grow a keras_hub GPT-2
#
# **What you will learn**
#
# * how to grow a `keras_hub.models.GPT2CausalLM` into a wider and deeper
#   `GPT2CausalLM` that computes the same function: same loss, same greedy
#   generations;
# * what changes in the config (`hidden_dim`, `num_heads`, `intermediate_dim`,
#   `num_layers`) and what `keras_net2net` does to keep the tied LM head exact;
# * how to keep training the grown model next to the teacher.
#
# The model is a tiny GPT-2 built from its config (no download), trained a
# little on a synthetic corpus; everything runs in about a minute on a CPU.

# %% [markdown]
# ## Setup
#
# Keras 3 picks its backend when it is first imported, so set it before that.

# %%
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import tempfile

import keras
import keras_hub
import matplotlib.pyplot as plt
import numpy as np

import keras_net2net as n2n

keras.utils.set_random_seed(0)

# %% tags=["parameters"]
# Run sizes.
TRAIN_SEQUENCES, TEST_SEQUENCES = 1024, 256
TEACHER_EPOCHS = 6  # the teacher's training, batches of 64
MORE_EPOCHS = 3  # teacher and student, after growth

# %% [markdown]
# ## A synthetic corpus
#
# Each sequence counts up from a random start by a random step (1, 2 or 3),
# modulo a vocabulary of 24 tokens, e.g. `5 7 9 11 ...`. Predicting the next
# token needs the two tokens before it, which the attention layers can learn.

# %%
VOCAB, LENGTH = 24, 12


def corpus(n, seed):
    rng = np.random.default_rng(seed)
    start = rng.integers(0, VOCAB, size=(n, 1))
    step = rng.integers(1, 4, size=(n, 1))
    tokens = (start + step * np.arange(LENGTH + 1)) % VOCAB
    x = {"token_ids": tokens[:, :-1].astype("int32"),
         "padding_mask": np.ones((n, LENGTH), "int32")}
    return x, tokens[:, 1:].astype("int32")


x_train, y_train = corpus(TRAIN_SEQUENCES, seed=0)
x_test, y_test = corpus(TEST_SEQUENCES, seed=1)

# %% [markdown]
# ## A tiny GPT-2, trained a little
#
# `preprocessor=None`: we feed token ids directly. The backbone is built from
# its config, with random weights.

# %%
backbone = keras_hub.models.GPT2Backbone(
    vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=16,
    intermediate_dim=32, max_sequence_length=LENGTH, dropout=0.0)
teacher = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
teacher.compile(optimizer=keras.optimizers.Adam(3e-3), sampler="greedy", jit_compile=False,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
history = teacher.fit(x_train, y_train, batch_size=64, epochs=TEACHER_EPOCHS, verbose=0,
                      validation_data=(x_test, y_test))
print(f"teacher: {teacher.count_params():,} parameters, "
      f"validation loss {history.history['val_loss'][-1]:.3f}")

# %% [markdown]
# ## Grow it
#
# `widen=2.0` doubles the model width, the heads (the head dim is kept) and the
# feed-forward width; `deepen` inserts an identity block of the same class
# after `transformer_layer_1` (its attention and feed-forward output
# projections start at zero: in a pre-LN block, x + 0 + 0 = x). The result is a
# `GPT2CausalLM` again, on a `GPT2Backbone` with the new config.

# %%
student, report = n2n.expand_model(teacher, widen=2.0, deepen=["transformer_layer_1"],
                                   seed=0, return_report=True)
print(type(student).__name__, type(student.backbone).__name__)
for key in ("hidden_dim", "num_heads", "intermediate_dim", "num_layers"):
    print(f"{key:<17} {backbone.get_config()[key]:>4} -> {student.backbone.get_config()[key]}")
print("max relative error of the logits:", f"{report.max_relative_error:.1e}")

# %% [markdown]
# The LM head is the token embedding in reverse (tied weights). Its copied
# columns would count each copied channel twice in the logits, so the final
# LayerNorm's scale and shift are divided by the copy counts, as staged
# training does: the logits come out exact, and the tie is kept.
#
# ## Same loss, same generations

# %%
student.compile(optimizer=keras.optimizers.Adam(1e-3), sampler="greedy", jit_compile=False,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
teacher.compile(optimizer=keras.optimizers.Adam(1e-3), sampler="greedy", jit_compile=False,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
loss_teacher = teacher.evaluate(x_test, y_test, verbose=0, return_dict=True)["loss"]
loss_student = student.evaluate(x_test, y_test, verbose=0, return_dict=True)["loss"]
print(f"validation loss: teacher {loss_teacher:.5f}, student {loss_student:.5f}")

prompt = {"token_ids": np.zeros((3, LENGTH), "int32"), "padding_mask": np.zeros((3, LENGTH), "int32")}
prompt["token_ids"][:, :3] = [[1, 2, 3], [5, 7, 9], [20, 23, 2]]
prompt["padding_mask"][:, :3] = 1
generated = [m.generate(prompt, max_length=LENGTH, stop_token_ids=None)["token_ids"]
             for m in (teacher, student)]
print(generated[0])
print("student generates the same tokens:", bool(np.array_equal(*generated)))

# %% [markdown]
# ## Save and load
#
# The student is a plain keras_hub model: `.keras` files load back without
# custom objects.

# %%
path = os.path.join(tempfile.mkdtemp(), "student.keras")
student.save(path)
loaded = keras.models.load_model(path)
same = np.array_equal(np.asarray(student(x_test)), np.asarray(loaded(x_test)))
print(type(loaded).__name__, "reloaded, same outputs:", same)

# %% [markdown]
# ## Keep training
#
# The teacher and the student continue for the same number of steps on the same
# data. The student starts from the teacher's loss, not from chance.

# %%
more = dict(batch_size=64, epochs=MORE_EPOCHS, verbose=0, validation_data=(x_test, y_test))
curves = {name: [loss] + model.fit(x_train, y_train, **more).history["val_loss"]
          for name, model, loss in (("teacher", teacher, loss_teacher),
                                    ("student (grown)", student, loss_student))}
plt.figure(figsize=(5, 3))
for name, curve in curves.items():
    plt.plot(range(len(curve)), curve, marker="o", label=name)
plt.xlabel("epochs after growing")
plt.ylabel("validation loss")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## What to try next
#
# * `widen=1.5`: GPT-2 is pre-LN, so the stream grows at non-integer factors
#   too, with pads that carry the per-token mean (LEMON).
# * `widen={"hidden_dim": 64, "num_heads": 4}`: the head dim grows to 16.
# * Grow the backbone alone, `n2n.expand_model(teacher.backbone, widen=2.0)`,
#   and build a `GPT2CausalLM` on it: its logits are the teacher's too.
