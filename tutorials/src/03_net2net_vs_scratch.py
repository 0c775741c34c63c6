# %% [markdown]
# # Net2Net vs training from scratch
#
# **What you will learn**
#
# * the experiment behind Net2Net's claim: a student grown from a trained
#   teacher reaches a given accuracy in fewer steps than the same architecture
#   trained from random weights;
# * how to measure it honestly: the scratch model trains as long as teacher
#   and student together, at its own best learning rate; the target is where
#   it converges; and the teacher's training is paid for, in FLOPs;
# * how to run the same experiment with one command, `net2net-compare`.
#
# It takes about a minute on a laptop CPU.

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
from keras_net2net.training import comparison, flops

digits = load_digits()
images = (digits.images / 16.0).astype("float32")[..., None]
x_train, x_test, y_train, y_test = train_test_split(
    images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)

# %% tags=["parameters"]
# Run sizes.
TEACHER_STEPS, STUDENT_STEPS, EVERY = 200, 100, 25  # 45 steps = one epoch
SEEDS = 3
# The net2net-compare run at the end.
COMPARE_TEACHER_STEPS, COMPARE_STUDENT_STEPS, COMPARE_EVERY = 100, 60, 20

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
# The protocol, the same as `net2net-compare`'s:
#
# * the scratch model trains **as many steps as teacher and student
#   together**, on the same batches, at the better of two learning rates
#   (a small sweep on the first seed);
# * the **target** is the scratch model's converged accuracy, the mean of its
#   last 5 evaluations; a curve reaches it at the first evaluation from which
#   3 consecutive evaluations average at or above it;
# * the student continues with the teacher's optimizer state
#   (`n2n.expand_optimizer`) and learning rate, as growth inside a run does.

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


def compiled(model, optimizer):
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def accuracy_curve(model, steps, seed):
    """Test accuracy before training and after every EVERY steps."""
    batches = (tf.data.Dataset.from_tensor_slices((x_train, y_train))
               .shuffle(len(x_train), seed=seed).repeat().batch(32))
    start = model.evaluate(x_test, y_test, verbose=0)[1]
    # One Keras "epoch" per evaluation; the dataset shuffles itself.
    history = model.fit(batches, steps_per_epoch=EVERY, epochs=steps // EVERY,
                        validation_data=(x_test, y_test), shuffle=False, verbose=0)
    return np.array([start] + history.history["val_accuracy"])


SCRATCH_STEPS = TEACHER_STEPS + STUDENT_STEPS
LEARNING_RATE, SWEEP = 1e-3, (1e-3, 3e-3)
GROWTH = dict(widen={"conv1": 8, "conv2": 16, "fc1": 32}, deepen=["conv2"], noise=0.05)

# %% [markdown]
# ## Run it, three seeds
#
# Each seed trains its own teacher, grows it, trains the student, and trains
# the scratch model for the teacher's and the student's steps together. The
# first seed tries both learning rates of the sweep on the scratch model.

# %%
runs = {"teacher": [], "student": [], "scratch": []}
sweep = {}
for seed in range(SEEDS):
    keras.utils.set_random_seed(seed)
    teacher = compiled(make_cnn(), keras.optimizers.Adam(LEARNING_RATE))
    runs["teacher"].append(accuracy_curve(teacher, TEACHER_STEPS, seed))
    student, report = n2n.expand_model(teacher, seed=seed, return_report=True, **GROWTH)
    carried = n2n.expand_optimizer(teacher.optimizer, student)
    runs["student"].append(accuracy_curve(compiled(student, carried), STUDENT_STEPS, seed))
    for rate in SWEEP if seed == 0 else [sweep["best"]]:
        keras.utils.set_random_seed(seed)
        scratch = compiled(keras.Model.from_config(student.get_config()),
                           keras.optimizers.Adam(rate))
        sweep[rate] = accuracy_curve(scratch, SCRATCH_STEPS, seed)
    if seed == 0:
        sweep["best"] = max(SWEEP, key=lambda rate: comparison.converged(sweep[rate]))
        print("scratch sweep, converged accuracy:",
              {rate: round(comparison.converged(sweep[rate]), 4) for rate in SWEEP},
              "-> learning rate", sweep["best"])
    runs["scratch"].append(sweep[sweep["best"]])
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
# Lines are the mean over seeds, bands the range; the dotted line is the
# target, the scratch model's converged accuracy.

# %%
mean = {name: np.mean(curves, axis=0) for name, curves in runs.items()}
low = {name: np.min(curves, axis=0) for name, curves in runs.items()}
high = {name: np.max(curves, axis=0) for name, curves in runs.items()}
steps = {"teacher": np.arange(0, TEACHER_STEPS + 1, EVERY) - TEACHER_STEPS,
         "student": np.arange(0, STUDENT_STEPS + 1, EVERY),
         "scratch": np.arange(0, SCRATCH_STEPS + 1, EVERY)}
styles = {"teacher": ("gray", "teacher (small)"),
          "student": ("tab:blue", "Net2Net student"),
          "scratch": ("tab:orange", "same architecture, random init")}

