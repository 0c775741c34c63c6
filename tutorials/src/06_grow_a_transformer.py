# %% [markdown]
# # Grow a transformer
#
# **What you will learn**
#
# * how `keras_net2net` sees a transformer encoder: one channel group for the
#   whole residual stream (embeddings, LayerNorms, attention output, feed-forward
#   output), one for the feed-forward's inner width, and groups *inside* the
#   attention layer for its heads and head dims;
# * how to widen it by a non-integer factor (x1.5) and still get the teacher's
#   function back, although LayerNorm normalises over the very channels that grow;
# * how to ask for more attention heads in one layer, and how to deepen with a
#   zero-initialised residual block;
# * how to check teacher and student yourself, save and reload the student as a
#   plain Keras model, and fine-tune it next to the teacher.
#
# The data are synthetic token sequences, the model has a few thousand
# parameters, and everything runs in about a minute on a laptop CPU.

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
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import keras_net2net as n2n

keras.utils.set_random_seed(0)

# %% tags=["parameters"]
# Run sizes, in batches of 64.
TEACHER_STEPS, TEACHER_EVERY = 160, 20  # train, evaluating every TEACHER_EVERY steps
FINE_TUNE_STEPS, FINE_TUNE_EVERY = 120, 10  # student and teacher, after growth
TEST_EXAMPLES = 1000

# %% [markdown]
# ## Data: does A come before B?
#
# Each sequence holds 24 tokens: one `A`, one `B`, and 22 filler tokens drawn
# from 17 others. The label is 1 when `A` comes before `B`. Counting tokens
# (what average pooling alone could do) says nothing about the label: the model
# has to find both markers and compare their positions, which is the job of
# attention and the position embeddings.

# %%
VOCAB, LENGTH, A, B = 20, 24, 1, 2  # tokens 3..19 are filler


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(3, VOCAB, size=(n, LENGTH))
    where = np.argsort(rng.random((n, LENGTH)), axis=1)[:, :2]  # two distinct positions
    rows = np.arange(n)
    x[rows, where[:, 0]], x[rows, where[:, 1]] = A, B
    return x.astype("int32"), (where[:, 0] < where[:, 1]).astype("int32")


x_train, y_train = make_data(8000, seed=0)
x_test, y_test = make_data(TEST_EXAMPLES, seed=1)
letters = np.array(list("?AB") + list("cdefghijklmnopqrs"))  # token 0 never occurs
for tokens, label in zip(x_test[:4], y_test[:4]):
    print("".join(letters[tokens]), "->", label)

# %% [markdown]
# ## The teacher: a pre-LN transformer encoder
#
# Token and position embeddings, one pre-LN block (LayerNorm, self-attention
# with 2 heads, residual add; LayerNorm, a GELU feed-forward, residual add), a
# final LayerNorm, average pooling over the sequence and the logits. All of it
# is plain functional Keras: the position ids are `0 * tokens + arange(24)`,
# built from the input so that the position embedding is a layer of the graph
# (an `Embedding` called on a constant would be folded into a constant).
#
# The teacher is deliberately small and trained for 160 steps only.

# %%
def make_encoder(dim=8, heads=2, key_dim=4, ffn=16):
    tokens = keras.Input((LENGTH,), dtype="int32", name="tokens")
    positions = 0 * tokens + keras.ops.arange(LENGTH, dtype="int32")
    x = keras.layers.Embedding(VOCAB, dim, name="token_embedding")(tokens)
    x = x + keras.layers.Embedding(LENGTH, dim, name="position_embedding")(positions)
    h = keras.layers.LayerNormalization(name="ln1")(x)
    h = keras.layers.MultiHeadAttention(heads, key_dim, name="mha")(h, h)
    x = keras.layers.Add(name="res1")([x, h])
    h = keras.layers.LayerNormalization(name="ln2")(x)
    h = keras.layers.Dense(ffn, activation="gelu", name="ffn_in")(h)
    h = keras.layers.Dense(dim, name="ffn_out")(h)
    x = keras.layers.Add(name="res2")([x, h])
    x = keras.layers.LayerNormalization(name="ln_final")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    outputs = keras.layers.Dense(2, name="logits")(x)
    return keras.Model(tokens, outputs, name="encoder")


def compiled(model, learning_rate=3e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_curve(model, steps, every, seed=0):
    """Test loss and accuracy before training and after every `every` steps."""
    batches = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
               .shuffle(len(x_train), seed=seed).repeat().batch(64))
    start = model.evaluate(x_test, y_test, verbose=0)
    history = model.fit(batches, steps_per_epoch=every, epochs=steps // every,
                        validation_data=(x_test, y_test), shuffle=False, verbose=0).history
    return (np.array([start[0]] + history["val_loss"]),
            np.array([start[1]] + history["val_accuracy"]))


