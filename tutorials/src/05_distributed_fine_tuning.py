# %% [markdown]
# # Distributed training and fine-tuning with the command-line tools
#
# **What you will learn**
#
# * the three steps of a Net2Net run as commands: `net2net-train` a teacher,
#   `net2net-expand` it into a student, `net2net-train --init_model` to
#   fine-tune the student (and `net2net-evaluate` to compare them);
# * how the same commands run data-parallel: `--strategy=mirrored` on logical
#   CPU devices here, on GPUs, on several machines (`TF_CONFIG`) or on TPUs;
# * how to read the TensorBoard summaries the tools write under `--model_dir`
#   and plot them with matplotlib.
#
# Each command runs here as a subprocess, exactly as in a terminal: the
# installed console scripts `net2net-train` etc. are the same programs as
# `python -m keras_net2net.bin.train` etc., which is what this notebook calls
# so that it uses the notebook's Python. Everything is written under `runs/`
# in the current directory; the whole notebook takes about a minute.

# %%
import os

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import glob
import json
import re
import subprocess
import sys

import matplotlib.pyplot as plt
import tensorflow as tf


def net2net(tool, *flags, show=r"step \d+|Done|Resumed"):
    """Runs `net2net-<tool> flags...` and prints what it said.

    The tools log with absl to stderr; `show` picks which of their log lines
    to print (TensorFlow's own start-up lines are left out). On failure the
    end of stderr is printed.
    """
    print(f"$ net2net-{tool} " + " \\\n    ".join(flags))
    result = subprocess.run([sys.executable, "-m", f"keras_net2net.bin.{tool}", *flags],
                            capture_output=True, text=True)
    if result.returncode:
        print(result.stderr[-4000:])
        raise RuntimeError(f"net2net-{tool} exited with status {result.returncode}")
    python_logs = [line.split("] ", 1)[1] for line in result.stderr.splitlines()
                   if re.match(r"[IWEF]\d{4} .*\.py:\d+\] ", line)]
    shown = [line for line in python_logs if re.search(show, line)]
    output = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout).rstrip()  # no colour codes
    print("\n".join(shown + ([output] if output else [])))
    return result


# %% tags=["parameters"]
# Run sizes, in global batches of 64.
TEACHER_STEPS = 200
STUDENT_STEPS = 200  # fine-tuning, then MORE_STEPS after resuming
MORE_STEPS = 50
EVAL_EVERY, LOG_EVERY = 50, 25

# %% [markdown]
# ## The flags
#
# All training binaries share one set of flags (defined in
# `keras_net2net/bin/flags.py`). The ones that decide where and how training
# runs:
#
# | flag | meaning |
# |---|---|
# | `--model_dir` | checkpoints, TensorBoard summaries, `model.keras`; rerunning resumes |
# | `--strategy` | `default`, `one_device`, `mirrored`, `multi_worker` or `tpu` |
# | `--num_cpu_devices` | split the CPU into logical devices, so `mirrored` runs without GPUs |
# | `--num_gpus` | GPUs for `one_device` / `mirrored` |
# | `--tpu` | TPU name or address for `--strategy=tpu` (`local` on a TPU VM) |
# | `--global_batch_size` | examples per step **summed over all replicas and workers** |
# | `--mixed_precision` | `mixed_float16` (GPU) or `mixed_bfloat16` (TPU, recent CPUs) |
# | `--jit_compile` | compile each replica's step with XLA |
#
# The full list, from `net2net-train --helpshort`:

# %%
help_text = subprocess.run([sys.executable, "-m", "keras_net2net.bin.train", "--helpshort"],
                           capture_output=True, text=True).stdout
# Drop the usage text above the flags and the line naming the source file.
flag_lines = help_text.split("\nflags:\n", 1)[-1].splitlines()
print("\n".join(line for line in flag_lines if not line.endswith(".py:")).strip("\n"))

# %% [markdown]
# ## 1. Train a teacher, mirrored over two CPU devices
#
# `--strategy=mirrored --num_cpu_devices=2` makes two replicas on this
# machine's CPU. Each step, each replica takes half of the global batch of 64,
# computes gradients, and the two sum them (an all-reduce) before the same
# update is applied to both copies of the variables. That is the same
# synchronous data parallelism as on 8 GPUs, just slower. The digits data set
# is built into a TFDS directory the first time (TFDS announces "Downloading
# and preparing", but the builder reads scikit-learn's bundled copy: nothing is
# downloaded).

# %%
common = ["--dataset=digits", "--data_dir=runs/tfds", "--strategy=mirrored",
          "--num_cpu_devices=2", "--global_batch_size=64", f"--log_every={LOG_EVERY}"]
net2net("train", "--model_dir=runs/teacher", "--model=cnn", "--widths=4,8,16",
        f"--train_steps={TEACHER_STEPS}", f"--eval_every={EVAL_EVERY}", *common);

# %% [markdown]
# ## 2. Grow it into a student
#
# `net2net-expand` reads the teacher's `model.keras` (never writing it), and
# writes the student and its report (`student.report.json`) beside it. With
# `--dataset`, a batch of training images sets the inserted BatchNorm
# statistics and verifies the student.

# %%
net2net("expand", "--input=runs/teacher/model.keras", "--output=runs/student.keras",
        "--widen=2.0", "--deepen=fc1", "--noise=0.05", "--dataset=digits",
        "--data_dir=runs/tfds", show=r"Wrote");

