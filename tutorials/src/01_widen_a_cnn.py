# %% [markdown]
# # Widen a CNN without changing what it computes
#
# **What you will learn**
#
# * how `keras_net2net` finds the *channel groups* of a model: the layers whose
#   channels must grow together, and the ones it keeps at their width (and why);
# * how to widen a trained CNN with `expand_model` (Net2WiderNet) and read its
#   report;
# * how to check for yourself that the wider *student* makes the same predictions
#   as the *teacher*;
# * why you add symmetry-breaking noise before fine-tuning the student, and how
#   the fine-tuning goes.
#
# The data are scikit-learn's bundled 8x8 handwritten digits, so everything runs
# in well under a minute on a laptop CPU.

# %% [markdown]
# ## Setup
#
# Keras 3 picks its backend when it is first imported, so set it before that.

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
print("keras", keras.__version__, "backend", keras.backend.backend())

# %% tags=["parameters"]
# Run sizes.
TEACHER_EPOCHS = 15  # the teacher's training
FINE_TUNE_EPOCHS = 5  # student and teacher, after growth

# %% [markdown]
# ## Data: 1,797 handwritten digits
#
# Each image is 8x8 pixels with values 0..16. We scale them to [0, 1], add a
# channel axis and keep a fifth of them for testing.

# %%
digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]  # (1797, 8, 8, 1)
labels = digits.target
x_train, x_test, y_train, y_test = train_test_split(
    images, labels, test_size=0.2, random_state=0, stratify=labels)
print("train", x_train.shape, "test", x_test.shape)

fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for ax, image, label in zip(axes, x_train, y_train):
    ax.imshow(image[..., 0], cmap="gray_r")
    ax.set_title(int(label))
    ax.axis("off")
plt.show()

# %% [markdown]
# ## The teacher: a small CNN
#
# Two convolutions, a max-pooling, a dense hidden layer and a `logits` layer
# without activation. Layer names matter: growth plans refer to layers by name.

