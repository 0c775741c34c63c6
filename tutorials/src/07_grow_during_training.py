# %% [markdown]
# # Grow a model during training
#
# **What you will learn**
#
# * how `net2net-train --grow_at_step=N --widen=... --deepen=...` grows the
#   model *inside* one run: at step N the model becomes a wider and deeper
#   student that computes the same function, and training continues on the
#   same step counter, schedule and data stream;
# * how to read the growth in `history.json` (the evaluation just before and
#   just after growth agree) and where the grown model's files are written;
# * what happens to the optimizer: by default the grown model gets a fresh
#   optimizer, re-warmed over 10 steps, and balanced noise 0.5 on its copies
#   (the recipe `benchmarks/growth_savings.py` found best); with
#   `--carry_optimizer` its state is carried into the grown model
#   (`keras_net2net.expand_optimizer`); how the two compare, and with not
#   growing at all;
# * how to do the same from Python with `expand_model` and `expand_optimizer`.
#
# It trains a small CNN on the digits data bundled with scikit-learn
# (1,437 training images of 8x8 pixels). Each command runs as a subprocess,
# as in a terminal; everything is written under `runs/` in the current
# directory, and the whole notebook takes about a minute or two on a laptop CPU.

# %%
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import json
import re
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np


def net2net(tool, *flags, show=r"step \d+0/|Grew|Done|Resumed"):
    """Runs `net2net-<tool> flags...` and prints the log lines matching `show`.

    `python -m keras_net2net.bin.<tool>` is the same program as the installed
    console script `net2net-<tool>`; calling it this way uses this notebook's
    Python. On failure the end of stderr is printed.
    """
    print(f"$ net2net-{tool} " + " \\\n    ".join(flags))
    result = subprocess.run([sys.executable, "-m", f"keras_net2net.bin.{tool}", *flags],
                            capture_output=True, text=True)
    if result.returncode:
        print(result.stderr[-4000:])
        raise RuntimeError(f"net2net-{tool} exited with status {result.returncode}")
    python_logs = [line.split("] ", 1)[1] for line in result.stderr.splitlines()
                   if re.match(r"[IWEF]\d{4} .*\.py:\d+\] ", line)]
    print("\n".join(line for line in python_logs if re.search(show, line)))
    return result


def history(name):
    with open(f"runs/{name}/history.json") as f:
        return json.load(f)


# %% tags=["parameters"]
# Run sizes, in batches of 32.
GROW_AT, TRAIN_STEPS = 150, 300
EVAL_EVERY = 100
TEACHER_EPOCHS, STUDENT_EPOCHS = 3, 2  # section 4, from Python

# %% [markdown]
# ## 1. A run that grows at step 150
#
# The teacher is a CNN with 4, 8 and 16 channels in its three convolutions.
# At step 150, `--widen=2.0` doubles every layer that can grow and
# `--deepen=conv2` inserts an identity convolution after `conv2`. The run
# then trains the grown model to step 300. This first run carries Adam's
# state into the grown model (`--carry_optimizer --rewarm_steps=0`; section 3
# explains it and compares it with the default, a fresh optimizer).
# `--log_every=5` keeps a training
# loss (the mean over the last 5 steps) often enough to see what growth does
# to it. The digits data set is built into a TFDS directory the first time
# (TFDS announces "Downloading and preparing", but it reads scikit-learn's
# bundled copy: nothing is downloaded).

# %%
common = ["--dataset=digits", "--data_dir=runs/tfds", "--model=cnn", "--widths=4,8,16",
          "--global_batch_size=32", f"--train_steps={TRAIN_STEPS}", "--log_every=5",
          f"--eval_every={EVAL_EVERY}", "--seed=0"]
growth_flags = [f"--grow_at_step={GROW_AT}", "--widen=2.0", "--deepen=conv2"]
net2net("train", "--model_dir=runs/carried", *common, *growth_flags,
        "--carry_optimizer", "--rewarm_steps=0", show=rf"step ({GROW_AT - 10}|{GROW_AT}|{GROW_AT + 10})/|Grew|Done");

