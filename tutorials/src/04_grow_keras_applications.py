# %% [markdown]
# # Grow a `keras.applications` model
#
# **What you will learn**
#
# * how to widen and deepen a real architecture, MobileNetV2, in one call;
# * how to read which channel groups a large model has, which widths changed,
#   and which groups were kept and why (`report.groups`, `report.skipped`,
#   `report.barriers`);
# * what stops growth in a custom model (a `Lambda`, a broadcast, a
#   `LayerNormalization`), and how `strict=True` turns a silent skip into an
#   error;
# * that the student is plain Keras: it saves and loads like any model.
#
# The models are built with `weights=None` (random weights, nothing to
# download) at 32x32 pixels, so it all runs on a CPU in well under a minute.
# With pretrained weights the code is the same.

# %%
import os
import tempfile

os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # quieter TensorFlow start-up

import keras
import matplotlib.pyplot as plt
import numpy as np

import keras_net2net as n2n

keras.utils.set_random_seed(0)

# %% tags=["parameters"]
# Run sizes.
PROBE_IMAGES = 64  # random images to compare the reloaded student with the teacher

# %% [markdown]
# ## The teacher: MobileNetV2 at 32x32
#
# `classifier_activation=None` makes the model end in logits: a softmax output
# would also grow exactly, but logits are easier to compare.

# %%
teacher = keras.applications.MobileNetV2(
    input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
    classifier_activation=None)
print(f"{teacher.name}: {teacher.count_params():,} parameters, {len(teacher.layers)} layers")

# %% [markdown]
# ## Its channel groups
#
# MobileNetV2 is a chain of inverted residual blocks: a 1x1 `expand`
# convolution, a depthwise convolution, a 1x1 `project` convolution and, when
# shapes allow, an `Add` of the block's input. Every `expand` starts a group of
# its own (its BatchNorms, ReLU6 and depthwise convolution follow it channel by
# channel); the `project` convolutions of blocks joined by `Add`s share one
# group, the *residual stream* of that stage.

# %%
explained = n2n.explain_model(teacher)
groups = explained.groups
print(f"{len(groups)} channel groups, {sum(g['frozen'] for g in groups)} kept at their width\n")
print(f"{'group':<22} {'width':>5} {'layers':>6}  producers")
for group in groups[:10]:
    print(f"{group['name']:<22} {group['old_width']:>5} {len(group['members']):>6}  "
          f"{', '.join(group['producers'])}")
print("...")

# %% [markdown]
# Only two groups are kept, and for a reason that cannot change: the model's
# input (3 colour channels) and output (10 classes).

# %%
for group in groups:
    if group["frozen"]:
        print(f"{group['name']}: {'; '.join(group['reasons'])}")
print("barriers:", explained.barriers or "none")

# %% [markdown]
# ## Widen by 1.5 and deepen twice
#
# `widen=1.5` grows every group that can grow (widths rounded up). `deepen`
# inserts an identity convolution (with a BatchNorm and a ReLU6 copied from the
# pattern it follows) after `Conv_1`, and a zero-initialised residual block
# after the last `project` convolution.
#
# We do **not** pass `data=` here. It sets the inserted BatchNorms to the
# training-mode statistics of a batch (tutorial 02), which is right for a
# trained teacher, whose moving statistics match its training-mode activations.
# This teacher is untrained: its moving statistics are still mean 0 and
# variance 1, and its inference-mode activations are orders of magnitude
# smaller than its training-mode ones. Subtracting a training-mode mean from
# them would round them away in float32, so `expand_model` would fall back to
# inference-mode statistics and say so in the report's note. With a trained
# teacher, pass a batch of real images.

# %%
images = np.random.default_rng(0).uniform(-1, 1, size=(PROBE_IMAGES, 32, 32, 3)).astype("float32")
student, report = n2n.expand_model(
    teacher, widen=1.5, deepen={"Conv_1": 1, "block_16_project": "residual"},
    noise=0.01, seed=0, return_report=True)
print(f"parameters {report.params_before:,} -> {report.params_after:,}, "
      f"layers {len(teacher.layers)} -> {len(student.layers)}")
for inserted in report.inserted:
    print(f"inserted after {inserted['anchor']} ({inserted['mode']}, activation "
          f"{inserted['activation']}, exact={inserted['exact']})")
print(f"verified on random inputs: max |Δ|/max |y| = {report.max_relative_error:.1e}")
inserted_params = sum(student.get_layer(name).count_params()
                      for inserted in report.inserted for name in inserted["layers"])
print(f"of the new parameters, {inserted_params:,} are in the inserted layers")

# %% [markdown]
# Most of the growth is the identity layer after `Conv_1`: a 1x1 convolution
# over 1,920 channels holds 3.7 million weights. Deepening is cheapest where the
# network is narrow.
#
# Every layer that writes channels, before and after:

# %%
def plot_widths(report, title):
    rows = report.layers
    kept = {p for g in report.groups if g["frozen"] for p in g["producers"]}
    positions = np.arange(len(rows))
    plt.figure(figsize=(7, 0.2 * len(rows) + 1), layout="constrained")
    plt.barh(positions, [r["new_width"] for r in rows], color="tab:blue", label="student")
    plt.barh(positions, [r["old_width"] for r in rows],
             color=["tab:gray" if r["layer"] in kept else "tab:orange" for r in rows],
             label="teacher")
    plt.yticks(positions, [r["layer"] + ("  (kept)" if r["layer"] in kept else "")
                           for r in rows], fontsize=7)
    plt.gca().invert_yaxis()
    plt.xscale("log")
    plt.xlabel("output channels (log scale)")
    plt.title(title)
    plt.legend(loc="lower right")
    plt.show()


