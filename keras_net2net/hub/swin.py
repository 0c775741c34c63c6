"""Swin Transformer: a patch embedding (strided Conv2D, LayerNorm), stages of
pre-LN shifted-window blocks (a fused qkv Dense `(width, 3 x heads x head
dim)`, a relative position bias table `(positions, heads)`, an MLP of
`mlp_ratio x width`), each but the last ending in a patch merging
(concatenate 2x2 neighbours to 4 x width, LayerNorm, Dense to 2 x width),
then a final LayerNorm.

Widths: `embed_dim` (stage i is embed_dim x 2^i) and every stage's
`num_heads` grow by the factor; the head dim is kept (bias tables copy
their head columns; the 1 / sqrt(head dim) scale stays), the MLP follows
`mlp_ratio`. Whole multiples only: the patch embedding and each merging end
in or hold a LayerNorm over copies of the stream, and the merging's
concatenation of four mean-padded streams is not a mean-padded stream, so a
non-integer factor is a typed PlanError naming the integer factor.

One rule owns a stage (`SwinTransformerStage`): its blocks read and write the
stage's stream, and a merging stage produces the next stage's stream. Deeper:
`deepen=["stage_0"]` appends an identity block at that stage's end (a copy of
its last block with `attention_projection` and `fc2` zero); the shift
pattern of the earlier blocks is unchanged. Drop-path rates are a linspace
over all blocks, so they move a little (training only). Reaches keras_hub
internals (`keras_hub.src.models.swin_transformer.swin_transformer_layers`)
for the layer classes.
"""

import re

import keras_hub
import numpy as np
from keras_hub.src.models.swin_transformer import swin_transformer_layers as swin_layers

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.channels import Product
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub import vit_det
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import require_axis

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
QKV, QKV_PART, HEADS_X_DIM = vit_det.QKV, vit_det.QKV_PART, vit_det.HEADS_X_DIM
MERGED = "four_neighbours_x_width"
_BLOCK = r"blocks_\d+"


class StageRule(composite.CompositeRule):
    """SwinTransformerStage: blocks x + attn(norm1(x)), x + mlp(norm2(x)) on
    the stage's stream, then (but in the last stage) a patch merging that
    produces the next stage's stream."""

    norms = True
    inner = {**vit_det.WindowedBlockRule.inner,
             "num_heads": composite.Inner(HEADS, lambda l: l.num_heads),
             "head_dim": composite.Inner(HEAD_DIM, lambda l: l.dim // l.num_heads,
                                         on_request=True),
             "intermediate_dim": composite.Inner(FFN, lambda l: int(l.dim * l.mlp_ratio))}
    specs = {
        f"{_BLOCK}/norm[12]/gamma": [(0, IN, NORM_SCALE)],
        f"{_BLOCK}/norm[12]/beta": [(0, IN, COPY)],
        f"{_BLOCK}/attn/relative_position_bias_table": [(1, HEADS, COPY)],
        f"{_BLOCK}/attn/attention_qkv/kernel": [(0, IN, DIVIDE), (1, QKV, COPY)],
        f"{_BLOCK}/attn/attention_qkv/bias": [(0, QKV, COPY)],
        f"{_BLOCK}/attn/attention_projection/kernel": [(0, HEADS_X_DIM, DIVIDE), (1, IN, COPY)],
        f"{_BLOCK}/attn/attention_projection/bias": [(0, IN, COPY)],
        f"{_BLOCK}/mlp/fc1/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        f"{_BLOCK}/mlp/fc1/bias": [(0, FFN, COPY)],
        f"{_BLOCK}/mlp/fc2/kernel": [(0, FFN, DIVIDE), (1, IN, COPY)],
        f"{_BLOCK}/mlp/fc2/bias": [(0, IN, COPY)],
        "downsample/norm/gamma": [(0, MERGED, NORM_SCALE)],
        "downsample/norm/beta": [(0, MERGED, COPY)],
        "downsample/reduction/kernel": [(0, MERGED, DIVIDE), (1, OUT, COPY)],
    }

    def derived_roles(self, inner):
        return vit_det.fused_qkv_roles(inner)

    def propagate(self, ctx, call):
        if call.op.downsample is None:  # the last stage writes the stream it reads
            return super().propagate(ctx, call)
        stream = call.inputs[0]
        layout = ctx.layout(stream)
        if not require_axis(ctx, call, layout, ctx.rank(stream) - 1, role="model-width"):
            layout = None
        out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
        inner = composite.inner_roles(self, ctx, call, layout)
        if layout is not None:  # the merging's 4 neighbours, each a copy of the stream
            inner[MERGED] = Product(ctx.inner(call, "neighbours", 4, on_request=True), layout)
        ctx.record_io(call, **{IN: layout, OUT: out}, **inner)

    def edit_config(self, config, io, plan):
        if io.layouts.get(IN) is not None:
            config["dim"] = plan.width(io.layouts[IN])
        if io.layouts.get(HEADS) is not None:
            config["num_heads"] = plan.width(io.layouts[HEADS])
        return config