# %% [markdown]
# ## 2. The growth record
#
# `history.json` lists every growth under `"growth"`: the step, the
# evaluation on the held-out split just before and just after growth, the
# parameter counts and where the expansion report is. Because growth
# preserves the function, the two evaluations agree to float32 precision
# (the default symmetry-breaking noise, 0.5, is balanced: it cancels in the
# function).

# %%
carried = history("carried")
[record] = carried["growth"]
print(json.dumps(record, indent=1))
before, after = record["eval_before"], record["eval_after"]
print(f"\neval loss before {before['loss']:.6f}, after {after['loss']:.6f} "
      f"(|difference| {abs(before['loss'] - after['loss']):.1e}); "
      f"accuracy {before['accuracy']:.4f} -> {after['accuracy']:.4f}")
print(f"parameters {record['params']['before']:,} -> {record['params']['after']:,}")
assert abs(before["loss"] - after["loss"]) <= 1e-5 * before["loss"]
assert before["accuracy"] == after["accuracy"]

# %% [markdown]
# The grown model gets a stage directory of its own, `runs/carried/grown_1`:
# its checkpoints (the first one written at the growth step), `model.keras`
# as grown, the `ExpansionReport` and the growth record. The teacher's
# checkpoints stay in `runs/carried/checkpoints`. If the run is stopped at
# any point, rerunning the same command resumes from the newest stage with
# a checkpoint (rebuilding the grown architecture by growing again), and a
# run stopped *during* growth restores the teacher at step 150 and grows
# again.

# %%
for root, dirs, files in sorted(os.walk("runs/carried")):
    depth = root.count(os.sep) - 1
    if not root.endswith(("train", "eval")):
        shown = sorted(f for f in files if not f.startswith(("events", "ckpt"))
                       or f.endswith(".index"))
        print("  " * depth + os.path.basename(root) + "/", " ".join(shown))

# %% [markdown]
# The expansion report says what grew, what was inserted, and how closely the
# grown model matched the teacher when it was verified:

# %%
with open("runs/carried/grown_1/report.json") as f:
    report = json.load(f)
for layer in report["layers"]:
    print(f"{layer['layer']:<8}{layer['class']:<8}{layer['old_width']:>4} -> {layer['new_width']}")
for inserted in report["inserted"]:
    print(f"inserted after {inserted['anchor']}: {inserted['layers']} ({inserted['mode']})")
print("verification:", report["verification"]["inference"])

# %% [markdown]
# ## 3. The optimizer across the growth step
#
# The run above trains with Adam. Adam keeps two moments per weight (`m`, an
# average of gradients, and `v`, of squared gradients) and a step count that
# corrects their bias in the first steps. At the growth step,
# `keras_net2net.expand_optimizer` maps that state onto the grown model: a
# unit copied k times, whose outgoing weights were divided by k, sees
# gradient g/k in each copy's incoming weights, so its slots become m/k and
# v/k² there (Adam's step m/√v is then the teacher unit's own), the outgoing
# rows keep m and v, the step count continues, and the layers inserted by
# `--deepen` start with warmed-up second moments.
#
# Two runs to compare it with, from the same seed (so the same first 150
# steps and the same batches afterwards; only the optimizer differs):
#
# * the default (no optimizer flags): the grown model gets a fresh Adam,
#   slots at zero and step count at zero, its rate re-warmed linearly from
#   0.1 x over the first 10 steps after growth (`--rewarm_steps=10`);
# * no growth at all: the teacher trains on to step 300.

# %%
net2net("train", "--model_dir=runs/fresh", *common, *growth_flags, show=r"Grew|Done");
net2net("train", "--model_dir=runs/no_growth", *common, show=r"Done");

# %% [markdown]
# The training losses, over the whole run and around the growth step:

# %%
runs = {"carried optimizer state": history("carried"),
        "fresh optimizer, re-warmed (the default)": history("fresh"),
        "no growth": history("no_growth")}
colors = ["tab:blue", "tab:orange", "tab:gray"]
curves = {name: (np.array([e["step"] for e in h["train"]]),
                 np.array([e["loss"] for e in h["train"]])) for name, h in runs.items()}

fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for (name, (steps, losses)), color in zip(curves.items(), colors):
    ax_all.plot(steps, losses, color=color, lw=1, label=name)
    near = (steps > GROW_AT - 40) & (steps <= GROW_AT + 100)
    ax_zoom.plot(steps[near], losses[near], "o-", ms=3, color=color, lw=1, label=name)
for ax in (ax_all, ax_zoom):
    ax.axvline(GROW_AT, color="k", lw=0.8, ls="--")
    ax.set_xlabel("step (batches of 32)")
    ax.set_ylabel("training loss (mean of 5 steps)")
ax_all.set(yscale="log", title="The whole run (growth at the dashed line)")
ax_zoom.set(title=f"Steps {GROW_AT - 40}-{GROW_AT + 100}")
ax_zoom.legend(fontsize=8)
plt.show()

# %% [markdown]
# The same in numbers: the training loss of each 5-step interval just after
# growth, the mean over the first 10 and the first 100 steps after growth,
# and the evaluation at the end of the run.

# %%
print(f"{'run':<40}" + "".join(f"{f'{GROW_AT + k - 4}-{GROW_AT + k}':>9}"
                                  for k in (5, 10, 15, 20))
      + f"{'1-10':>8}{'1-100':>8}{'final eval':>11}")
for name, (steps, losses) in curves.items():
    intervals = [losses[steps == GROW_AT + k][0] for k in (5, 10, 15, 20)]
    first10 = losses[(steps > GROW_AT) & (steps <= GROW_AT + 10)].mean()
    first100 = losses[(steps > GROW_AT) & (steps <= GROW_AT + 100)].mean()
    print(f"{name:<40}" + "".join(f"{v:>9.4f}" for v in intervals)
          + f"{first10:>8.4f}{first100:>8.4f}{runs[name]['eval'][-1]['loss']:>11.4f}")

# %% [markdown]
# How to read this. Before step 150 the three curves are one: same seed,
# same model, same batches. After it they see the same batches too, so the
# differences come from the model and the optimizer alone.
#
# * A fresh Adam restarts with empty moments and a step count of zero. Its
#   first update is bias-corrected to one learning rate per weight in the
#   sign of the latest gradient, without the averaging the
#   teacher's optimizer had built up (the re-warmup keeps those first steps
#   small); the carried state continues that averaging. Look at the first
#   interval after growth for the difference.
# * Why a fresh optimizer is the default: on a byte-level GPT trained to
#   budgets of 360-1,440 steps, growth with the carried state and little
#   noise fell behind training from scratch past 360 steps, while noise 0.5
#   with a fresh re-warmed optimizer stayed ahead at every budget (the
#   teacher's second moments are small for the copies' new roles, so the
#   copies stay near-identical; BUILD_NOTES.md, "The savings study"). On this
#   small CNN the two end close together.
# * Growing changes the training dynamics even with carried state: with
#   Adam every copy of a unit takes the same step as the teacher's unit did,
#   so the k copies together move their outgoing connection about k times
#   as far as the teacher's one would. A short bump in the loss of *both*
#   grown runs a few steps after growth, which the run without growth does
#   not have, most likely comes from that rather than from the optimizer's
#   state.
# * On a data set this small a grown model need not beat the teacher within
#   150 steps: its extra units start as exact copies and diverge from them
#   slowly.
#
# One seed on 1,437 images is noisy: treat small differences as noise.
# `benchmarks/optimizer_state.py` repeats the comparison over several seeds,
# on this CNN and on a small transformer, and adds a fourth arm (zero slots
# with a continuing step count, what resetting the optimizer's variables in
# place gives).

