# %% [markdown]
# # Deepen and widen a residual network
#
# **What you will learn**
#
# * why every layer joined by a residual `Add` widens as one channel group;
# * the two ways `expand_model` deepens a network (Net2DeeperNet): an
#   **identity layer** (a convolution whose kernel is the identity, plus a copy
#   of the BatchNorm and activation that follow the layer), or a **residual
#   block** `x + f(x)` whose last scale starts at zero;
# * when an inserted activation keeps the function exact, and when the layer is
#   inserted linear instead;
# * why inserted BatchNorm layers want statistics from real data (`data=`), and
#   how to read the inference-mode and training-mode errors in the report.

# %%
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import keras
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_net2net as n2n

keras.utils.set_random_seed(0)

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)

# %% tags=["parameters"]
# Run sizes.
TEACHER_EPOCHS = 12  # the teacher's training
FINE_TUNE_EPOCHS = 3  # student and teacher, after growth

# %% [markdown]
# ## The teacher: a small ResNet
#
# A Conv-BatchNorm-ReLU stem and two residual blocks, each adding its input to
# a Conv-BN-ReLU-Conv-BN branch, then global average pooling and the logits.

# %%
def conv_bn(x, filters, name, relu=True):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def make_resnet(width=8, blocks=2):
    inputs = keras.Input((8, 8, 1), name="image")
    x = conv_bn(inputs, width, "stem")
    for b in range(1, blocks + 1):
        y = conv_bn(x, width, f"block{b}a")
        y = conv_bn(y, width, f"block{b}b", relu=False)
        x = keras.layers.Add(name=f"block{b}_add")([x, y])
        x = keras.layers.ReLU(name=f"block{b}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet")