# %% [markdown]
# ## 3. Fine-tune the student, same strategy
#
# `--init_model` trains a saved model instead of building `--model`. The
# student already knows what the teacher knew, so it gets a smaller learning
# rate.

# %%
net2net("train", "--model_dir=runs/student", "--init_model=runs/student.keras",
        "--learning_rate=3e-4", f"--train_steps={STUDENT_STEPS}", f"--eval_every={EVAL_EVERY}",
        *common);

# %% [markdown]
# Rerunning a command with the same `--model_dir` resumes from the newest
# checkpoint, and `--train_steps` is the step to stop *at*, so this adds 50
# steps rather than starting over:

# %%
net2net("train", "--model_dir=runs/student", "--init_model=runs/student.keras",
        "--learning_rate=3e-4", f"--train_steps={STUDENT_STEPS + MORE_STEPS}",
        f"--eval_every={EVAL_EVERY}", *common);

# %% [markdown]
# ## 4. Compare the two

# %%
net2net("evaluate", "--a=runs/teacher/model.keras", "--b=runs/student/model.keras",
        "--dataset=digits", "--data_dir=runs/tfds", show=r"^$");  # the table is on stdout

# %% [markdown]
# ## 5. TensorBoard: the summaries under `--model_dir`
#
# The chief writes training summaries to `<model_dir>/train` and evaluation
# summaries to `<model_dir>/eval`. Point TensorBoard at the runs
# (`pip install tensorboard; tensorboard --logdir runs`) to browse them, or read
# the event files yourself: each is a TFRecord file of `tf.compat.v1.Event`
# protos, one scalar tensor per tag and step.

# %%
def read_scalars(directory):
    """{tag: ([steps], [values])} from the event files in `directory`."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                steps, values = scalars.setdefault(value.tag, ([], []))
                steps.append(event.step)
                values.append(float(tf.make_ndarray(value.tensor)))
    return scalars


runs = {name: {split: read_scalars(f"runs/{name}/{split}") for split in ("train", "eval")}
        for name in ("teacher", "student")}
for name, splits in runs.items():
    print(name, {split: sorted(tags) for split, tags in splits.items()})

# %% [markdown]
# The student's steps count from its own start; shifting them by the teacher's
# 200 steps draws the whole Net2Net run on one axis.

# %%
offset = {"teacher": 0, "student": max(runs["teacher"]["train"]["loss"][0])}
colors = {"teacher": "tab:gray", "student": "tab:blue"}
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for name, splits in runs.items():
    for split, style in (("train", "-"), ("eval", "o--")):
        for ax, tag in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            steps, values = splits[split][tag]
            ax.plot([s + offset[name] for s in steps], values, style, color=colors[name],
                    label=f"{name} {split}")
for ax in (ax_loss, ax_acc):
    ax.axvline(offset["student"], color="k", lw=0.8)
    ax.set_xlabel("step (global batches of 64)")
ax_loss.set(ylabel="loss", yscale="log", title="Loss, from the event files")
ax_acc.set(ylabel="accuracy", title="Accuracy")
ax_acc.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## The same commands elsewhere
#
# Nothing above is specific to the CPU. Keep the flags, change the strategy.
#
# **One machine with GPUs**: one replica per GPU, the global batch split
# between them.
#
# ```
# net2net-train --model_dir=runs/student --init_model=runs/student.keras \
#     --strategy=mirrored --num_gpus=8 --global_batch_size=1024 \
#     --mixed_precision=mixed_float16
# ```
#
# **Several machines**: `--strategy=multi_worker` reads the cluster from the
# `TF_CONFIG` environment variable. Every worker runs the **same command**
# with its own `task.index`, and uses all of its GPUs (or its CPU). Worker 0 is
# the chief: it writes checkpoints, summaries and `model.keras` to
# `--model_dir`; the others keep their copies under `<model_dir>/worker_<i>`.
# Give `--model_dir` on a file system all workers share, and remember that
# `--global_batch_size` counts the examples of all workers together.

# %%
cluster = {"worker": ["host1.example.com:12345", "host2.example.com:12345"]}
for index in range(len(cluster["worker"])):
    tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
    print(f"# on {cluster['worker'][index].split(':')[0]}:")
    print(f"TF_CONFIG='{json.dumps(tf_config)}' \\\n"
          "  net2net-train --model_dir=/mnt/shared/runs/student \\\n"
          "    --init_model=/mnt/shared/student.keras \\\n"
          "    --strategy=multi_worker --global_batch_size=2048\n")

# %% [markdown]
# **TPUs**: `--strategy=tpu --tpu=local` on a TPU VM (or `--tpu=<name>` for a
# TPU elsewhere); pair it with `--mixed_precision=mixed_bfloat16`.
#
# ```
# net2net-train --model_dir=runs/student --init_model=runs/student.keras \
#     --strategy=tpu --tpu=local --global_batch_size=4096 --mixed_precision=mixed_bfloat16
# ```

# %% [markdown]
# ## What to try next
#
# * `--strategy=mirrored --num_cpu_devices=4`, and check that the loss curve
#   is the same as with one device: the global batch, not the device count,
#   decides the math.
# * Try a deeper student: `--deepen=conv2:residual,fc1:2`.
# * Run two workers on one machine: two shells, `TF_CONFIG` with
#   `localhost:<port>` addresses, `--strategy=multi_worker`.
# * `net2net-compare` runs teacher, students and scratch models in one go
#   (tutorial 03).