plot_widths(report, "MobileNetV2 widened by 1.5: channels per layer")

# %% [markdown]
# ## The student is plain Keras
#
# No custom layers, no wrappers: save it, load it, and it still computes the
# teacher's function. (It is saved to a scratch folder, so that running this
# notebook leaves nothing beside it.)

# %%
path = os.path.join(tempfile.mkdtemp(), "mobilenetv2_student.keras")
student.save(path)
reloaded = keras.models.load_model(path)
y = teacher.predict(images, verbose=0)
z = reloaded.predict(images, verbose=0)
print(f"reloaded student vs teacher: max |Δ|/max |y| = "
      f"{np.max(np.abs(y - z)) / np.max(np.abs(y)):.1e}")
print(sorted({type(layer).__module__.split('.')[0] for layer in reloaded.layers}))

# %% [markdown]
# ## What stops growth
#
# Real models have custom heads. Here MobileNetV2's features go through a
# spatial attention (a 1-channel sigmoid map multiplied into the features), a
# `Lambda`, and a head with a `LayerNormalization`.

# %%
def custom_model(scale):
    backbone = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, include_top=False)
    features = backbone.output
    attention = keras.layers.Conv2D(1, 1, activation="sigmoid", name="attention")(features)
    x = keras.layers.Multiply(name="attend")([features, attention])
    x = scale(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(64, activation="gelu", name="head_fc")(x)
    x = keras.layers.LayerNormalization(name="head_ln")(x)
    return keras.Model(backbone.input, keras.layers.Dense(10, name="logits")(x))


custom = custom_model(keras.layers.Lambda(lambda t: 2.0 * t, name="custom_scale"))

custom_student, custom_report = n2n.expand_model(
    custom, widen={"Conv_1": 1920, "head_fc": 100, "block_16_project": 168},
    seed=0, return_report=True)
print("kept at their width:")
for group in custom_report.groups:
    if group["frozen"]:
        print(f"  {group['name']:<14} {'; '.join(group['reasons'])}")
print("asked for but not applied:")
for skipped in custom_report.skipped:
    print(f"  {skipped['request']:<14} {skipped['reason']}")

# %% [markdown]
# Three different reasons:
#
# * **`Lambda`**: its code is opaque, so growth cannot pass through it, and
#   `Conv_1`'s group (everything that feeds it without mixing) keeps its width.
#   Replace the `Lambda` with a Keras layer that does the same (here
#   `keras.layers.Rescaling(2.0)`) and the group grows: see below.
# * **Broadcasting `Multiply`**: the 1-channel attention map is multiplied into
#   all channels; widening it would make it a per-channel map, a different
#   function.
# * **`LayerNormalization`** normalises over all channels, so it stays exact
#   only if every channel is copied the same number of times: `head_fc` can go
#   from 64 to 128 or 192, not to 100.
#
# By default such requests are skipped with a note, and everything else grows.
# With `strict=True` they are errors that say what to do:

# %%
try:
    n2n.expand_model(custom, widen={"Conv_1": 1920}, strict=True)
except n2n.errors.FrozenGroupError as error:
    print(type(error).__name__, error, sep="\n")

# %% [markdown]
# The way out for the `Lambda` is a Keras layer that says what it does.
# `Rescaling` is elementwise, so growth passes through it:

# %%
fixed = custom_model(keras.layers.Rescaling(2.0, name="custom_scale"))
_, fixed_report = n2n.expand_model(fixed, widen={"Conv_1": 1920, "head_fc": 128},
                                   seed=0, return_report=True)
for row in fixed_report.layers:
    if row["layer"] in ("Conv_1", "head_fc"):
        print(f"{row['layer']}: {row['old_width']} -> {row['new_width']}")

# %% [markdown]
# Back to the model with the `Lambda`: a factor grows everything else.

# %%
custom_student, custom_report = n2n.expand_model(custom, widen=2.0, seed=0, return_report=True)
print(f"widen=2.0 on the custom model: {custom_report.params_before:,} -> "
      f"{custom_report.params_after:,} parameters, relative error "
      f"{custom_report.max_relative_error:.1e}")
plot_widths(custom_report, "Custom head, widen=2.0: kept groups in gray")

# %% [markdown]
# ## What to try next
#
# * Other architectures: `ResNet50`, `EfficientNetB0`, `DenseNet121`,
#   `NASNetMobile` (`explain_model` on each; the concatenations of DenseNet and
#   NASNet grow segment by segment).
# * Write a custom layer of your own and teach the toolkit how it grows:
#   `n2n.register_rule` (see its docstring).
# * `report.to_json("report.json")` keeps the whole record, including the
#   mappings; `expand_model(..., mappings=report.mappings())` replays them.
# * Fine-tune a grown model on your data, or with the training binaries
#   (tutorial 05): `net2net-train --model=MobileNetV2 ...`.