teacher = make_resnet()
teacher.compile(optimizer=keras.optimizers.Adam(3e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=["accuracy"])
teacher.fit(x_train, y_train, epochs=TEACHER_EPOCHS, batch_size=32, verbose=0)
_, accuracy = teacher.evaluate(x_test, y_test, verbose=0)
print(f"teacher: {teacher.count_params():,} parameters, test accuracy {accuracy:.3f}")

# %% [markdown]
# ## One group for the whole residual stream
#
# `block1_add` adds the stem's channels to `block1b`'s, channel by channel, so
# they must be widened with **one** mapping: if new channel 9 copied channel 3
# on one side of the `Add` and channel 5 on the other, the sum would be
# wrong. The same goes for `block2_add`, so the stem, both `b` convolutions,
# their BatchNorms and the `logits` kernel form one group. Each block's
# inner convolution `a` is a group of its own.

# %%
for group in n2n.explain_model(teacher).groups:
    status = "kept: " + group["reasons"][0] if group["frozen"] else "can grow"
    print(f"{group['name']:<14} width {group['old_width']:>2}  {status}")
    print(f"{'':<14} couples {', '.join(group['members'])}")

# %% [markdown]
# ## Identity layers and residual blocks
#
# `deepen` names the layer to insert *after*. The inserted layer repeats the
# pattern that follows the named layer: after `block1a_conv` (followed by
# `block1a_bn` and `block1a_relu`) it inserts an identity convolution, a
# BatchNorm and a ReLU after the ReLU. That ReLU is exact: everything reaching
# it is already non-negative, and ReLU leaves such values alone. After
# `block2b_conv`, whose BatchNorm feeds the `Add` with no activation, the
# inserted layer is linear. `"residual"` inserts `x + f(x)` instead, with a
# ReLU inside `f` and the last BatchNorm's scale set to zero: exact whatever
# the activation, and free to learn from the first step.

# %%
student, report = n2n.expand_model(
    teacher, deepen={"block1a_conv": "identity", "block2b_conv": "identity",
                     "stem_conv": "residual"}, seed=0, return_report=True)
for inserted in report.inserted:
    exact = "exact" if inserted["exact"] else "approximate"
    print(f"after {inserted['anchor']:<13} {inserted['mode']:<9} activation "
          f"{inserted['activation']:<7} {exact}: {', '.join(inserted['layers'])}")
print(f"\nrelative error of the deeper student: {report.max_relative_error:.1e}")

# %% [markdown]
# When the values reaching the insertion point come from an activation that is
# not idempotent, copying it would change them (`tanh(tanh(x)) != tanh(x)`),
# so the identity layer is inserted linear and the report says why. A residual
# block has no such restriction:

# %%
inputs = keras.Input((16,))
hidden = keras.layers.Dense(32, activation="tanh", name="fc1")(inputs)
mlp = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
for how in ("identity", "residual"):
    _, mlp_report = n2n.expand_model(mlp, deepen={"fc1": how}, return_report=True)
    inserted = mlp_report.inserted[0]
    print(f"{how:<9} activation={inserted['activation']!r:<7} exact={inserted['exact']} "
          f"{inserted['note']}")

# %% [markdown]
# ## BatchNorm statistics from data
#
# An inserted BatchNorm is the identity in **inference** mode whatever its
# moving statistics. In **training** mode, though, it normalises each batch by
# the batch's own mean and variance, so with default statistics (mean 0,
# variance 1) the first training step would see a different network. Passing a
# batch of real inputs as `data=` sets each inserted BatchNorm to undo exactly
# the normalisation it will apply: `gamma = sqrt(var + eps)`, `beta = mean`.
# With `data=` the report also compares teacher and student in training mode
# (`report.verification["training"]`), on that batch.
#
# Here we widen **and** deepen, with and without `data=`:

# %%
plan = dict(widen=2.0, deepen={"block1a_conv": 1, "block2b_conv": "residual"},
            noise=0.05, seed=0)
batch = x_train[:256]
student_no_data, report_no_data = n2n.expand_model(teacher, return_report=True, **plan)
student, report = n2n.expand_model(teacher, data=batch, return_report=True, **plan)
print(report)

# %% [markdown]
# Without `data=` the report has no training-mode row, so we measure it
# ourselves. A training-mode call updates BatchNorm moving statistics, so the
# helper saves and restores them; the error is max |Δ| over max |y|, as in the
# report.

# %%
def relative_error(teacher, student, x, training):
    state = [(v, v.numpy()) for m in (teacher, student) for v in m.non_trainable_variables]
    y = keras.ops.convert_to_numpy(teacher(x, training=training))
    z = keras.ops.convert_to_numpy(student(x, training=training))
    for variable, value in state:
        variable.assign(value)
    return float(np.max(np.abs(y - z)) / np.max(np.abs(y)))


widen_only = n2n.expand_model(teacher, widen=2.0, seed=0)
other_batch = x_test[:256]  # not the batch the statistics came from
variants = {"widen only": widen_only, "widen + deepen, no data": student_no_data,
            "widen + deepen, data=": student}
errors = {name: [relative_error(teacher, model, batch, False),
                 relative_error(teacher, model, batch, True),
                 relative_error(teacher, model, other_batch, True)]
          for name, model in variants.items()}
print("training-mode row of the report:", report.verification["training"])
for name, values in errors.items():
    print(f"{name:<24} inference {values[0]:.1e}   training {values[1]:.1e}   "
          f"training, other batch {values[2]:.1e}")

# %%
labels = ["inference", "training mode,\nthe data= batch", "training mode,\nanother batch"]
positions = np.arange(len(labels))
plt.figure(figsize=(8, 3.8))
for k, (name, values) in enumerate(errors.items()):
    plt.bar(positions + (k - 1) * 0.27, values, width=0.27, label=name)
plt.yscale("log")
plt.axhline(1e-4, color="k", ls=":", lw=1, label="float32 tolerance")
plt.xticks(positions, labels)
plt.ylabel("max |Δ| / max |y|")
plt.title("Student vs teacher, relative error of the logits")
plt.legend(fontsize=8)
plt.show()

# %% [markdown]
# Reading the chart:
#
# * **Inference**: every student reproduces the teacher to float32 precision.
# * **Training mode, widening only**: also exact. A copied channel has the same
#   batch statistics as its original, so the widened BatchNorms normalise it the
#   same way.
# * **Training mode, widened and deepened without `data=`**: the inserted BatchNorm
#   standardises what it sees, and the student is a different function until
#   training adapts it.
# * **With `data=`**: exact on the batch the statistics came from, and close on
#   any other batch (batch statistics vary a little from batch to batch).
#
# ## Fine-tune the grown network
#
# The student is a plain Keras model and trains like one. Here it is
# fine-tuned next to the teacher, which keeps training for the same number of
# epochs; epoch 0 is right after growth. (The `plan` above includes
# `noise=0.05`, so that copied channels can part ways: see tutorial 01.)

# %%
def fine_tune(model, epochs=FINE_TUNE_EPOCHS):
    model.compile(optimizer=keras.optimizers.Adam(3e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    start = model.evaluate(x_test, y_test, verbose=0)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0,
                        validation_data=(x_test, y_test)).history
    return [start[0]] + history["val_loss"], [start[1]] + history["val_accuracy"]


curves = {f"student ({student.count_params():,} params, {len(student.layers)} layers)":
          fine_tune(student),
          f"teacher ({teacher.count_params():,} params, {len(teacher.layers)} layers)":
          fine_tune(teacher)}
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
for (name, (loss, accuracy)), style in zip(curves.items(), ["o-", "s--"]):
    ax_loss.plot(loss, style, label=name)
    ax_acc.plot(accuracy, style, label=name)
ax_loss.set(xlabel="fine-tuning epoch", ylabel="test loss")
ax_acc.set(xlabel="fine-tuning epoch", ylabel="test accuracy")
ax_loss.legend(fontsize=8)
plt.show()
for name, (loss, accuracy) in curves.items():
    print(f"{name}: test accuracy {accuracy[0]:.3f} -> {accuracy[-1]:.3f}")

# %% [markdown]
# Both curves jump in the first epoch, most likely because the learning rate
# is ten times smaller than the teacher's and lets the weights settle; the student keeps
# pace with the teacher from the very first epoch, with six times the
# parameters to grow into on a harder task.

# %% [markdown]
# ## What to try next
#
# * Deepen several times at once: `deepen={"block1a_conv": 3}` inserts three
#   identity layers.
# * Compare `noise=0` with `noise=0.05` when fine-tuning: with no noise the
#   copied channels never part ways (tutorial 01 shows why).
# * Insert a residual block after the last block and compare how quickly it
#   starts to matter: watch the inserted BatchNorm's `gamma` leave zero.
# * Grow a real architecture: tutorial 04 widens `keras.applications` models.
