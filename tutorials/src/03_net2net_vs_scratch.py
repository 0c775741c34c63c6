# %% [markdown]
# # Net2Net vs training from scratch
#
# **What you will learn**
#
# * the experiment behind Net2Net's claim: a student grown from a trained
#   teacher reaches a given accuracy in fewer steps than the same architecture
#   trained from random weights;
# * how to run it yourself in a few lines of `model.fit`, averaged over seeds,
#   and how to read the curves;
# * how to run the same experiment with one command, `net2net-compare`.
#
# It takes about two minutes on a laptop CPU.

# %%
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import keras_net2net as n2n

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)

# %% [markdown]
# ## The three models
#
# * **teacher**: a deliberately small CNN (4 and 8 filters, 16 hidden units);
# * **student**: the teacher widened to 8 and 16 filters and 32 hidden units,
#   deepened with an identity convolution after `conv2`, with balanced noise so
#   the copied units can part ways. Same function as the teacher on day one;
# * **scratch**: the student's architecture with fresh random weights
#   (`keras.Model.from_config` builds new layers from the student's config).
#
# Student and scratch train with the same optimizer and learning rate on the
# same batches, and we evaluate on the test set every 15 steps.

# %%
def make_cnn(conv1=4, conv2=8, fc1=16):
    inputs = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Conv2D(conv1, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(conv2, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(fc1, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn")


def compiled(model, learning_rate=1e-3):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def accuracy_curve(model, steps, every, seed):
    """Test accuracy before training and after every `every` steps."""
    batches = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
               .shuffle(len(x_train), seed=seed).repeat().batch(32))
    start = model.evaluate(x_test, y_test, verbose=0)[1]
    # One Keras "epoch" per evaluation; the dataset shuffles itself.
    history = model.fit(batches, steps_per_epoch=every, epochs=steps // every,
                        validation_data=(x_test, y_test), shuffle=False, verbose=0)
    return np.array([start] + history.history["val_accuracy"])


TEACHER_STEPS, STUDENT_STEPS, EVERY = 450, 240, 15  # 45 steps = one epoch
GROWTH = dict(widen={"conv1": 8, "conv2": 16, "fc1": 32}, deepen=["conv2"], noise=0.05)

# %% [markdown]
# ## Run it, three seeds
#
# Each seed trains its own teacher for 10 epochs, grows it, and trains the
# student and the scratch model for about 5 epochs.

# %%
runs = {"teacher": [], "student": [], "scratch": []}
for seed in range(3):
    keras.utils.set_random_seed(seed)
    teacher = compiled(make_cnn())
    runs["teacher"].append(accuracy_curve(teacher, TEACHER_STEPS, 45, seed))
    student, report = n2n.expand_model(teacher, seed=seed, return_report=True, **GROWTH)
    runs["student"].append(accuracy_curve(compiled(student), STUDENT_STEPS, EVERY, seed))
    scratch = compiled(keras.Model.from_config(student.get_config()))
    runs["scratch"].append(accuracy_curve(scratch, STUDENT_STEPS, EVERY, seed))
    print(f"seed {seed}: teacher {runs['teacher'][-1][-1]:.3f}, student after growth "
          f"{runs['student'][-1][0]:.3f} (relative error {report.max_relative_error:.1e}), "
          f"final student {runs['student'][-1][-1]:.3f}, scratch {runs['scratch'][-1][-1]:.3f}")
print(f"parameters: teacher {teacher.count_params():,}, student and scratch "
      f"{student.count_params():,}")

# %% [markdown]
# ## The curves
#
# The teacher's training is drawn at negative steps: it is the price of the
# head start, paid on the smaller model (see the parameter counts above).
# Lines are the mean over seeds, bands the range.

# %%
mean = {name: np.mean(curves, axis=0) for name, curves in runs.items()}
low = {name: np.min(curves, axis=0) for name, curves in runs.items()}
high = {name: np.max(curves, axis=0) for name, curves in runs.items()}
steps = {"teacher": np.arange(0, TEACHER_STEPS + 1, 45) - TEACHER_STEPS,
         "student": np.arange(0, STUDENT_STEPS + 1, EVERY),
         "scratch": np.arange(0, STUDENT_STEPS + 1, EVERY)}
styles = {"teacher": ("gray", "teacher (small)"),
          "student": ("tab:blue", "Net2Net student"),
          "scratch": ("tab:orange", "same architecture, random init")}

plt.figure(figsize=(8, 4.4), layout="constrained")
for name, (color, label) in styles.items():
    plt.plot(steps[name], mean[name], "o-", ms=3, color=color, label=label)
    plt.fill_between(steps[name], low[name], high[name], color=color, alpha=0.2)
plt.axvline(0, color="k", lw=0.8)
plt.text(-10, 0.5, "grow here", fontsize=9, ha="right")
plt.xlabel("training step (batches of 32)")
plt.ylabel("test accuracy")
plt.ylim(0, 1)
plt.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=9)
plt.title("Teacher -> Net2Net student vs training from scratch")
plt.show()

# %% [markdown]
# How many steps does the scratch model need to catch up with where the student
# *starts*? And where do both end?

# %%
target = mean["student"][0]
reached = np.flatnonzero(mean["scratch"] >= target)
catch_up = steps["scratch"][reached[0]] if reached.size else None
print(f"student accuracy right after growth (mean): {target:.3f}")
print(f"scratch reaches it after {catch_up} steps" if catch_up is not None
      else f"scratch never reaches it in {STUDENT_STEPS} steps")
print(f"after {STUDENT_STEPS} steps: student {mean['student'][-1]:.3f}, "
      f"scratch {mean['scratch'][-1]:.3f}")

# %% [markdown]
# On digits the wide network learns fast from scratch too, so the head start
# is a few epochs and the two meet later; on larger problems (the paper grows
# ImageNet Inception models) the head start is worth days. The shape of the
# result is the same: the student never has to relearn what the teacher knew.
#
# The paper fine-tunes students with a tenth of the teacher's learning rate;
# `net2net-compare` below does the same (`--student_lr_scale`). Here student
# and scratch share one learning rate, so that only the starting point differs.
# Try `compiled(student, 1e-4)` above to see the trade-off: a smoother start,
# slower progress.
#
# ## The same experiment, one command
#
# `net2net-compare` trains a teacher, grows it into several students (`wider`,
# `deeper`, `both`) and trains each next to its scratch twin, averaging seeds.
# It writes `report.json` and `curves.png` into `--model_dir` and reports a
# speed-up: steps the scratch model needs to reach its own final accuracy,
# divided by the steps the student needs to reach it. A short run:

# %%
import json
import subprocess
import sys

from IPython.display import Image, display

command = [sys.executable, "-m", "keras_net2net.bin.compare", "--model_dir=runs/compare",
           "--data_dir=runs/tfds", "--arms=wider,deeper", "--seeds=1",
           "--teacher_steps=300", "--student_steps=200", "--eval_every=20"]
print("net2net-compare", " ".join(command[3:]))
result = subprocess.run(command, capture_output=True, text=True)
if result.returncode:
    print(result.stderr[-4000:])
result.check_returncode()
print(result.stdout[result.stdout.index("teacher accuracy"):])
display(Image("runs/compare/curves.png"))

# %% [markdown]
# `report.json` holds the curves and settings, for your own plots:

# %%
with open("runs/compare/report.json") as f:
    compare_report = json.load(f)
print("settings:", {k: compare_report["settings"][k] for k in
                    ("teacher_steps", "student_steps", "learning_rate", "student_learning_rate")})
for arm, result in compare_report["arms"].items():
    # No speed-up when the student never reaches the scratch model's final accuracy.
    faster = f"{result['speedup']:.1f}x" if result["speedup"] is not None else "never"
    print(f"{arm:<7} params {result['params']['teacher']:,} -> {result['params']['student']:,}, "
          f"speed-up {faster}, final accuracy {result['final_accuracy']}")

# %% [markdown]
# ## What to try next
#
# * Grow more: `widen=4.0`, or `deepen={"conv2": 2, "fc1": "residual"}`.
# * Compare `noise=0` with `noise=0.05` for the student (tutorial 01 shows why
#   copies need noise to part ways).
# * Run `net2net-compare --help` and try `--teacher_model=resnet_small`, more
#   `--seeds`, or `--student_lr_scale=1.0`.
# * Count cost in time, not steps: wrap each `fit` in `time.perf_counter()`.
