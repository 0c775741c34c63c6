"""keras_hub HGNetV2Backbone (and HGNetV2ImageClassifier) grown into bigger
models of their own class.

HGNetV2 is a CNN of nested keras_hub layers (embedder and encoder > stages >
blocks > conv layers > Conv2D, BatchNorm, ReLU, a learnable affine block):
`hub.nested.flat_view` inlines them into plain Keras layers, which the core
rules grow, and `hub.convnets.ConvnetMaker` makes the student of the class
from its config with the width keys edited (the widths read back from it).
The one leaf with weights of its own, `HGNetV2LearnableAffineBlock`
(scale * x + bias with scalar scale and bias), acts on each element alike:
its rule passes the channels through and copies its two scalars.

- Wider: `stem_channels` (not the image's 3), `embedding_size`,
  `hidden_sizes` and each stage's in / mid / out channels are scaled (ceil);
  a task's `head_filters` too. Copies are exact at any factor (no norm over
  channels).
- Deeper: `deepen=["stage_1_block_1"]` (the last block of a stage) appends
  a block to the stage (its count in `stackwise_stage_filters` and
  `depths`). Blocks after a stage's first add their input back:
  x + lab(relu(bn(conv(...)))), so the new block's last BatchNorm
  (agg_excite) writes 0 (gamma = beta = 0) and its affine bias is 0:
  the block is x + 0.

Reaches keras_hub internals: the layer classes of
keras_hub.src.models.hgnetv2.hgnetv2_layers / hgnetv2_encoder.
"""

import numpy as np
import keras_hub
from keras_hub.src.models.hgnetv2 import hgnetv2_encoder as _encoder
from keras_hub.src.models.hgnetv2 import hgnetv2_layers as _layers

from keras_net2net import errors
from keras_net2net.hub import convnets
from keras_net2net.hub import nested
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout

NESTED = (_layers.HGNetV2Embeddings, _encoder.HGNetV2Encoder, _layers.HGNetV2Stage,
          _layers.HGNetV2BasicLayer, _layers.HGNetV2ConvLayer, _layers.HGNetV2ConvLayerLight)
_IN, _MID, _OUT, _BLOCKS = 0, 1, 2, 3


class ScalarAffineRule(Rule):
    """scale * x + bias with scalar scale and bias: every channel alike."""

    def propagate(self, ctx, call):
        ctx.layouts[call.outputs[0]] = input_layout(ctx, call)


TABLE = {_layers.HGNetV2LearnableAffineBlock: ScalarAffineRule()}


def view(model, check=True):
    return nested.flat_view(model, NESTED, check)


def rename(teacher, student):
    """Teacher path -> student path: every layer name below the backbone
    starts with its name ("embedder" or "<name>_embedder"), and a student
    made from a config always has a name."""
    old = teacher.embedder_layer.name[:-len("embedder")]
    new = student.embedder_layer.name[:-len("embedder")]

    def one(part):
        if part.startswith(old + "embedder") or part.startswith(old + "encoder"):
            return new + part[len(old):]
        return part
    return lambda path: "/".join(one(p) for p in path.split("/"))


def widen(config, factor):

    stem = list(config["stem_channels"])
    return dict(config, stem_channels=stem[:1] + convnets.scaled(stem[1:], factor),
                embedding_size=convnets.scaled(config["embedding_size"], factor),
                hidden_sizes=convnets.scaled(config["hidden_sizes"], factor),
                stackwise_stage_filters=[
                    convnets.scaled(list(s[:_BLOCKS]), factor) + list(s[_BLOCKS:])
                    for s in config["stackwise_stage_filters"]])


def task_config(config, factor):
    if factor is None or config.get("head_filters") is None:
        return config

    return dict(config, head_filters=convnets.scaled(config["head_filters"], factor))


def anchors(config):
    return [f"stage_{i}_block_{s[_BLOCKS] - 1}"
            for i, s in enumerate(config["stackwise_stage_filters"])]


def deepen(config, inserts):
    stages = [list(s) for s in config["stackwise_stage_filters"]]
    depths = list(config["depths"])
    pairs = []
    for i, count in sorted(inserts.items()):
        n = stages[i][_BLOCKS]
        pairs += [(f"stage_{i}_block_{n - 1}", f"stage_{i}_block_{n + t}") for t in range(count)]
        stages[i][_BLOCKS] += count
        if i < len(depths):
            depths[i] += count
    return dict(config, stackwise_stage_filters=stages, depths=depths), pairs


def identity(student, anchor, new):
    """The new block: the anchor's weights where shapes match, its last
    BatchNorm and affine bias zero (x + 0)."""
    stage, block = (int(p) for p in new.split("_")[1::2])
    blocks = student.encoder_layer.stages_list[stage].blocks_list
    source, target = blocks[int(anchor.split("_")[-1])], blocks[block]
    if not target.residual:
        raise errors.PlanError(
            f"Expected an appended block that adds its input back. Received: {new!r} of "
            f"{student.name!r} has residual=False. This is a bug in keras-net2net's keras_hub "
            f"support: please report it.")
    for a, b in zip(source.weights, target.weights):
        if tuple(a.shape) == tuple(b.shape):
            b.assign(a.numpy())
    last = target.aggregation_excitation_conv
    zero = [last.normalization.gamma, last.normalization.beta]
    if hasattr(last.lab, "bias"):
        zero.append(last.lab.bias)
    for variable in zero:
        variable.assign(np.zeros(variable.shape, variable.dtype))

FAMILIES = []  # its Family is hub.convnets' (ConvnetMaker grows it)


SPECS = {keras_hub.models.HGNetV2Backbone: convnets.Spec(
    widen, anchors, deepen, identity, view, rename, task_config)}