# %%
def make_cnn(conv1=8, conv2=16, fc1=32):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(conv1, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(conv2, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc1, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn")


def compile_model(model, learning_rate=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


teacher = compile_model(make_cnn())
teacher.fit(x_train, y_train, epochs=TEACHER_EPOCHS, batch_size=32, verbose=0)
_, teacher_accuracy = teacher.evaluate(x_test, y_test, verbose=0)
print(f"teacher: {teacher.count_params():,} parameters, test accuracy {teacher_accuracy:.3f}")

# %% [markdown]
# ## Channel groups: which layers grow together
#
# Widening `conv1` from 8 to 12 channels is not a local change: `conv2` reads
# those channels, so its kernel needs 12 input rows too. Widening `conv2`
# reaches further: its channels pass through `pool` and `flatten` (where each
# channel owns one row of `fc1`'s kernel *per spatial position*) before `fc1`
# mixes them. `explain_model` walks the graph and reports these *channel
# groups* without changing anything. A group is frozen when it touches
# something that cannot grow, like the model's input or output.

# %%
explained = n2n.explain_model(teacher)
for group in explained.groups:
    status = "kept: " + "; ".join(group["reasons"]) if group["frozen"] else "can grow"
    print(f"{group['name']:<12} width {group['old_width']:>3}  {status}")
    print(f"{'':<12} couples {', '.join(group['members'])}")

# %% [markdown]
# ## Widen
#
# `widen` takes one factor for every group that can grow (`widen=1.5`) or a
# width per layer. Each new unit copies an existing one (chosen at random,
# seeded), and the layers that read the group divide the copied weights by the
# number of copies, so the sum they compute is unchanged. The report lists what
# grew, what was kept, and the verification: teacher and student are run on the
# same probe batch and compared.

# %%
student, report = n2n.expand_model(
    teacher, widen={"conv1": 12, "conv2": 32, "fc1": 64}, seed=0, return_report=True)
print(report)

# %% [markdown]
# ## Same predictions, more parameters
#
# Don't take the report's word for it: compare the logits on the test set. We
# measure the largest absolute difference and divide it by the largest logit,
# rather than summing signed differences that could cancel.

# %%
teacher_logits = teacher.predict(x_test, verbose=0)
student_logits = student.predict(x_test, verbose=0)
max_abs = np.max(np.abs(student_logits - teacher_logits))
relative = max_abs / np.max(np.abs(teacher_logits))
agree = np.mean(teacher_logits.argmax(1) == student_logits.argmax(1))
print(f"max |student - teacher| = {max_abs:.2e}, relative error = {relative:.2e}")
print(f"same predicted class on {agree:.1%} of the test set")

plt.figure(figsize=(4.5, 4.5))
plt.scatter(teacher_logits.ravel(), student_logits.ravel(), s=4, alpha=0.4)
lims = [teacher_logits.min(), teacher_logits.max()]
plt.plot(lims, lims, "k--", lw=1, label="y = x")
plt.xlabel("teacher logit")
plt.ylabel("student logit")
plt.title("Every test logit, teacher vs student")
plt.legend()
plt.show()

# %% [markdown]
# Where did the parameters go? `fc1` grows the most: its kernel has one row per
# channel *and* spatial position of `conv2`'s output.

# %%
names = [layer.name for layer in teacher.layers if layer.count_params()]
before = [teacher.get_layer(n).count_params() for n in names]
after = [student.get_layer(n).count_params() for n in names]
for name, b, a in zip(names, before, after):
    print(f"{name:<8} {b:>7,} -> {a:>7,}")
print(f"{'total':<8} {teacher.count_params():>7,} -> {student.count_params():>7,}")

positions = np.arange(len(names))
plt.figure(figsize=(6, 3))
plt.bar(positions - 0.2, before, width=0.4, label="teacher")
plt.bar(positions + 0.2, after, width=0.4, label="student")
plt.xticks(positions, names)
plt.ylabel("parameters")
plt.legend()
plt.show()

# %% [markdown]
# The mapping is in the report, so you can see what each new unit copies:
# unit `j` of `conv1` in the student is unit `g[j]` of the teacher. (Pass
# `mappings=report.mappings()` to `expand_model` to replay the same growth.)

# %%
g = np.array(report.mappings()["conv1"])
print("conv1 mapping g:", g.tolist())
same = np.allclose(student.get_layer("conv1").kernel.numpy(),
                   teacher.get_layer("conv1").kernel.numpy()[..., g])
print("student conv1 filters are teacher filters g[j]:", same)

# %% [markdown]
# ## Fine-tuning: break the symmetry first
#
# A unit and its copy compute the same activation and their outgoing weights
# are equal, so they get **identical gradients**: trained as is, the copies
# never drift apart, and the student stays as narrow as the teacher in
# disguise. One epoch is enough to see it:

# %%
GROWTH = {"conv1": 12, "conv2": 32, "fc1": 64}


def copy_gap(model, g, layer="conv1"):
    """Largest difference between a new filter and the filter it copies."""
    kernel = model.get_layer(layer).kernel.numpy()
    n = teacher.get_layer(layer).filters
    return float(np.max(np.abs(kernel[..., n:] - kernel[..., g[n:]])))


exact_student, exact_report = n2n.expand_model(teacher, widen=GROWTH, seed=0,
                                               return_report=True)
compile_model(exact_student, 3e-4).fit(x_train, y_train, epochs=1, verbose=0)
g = np.array(exact_report.mappings()["conv1"])
print(f"noise=0: new conv1 filters differ from their originals by "
      f"{copy_gap(exact_student, g):.1e} after one epoch")

# %% [markdown]
# `noise=` adds a little noise to the weights that read the copies. In the
# default `noise_mode="balanced"` the noise on the copies of a unit sums to
# zero, so the student still computes the teacher's function exactly, but the
# copies now receive different gradients and go their own way.

# %%
noisy_student, noisy_report = n2n.expand_model(teacher, widen=GROWTH, noise=0.05,
                                               seed=0, return_report=True)
print(f"noise=0.05: relative error {noisy_report.max_relative_error:.1e} (still exact)")
compile_model(noisy_student, 3e-4).fit(x_train, y_train, epochs=1, verbose=0)
g = np.array(noisy_report.mappings()["conv1"])
print(f"noise=0.05: new conv1 filters differ from their originals by "
      f"{copy_gap(noisy_student, g):.1e} after one epoch")

# %% [markdown]
# Now fine-tune the student with a smaller learning rate, and for comparison
# keep training the teacher for the same number of epochs. Epoch 0 is right
# after growth: the student starts exactly where the teacher is.

# %%
def fit_curves(model, epochs=FINE_TUNE_EPOCHS):
    start_loss, start_accuracy = model.evaluate(x_test, y_test, verbose=0)
    history = model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0,
                        validation_data=(x_test, y_test)).history
    return ([start_loss] + history["val_loss"],
            [start_accuracy] + history["val_accuracy"])


student = compile_model(
    n2n.expand_model(teacher, widen=GROWTH, noise=0.05, seed=0), 3e-4)
curves = {f"student ({student.count_params():,} params)": fit_curves(student)}
compile_model(teacher, 3e-4)
curves[f"teacher ({teacher.count_params():,} params)"] = fit_curves(teacher)

fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5), layout="constrained")
for (label, (loss, accuracy)), style in zip(curves.items(), ["o-", "s--"]):
    ax_loss.plot(loss, style, label=label)
    ax_acc.plot(accuracy, style, label=label)
ax_loss.set(xlabel="fine-tuning epoch", ylabel="test loss", title="Test loss")
ax_acc.set(xlabel="fine-tuning epoch", ylabel="test accuracy", title="Test accuracy")
ax_loss.legend()
plt.show()
for label, (loss, accuracy) in curves.items():
    print(f"{label}: accuracy {accuracy[0]:.3f} -> {accuracy[-1]:.3f}, "
          f"loss {loss[0]:.3f} -> {loss[-1]:.3f}")

# %% [markdown]
# Two things to notice. Fine-tuning starts from the teacher's accuracy, not
# from chance: nothing the teacher learnt was thrown away. And on a data set
# this small the teacher is hardly short of capacity, so the student pulls
# ahead only a little (the test loss shows it better than the accuracy of 360
# examples); growth pays off when the small model has stopped improving. Tutorial 03 compares the student with the same wide network
# trained from scratch.

# %% [markdown]
# ## What to try next
#
# * Widen everything that can grow with a factor: `widen=2.0`.
# * Try `mapping="round_robin"`, or `noise_mode="additive"` (the paper's noise,
#   which is *not* exact: check `report.max_relative_error`).
# * Save the report with `report.to_json("report.json")`; the student itself is
#   a plain Keras model: `student.save("student.keras")`.
# * Deepen as well: `deepen=["conv2"]` inserts an identity convolution after
#   `conv2` (see tutorial 02).
# * On a model with residual connections, `explain_model` shows one group per
#   chain of `Add`s: see tutorials 02 and 04.