teacher = compiled(make_encoder())
teacher_curve = test_curve(teacher, TEACHER_STEPS, TEACHER_EVERY)
print(f"teacher: {teacher.count_params():,} parameters, test accuracy "
      f"{teacher_curve[1][-1]:.3f} after {TEACHER_STEPS} steps")

# %% [markdown]
# ## How the encoder can grow
#
# `explain_model` lists the channel groups without growing anything:
#
# * **the residual stream** (named after its first producer, `token_embedding`):
#   both embeddings, the two residual `Add`s, the attention's output
#   projection, `ffn_out`, all three LayerNorms and the rows of `logits` read the
#   same 8 channels, so they widen with one mapping;
# * **`ffn_in`**: the feed-forward's inner width, read by `ffn_out`;
# * **`mha:num_heads`, `mha:key_dim`, `mha:value_dim`**: widths that live inside
#   the attention layer (its kernels are `(model, heads, dim)` and
#   `(heads, dim, model)`) and in its config. A global factor grows the heads;
#   head dims grow when asked for by name;
# * the token input and the logits keep their width: they are the model's
#   interface.

# %%
print(n2n.explain_model(teacher))

# %% [markdown]
# ## Widen by 1.5: LayerNorm at a non-integer factor
#
# Copying channels changes a LayerNorm's mean and variance unless every channel
# is copied equally often, which x1.5 (8 -> 12 channels) cannot do. The toolkit
# uses the construction of LEMON (Wang et al., ICLR 2024) instead: each of the 8
# channels is kept once, and the 4 new ones are *pads* that carry the per-token
# mean of the stream (every writer into the stream writes the average of its
# columns there). The LayerNorm then sees the same mean and a variance scaled
# by s = 8/12, which `gamma * sqrt(s)` and `epsilon * s` undo. The heads go
# from 2 to 3 (a copied head's output is divided between it and its original)
# and the feed-forward from 16 to 24 units.
#
# The report lists what grew, the groups kept (only the interface), nothing
# skipped, and the error measured on real test sequences.

# %%
wide, report = n2n.expand_model(teacher, widen=1.5, seed=0, verify_data=x_test[:256],
                                return_report=True)
print(report)
print("\nskipped requests:", report.skipped)

# %% [markdown]
# ## More heads in one layer, and a deeper block
#
# A dict names layers: `{"mha": {"num_heads": 4}}` doubles the heads of `mha`
# and leaves everything else as it is. Head dims work the same way: a copied
# key dim would count twice in `q . k`, so the toolkit copies it on the key
# side only and rescales the query side, which keeps every score.
#
# `deepen={"ffn_out": "residual"}` inserts `x + f(x)` after the feed-forward,
# with `f` a Dense-ReLU-Dense whose last kernel and bias are zero: the identity
# at first, whatever the activation inside, and trainable from the first step.

# %%
_, heads_report = n2n.expand_model(teacher, widen={"mha": {"num_heads": 4, "key_dim": 8}},
                                   seed=0, verify_data=x_test[:256], return_report=True)
for row in heads_report.inner:
    print(f"{row['layer']}.{row['width']}: {row['old_width']} -> {row['new_width']}")
print(f"relative error {heads_report.max_relative_error:.1e}\n")

_, deep_report = n2n.expand_model(teacher, deepen={"ffn_out": "residual"},
                                  verify_data=x_test[:256], return_report=True)
for inserted in deep_report.inserted:
    print(f"after {inserted['anchor']}: {inserted['mode']} block, activation "
          f"{inserted['activation']}, exact={inserted['exact']}: {', '.join(inserted['layers'])}")
print(f"relative error {deep_report.max_relative_error:.1e}")

# %% [markdown]
# ## The student: all of it at once
#
# Now the student we will fine-tune: the stream 8 -> 12, the feed-forward
# 16 -> 32, 4 heads, and the residual block. In a dict, a group is named by any
# layer that writes it. `noise=0.05` perturbs the copies so that they can
# part ways during training; the default `noise_mode="balanced"` adds it with
# zero sum over each unit's copies, so the function stays exact (tutorial 01
# shows why copies without noise stay copies forever).
#
# We do not take the report's word for it: we run both models on all 1,000
# test sequences ourselves.