# %% [markdown]
# ## 4. The same from Python
#
# `net2net-train --grow_at_step` is a thin layer over two calls. Any training
# loop can do the same: grow the model, carry the optimizer, and go on.
# Here with `model.fit` on the digits arrays.

# %%
import keras

import keras_net2net as n2n
from keras_net2net import models
from keras_net2net.data import inputs

keras.utils.set_random_seed(0)
x_train, y_train = inputs.load_arrays("digits", "train", data_dir="runs/tfds")
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
teacher = models.build_model("cnn", x_train.shape[1:], 10, widths=[4, 8, 16])
teacher.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=["accuracy"])
teacher.fit(x_train, y_train, batch_size=32, epochs=TEACHER_EPOCHS, verbose=0)

student, report = n2n.expand_model(teacher, widen=2.0, deepen=["conv2"], seed=0,
                                   return_report=True)
optimizer = n2n.expand_optimizer(teacher.optimizer, student)
print(f"step count carried: {int(teacher.optimizer.iterations)} -> "
      f"{int(optimizer.iterations)}")

# %% [markdown]
# Look inside at `conv1`'s kernel. The report's mapping g says which teacher
# channel each student channel copies; a channel copied c times has its
# slots at m/c and v/c² in every copy, so Adam's next step, m/√v after bias
# correction, is the teacher channel's own. (`_momentums` and `_velocities`
# are Keras' private names for Adam's slots, read here only to look inside.)

# %%
def slots(optimizer, variable):
    index = optimizer._get_variable_index(variable)
    return (np.asarray(optimizer._momentums[index]), np.asarray(optimizer._velocities[index]))


g = np.array(next(group["mapping"] for group in report.to_dict()["groups"]
                  if group["name"] == "conv1"))
copies = np.bincount(g)[g]
t_m, t_v = slots(teacher.optimizer, teacher.get_layer("conv1").kernel)
s_m, s_v = slots(optimizer, student.get_layer("conv1").kernel)
print("mapping g:", g, " copies:", copies)
print("kernel slots: teacher", t_m.shape, "student", s_m.shape)
print("max |student m * c - teacher m[g]|:   ", np.abs(s_m * copies - t_m[..., g]).max())
print("max |student v * c^2 - teacher v[g]|: ", np.abs(s_v * copies**2 - t_v[..., g]).max())
step_t, step_s = t_m / (np.sqrt(t_v) + 1e-7), s_m / (np.sqrt(s_v) + 1e-7)
print("max |Adam step of each copy - teacher channel's|:",
      np.abs(step_s - step_t[..., g]).max())

# %% [markdown]
# Compile the student with the carried optimizer and keep training. The
# first evaluation equals the teacher's, because the function is the same:

# %%
student.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
x_eval, y_eval = inputs.load_arrays("digits", "eval", data_dir="runs/tfds")
print("teacher eval:", teacher.evaluate(x_eval, y_eval, verbose=0))
print("student eval:", student.evaluate(x_eval, y_eval, verbose=0))
student.fit(x_train, y_train, batch_size=32, epochs=STUDENT_EPOCHS, verbose=0)
print(f"student after {STUDENT_EPOCHS} more epochs:", student.evaluate(x_eval, y_eval, verbose=0))

# %% [markdown]
# ## What to try next
#
# * Grow twice in one run: `--grow_at_step=200,400 --widen=1.5`; each growth
#   gets its own `grown_<k>` directory and record.
# * Stop the run with Ctrl-C after the growth, and rerun the same command: it
#   resumes the grown model from `grown_1/checkpoints`.
# * Try `--optimizer=momentum`: SGD's velocity is carried in weight units,
#   and its gradient part is not scale-invariant, so compare a lower
#   `--learning_rate` after growth.
# * Set `--noise=0` to grow exact copies, or raise it to break the symmetry
#   between copied units sooner.
# * Run the comparison over several seeds:
#   `python benchmarks/optimizer_state.py --seeds=0,1,2`.