plt.figure(figsize=(8, 4.4), layout="constrained")
for name, (color, label) in styles.items():
    plt.plot(steps[name], mean[name], "o-", ms=3, color=color, label=label)
    plt.fill_between(steps[name], low[name], high[name], color=color, alpha=0.2)
plt.axvline(0, color="k", lw=0.8)
plt.axhline(comparison.converged(mean["scratch"]), color="tab:orange", ls=":", lw=1)
plt.text(-10, 0.5, "grow here", fontsize=9, ha="right")
plt.xlabel("training step (batches of 32)")
plt.ylabel("test accuracy")
plt.ylim(0, 1)
plt.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=9)
plt.title("Teacher -> Net2Net student vs training from scratch")
plt.show()

# %% [markdown]
# ## The speed-up, counted two ways
#
# `comparison.speedup` applies the protocol to the curves. The first speed-up
# counts student steps only, the teacher being a sunk cost (how papers
# usually report it). The second pays for the teacher: its steps count at its
# training FLOPs per step relative to the student's, from `flops`, which
# counts the layers' multiply-adds from their shapes (forward + backward = 3
# forward passes). Each comes with its ceiling: with one evaluation every 25
# steps, no measured speed-up can exceed the scratch budget / 25.

# %%
ratio = flops.training_flops(teacher) / flops.training_flops(student)
result = comparison.speedup(steps["student"], mean["student"], steps["scratch"],
                            mean["scratch"], EVERY, teacher_cost=TEACHER_STEPS * ratio)
print(f"teacher / student training FLOPs per step: {ratio:.2f}")
print(f"target (scratch converged): {result['target']:.3f}; scratch reaches it at step "
      f"{result['steps_scratch']}, the student at step {result['steps_student']}")
for name, ceiling in (("speedup", "ceiling"), ("speedup_total", "ceiling_total")):
    value = result[name]
    print(f"{name:<14} {'never' if value is None else f'{value:.1f}x'} "
          f"(ceiling {result[ceiling]:.1f}x)")
print(f"converged accuracy: student {result['final_student']:.3f}, scratch "
      f"{result['final_scratch']:.3f}")

# %% [markdown]
# On digits the wide network learns fast from scratch too, so the head start
# is small once the teacher's training is paid for; a task where the small
# model clearly underfits, or a language model, leaves more room (see
# `make demo`). The shape of the result is the same: the student never has to
# relearn what the teacher knew.
#
# The paper fine-tunes students with a tenth of the teacher's learning rate
# (`net2net-compare --student_lr_scale=0.1`, the default). Here the student
# continues the teacher's training, optimizer state and all; try
# `compiled(student, keras.optimizers.Adam(1e-4))` above to see the
# trade-off: a smoother start, slower progress.
#
# ## The same experiment, one command
#
# `net2net-compare` trains a teacher, grows it into several students (`wider`,
# `deeper`, `both`) and trains each next to its scratch twin with the protocol
# above, averaging seeds. It writes `report.json` and `curves.png` into
# `--model_dir`. A short run:

# %%
import json
import subprocess
import sys

from IPython.display import Image, display

command = [sys.executable, "-m", "keras_net2net.bin.compare", "--model_dir=runs/compare",
           "--data_dir=runs/tfds", "--arms=wider", "--seeds=1",
           f"--teacher_steps={COMPARE_TEACHER_STEPS}",
           f"--student_steps={COMPARE_STUDENT_STEPS}", f"--eval_every={COMPARE_EVERY}",
           "--scratch_lr_sweep=1,2",
           "--carry_optimizer", "--student_lr_scale=1", "--log_every=1000"]
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
                    ("teacher_steps", "student_steps", "scratch_steps", "learning_rate",
                     "student_learning_rate")})
for arm, result in compare_report["arms"].items():
    # No speed-up when the student never reaches the scratch model's converged accuracy.
    faster = {k: "never" if result[k] is None else f"{result[k]:.1f}x"
              for k in ("speedup", "speedup_total")}
    print(f"{arm:<7} params {result['params']['teacher']:,} -> {result['params']['student']:,}, "
          f"speed-up {faster['speedup']} (total {faster['speedup_total']}), scratch lr "
          f"{result['scratch_sweep']['chosen_learning_rate']}, converged accuracy: student "
          f"{result['final_student']:.4f}, scratch {result['final_scratch']:.4f}")

# %% [markdown]
# ## What to try next
#
# * Grow more: `widen=4.0`, or `deepen={"conv2": 2, "fc1": "residual"}`.
# * Compare `noise=0` with `noise=0.05` for the student (tutorial 01 shows why
#   copies need noise to part ways).
# * Run `net2net-compare --help` and try `--teacher_model=resnet_small`,
#   `--dataset=distorted_digits` (a harder image task built offline), or the
#   byte-level language model: `--teacher_model=gpt --dataset=stdlib_bytes
#   --arms=wider` (compared on validation loss).
# * Count cost in time, not steps: wrap each `fit` in `time.perf_counter()`.