# %%
student, report = n2n.expand_model(
    teacher, widen={"token_embedding": 12, "ffn_in": 32, "mha": {"num_heads": 4}},
    deepen={"ffn_out": "residual"}, noise=0.05, seed=0, verify_data=x_test[:256],
    return_report=True)
print(report, "\n")

y_teacher = teacher.predict(x_test, verbose=0)
y_student = student.predict(x_test, verbose=0)
max_abs = np.max(np.abs(y_teacher - y_student))
print(f"parameters: teacher {teacher.count_params():,}, student {student.count_params():,}")
print(f"max |Δ| = {max_abs:.2e}, relative error max |Δ| / max |y| = "
      f"{max_abs / np.max(np.abs(y_teacher)):.2e}")
print("same prediction on", np.mean(y_teacher.argmax(1) == y_student.argmax(1)) * 100,
      "% of the test sequences")

# %% [markdown]
# ## Save and reload
#
# The student is made of plain Keras layers (a bigger `MultiHeadAttention`
# config, wider `Dense` and `Embedding` layers, rescaled LayerNorms), so
# `keras.models.load_model` reads it back without custom objects.

# %%
path = os.path.join(tempfile.mkdtemp(), "student.keras")
student.save(path)
reloaded = keras.models.load_model(path)
print(f"{os.path.basename(path)}: {os.path.getsize(path) / 1024:.0f} KiB, max |Δ| after "
      f"reloading: {np.max(np.abs(reloaded.predict(x_test, verbose=0) - y_student)):.1e}")
print({layer.name: layer.num_heads for layer in reloaded.layers
       if isinstance(layer, keras.layers.MultiHeadAttention)})

# %% [markdown]
# ## Fine-tune the student next to the teacher
#
# Both continue from the same point for 120 steps, with the same optimizer,
# learning rate and batches; we evaluate on the test set every 10 steps. The
# teacher's own training is drawn at negative steps.

# %%
student_curve = test_curve(compiled(student, 2e-3), FINE_TUNE_STEPS, FINE_TUNE_EVERY, seed=1)
continued_curve = test_curve(compiled(teacher, 2e-3), FINE_TUNE_STEPS, FINE_TUNE_EVERY, seed=1)

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
before = np.arange(0, TEACHER_STEPS + 1, TEACHER_EVERY) - TEACHER_STEPS
after = np.arange(0, FINE_TUNE_STEPS + 1, FINE_TUNE_EVERY)
for ax, k, label in ((ax_loss, 0, "test loss"), (ax_acc, 1, "test accuracy")):
    ax.plot(before, teacher_curve[k], "o-", ms=3, color="gray", label="teacher, before growth")
    ax.plot(after, continued_curve[k], "s--", ms=3, color="tab:orange",
            label=f"teacher continued ({teacher.count_params():,} params)")
    ax.plot(after, student_curve[k], "o-", ms=3, color="tab:blue",
            label=f"grown student ({student.count_params():,} params)")
    ax.axvline(0, color="k", lw=0.8)
    ax.set(xlabel="training step (batches of 64)", ylabel=label)
ax_acc.legend(fontsize=8, loc="lower right")
plt.show()
for name, (loss, accuracy) in (("teacher continued", continued_curve),
                               ("grown student", student_curve)):
    print(f"{name:<18} test loss {loss[0]:.3f} -> {loss[-1]:.3f}, "
          f"accuracy {accuracy[0]:.3f} -> {accuracy[-1]:.3f}")

# %% [markdown]
# Both curves start from the same point at step 0: growth costs the trained
# teacher nothing, although the student has twice the heads, a 1.5x stream, a
# 2x feed-forward and one more block. From there the student follows the
# teacher almost step for step. Under Adam that is to be expected: a copy's
# incoming weights get their original's gradient divided by the copy count,
# which Adam's normalisation undoes, so the copies step as their original
# would, and with a little noise they part ways only slowly. On a task this small the teacher is not short of capacity either, so
# the extra width has little to add in 120 steps; what matters is that the
# student starts where the teacher is, not at chance.

# %% [markdown]
# ## What to try next
#
# * Grow the head dims too: `widen={"mha": {"num_heads": 4, "key_dim": 8,
#   "value_dim": 8}}`, and check `report.inner`.
# * Make the task harder (longer sequences, several `A`s and `B`s) and shrink
#   the teacher until it runs out of capacity: that is where a grown student
#   should pull ahead.
# * Compare `noise=0` with `noise=0.05` when fine-tuning.
# * Replay a growth exactly with `mappings=report.mappings()`, or carry the
#   teacher's Adam state over with `n2n.expand_optimizer`.