class PatchEmbeddingRule(composite.CompositeRule):
    """PatchEmbedding: Conv2D patches, reshaped to tokens, then (with
    `patch_norm`) a LayerNorm: the producer of the first stage's stream."""

    residual = False
    width_key = "embed_dim"
    specs = {"conv_projection/kernel": [(3, OUT, COPY)],
             "conv_projection/bias": [(0, OUT, COPY)],
             "norm/gamma": [(0, OUT, NORM_SCALE)],
             "norm/beta": [(0, OUT, COPY)]}

    def refuse(self, layer):
        if layer.data_format != "channels_last":
            return "its patches are channels_first; it keeps its width"
        return None


def block_names(config):
    return [f"stage_{i}" for i in range(len(config["depths"]))]


def targets(family, config, widen):
    """{"embed_dim", "num_heads"}: every stage's width and heads x the factor."""
    heads = config["num_heads"]
    if widen is None:
        return {"embed_dim": config["embed_dim"], "num_heads": heads}
    f = mit.integer_factor(
        "SwinTransformerBackbone", widen, "embed_dim and every stage's num_heads",
        "the patch embedding ends in a LayerNorm and each patch merging normalises four "
        "concatenated copies of the stream, which take no mean pads")
    return {"embed_dim": config["embed_dim"] * f, "num_heads": type(heads)(h * f for h in heads)}


def request(ctx, family, config, targets):
    """A global factor: every group a layer produces, and every stage's
    heads and MLP, grows by it (head dims and the merging's four parts are
    on request only)."""
    return float(targets["embed_dim"] // config["embed_dim"])


ZERO = (r"attn/attention_projection/(kernel|bias)", r"mlp/fc2/(kernel|bias)")


def append_by_path(task, student, edit_config, source_of):
    """The grown `student` rebuilt from `edit_config(config)` (more blocks),
    every weight copied by path; a weight no path of the student has is a
    new block's: `source_of(path)` gives (the path it copies, whether it
    starts at zero), or None (a bug: refused typed).

    Example:

    ```python
    append_by_path(None, student, deeper_depths, lambda path: (last_block(path), False))
    ```
    """
    backbone = student.backbone if task is not None else student
    deeper, made = hub_backbone.build_student(
        task, backbone, edit_config(backbone.get_config()))  # deferred
    source = {v.path: v for v in student.weights}
    for variable in deeper.weights:
        found = (variable.path, False) if variable.path in source else \
            source_of(variable.path)
        if found is None or found[0] not in source:
            raise errors.UnsupportedModelError(
                f"Expected the deeper {type(deeper).__name__} to hold the grown model's "
                f"weights and new blocks only. Received: a weight {variable.path!r} of neither. "
                f"This is a bug in keras-net2net's keras_hub support: please report it.")
        value = source[found[0]].numpy()
        lazy.set_value(variable, np.zeros_like(value) if found[1] else value)
    lazy.initialize_rest(deeper.variables + made)
    return deeper


def append_blocks(task, student, inserts):
    """`inserts[i]` more blocks at the end of stage i, each a copy of the
    stage's last block with its writers (`ZERO`) zero."""
    depths = (student.backbone if task is not None else student).get_config()["depths"]

    def deeper(config):
        config["depths"] = type(depths)(d + inserts.get(i, 0) for i, d in enumerate(depths))
        return config

    def source_of(path):
        match = re.fullmatch(r"(.*stage_(\d+)/blocks_)(\d+)/(.*)", path)
        if match is None:
            return None
        rest = match.group(4)
        return (f"{match.group(1)}{depths[int(match.group(2))] - 1}/{rest}",
                any(re.fullmatch(z, rest) for z in ZERO))
    return append_by_path(task, student, deeper, source_of)


TABLE = {swin_layers.SwinTransformerStage: StageRule(),
         swin_layers.PatchEmbedding: PatchEmbeddingRule()}

FAMILIES = [Family(
    keras_hub.models.SwinTransformerBackbone, embedding="patch_embedding", block="stage_{}",
    block_names=block_names, identity="pre", zero=ZERO, targets=targets, request=request,
    keys={"hidden": "embed_dim", "heads": "num_heads", "intermediate": "mlp_ratio",
          "layers": "depths"},
    append_blocks=append_blocks)]
