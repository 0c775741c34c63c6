"""DINOv2: a patch embedding (strided Conv2D `projection`, a class token,
optional register and mask tokens, a position table and its interpolation to
the image size) and a `DINOV2Encoder` container of pre-LN blocks `layers_i`
(norm1, multi-head attention, layer scale, norm2, an MLP `fc1`/`fc2` or a
SwiGLU FFN, layer scale), then a LayerNormalization (a plain layer).

Widths: `hidden_dim` and `num_heads` (head dim hidden_dim // num_heads kept),
`intermediate_dim` (the MLP's). Whole multiples only: the layer scale
multiplies each writer's channels by its own factor, so a mean pad of the
stream (the mean of the writer's channels) is not what a padded writer writes
after its scale; a non-integer factor is a typed PlanError naming the integer
one. The SwiGLU FFN keeps its width (its `weights_in` holds both halves of
the gate in one kernel, and its width is derived from `intermediate_dim`
through rounding); only the stream grows around it.

Layer names carry the backbone's name as a prefix when it was given one
(`from_config` always gives one), so the layers pair by graph order, as MiT's
do. Deeper: `deepen=["encoder"]` appends identity blocks at the encoder's
end: a copy of the last block with both layer scales zero (x + 0 + 0 = x).
"""

import math

import keras_hub
from keras_hub.src.models.dinov2 import dinov2_layers

from keras_net2net import errors
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub import vit
from keras_net2net.hub.families import Family
from keras_net2net.hub.families import is_number
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
_BLOCK = r"layers_\d+"


class DINOv2EmbeddingRule(vit.ViTEmbeddingRule):
    """DINOV2Embedding: patches + class, register and mask tokens + positions
    (both tables: the stored one and its interpolation, per channel)."""

    width_key = "hidden_dim"
    specs = {"cls_token": [(2, OUT, COPY)],
             "register_tokens": [(2, OUT, COPY)],
             "mask_token": [(1, OUT, COPY)],
             "patch_embeddings/projection/kernel": [(3, OUT, COPY)],
             "patch_embeddings/projection/bias": [(0, OUT, COPY)],
             "position_embeddings": [(2, OUT, COPY)],
             "interpolated_position_embeddings": [(2, OUT, COPY)]}


class DINOv2EncoderRule(composite.CompositeRule):
    """DINOV2Encoder: pre-LN blocks x + s1 * mha(norm1(x)), x + s2 * ffn(norm2(x))."""

    norms = True
    stream_outputs = True  # its pyramid: the stream after each block (DepthAnything reads it)
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        **hub_layers.attention_specs(f"{_BLOCK}/attention/attention"),
        **hub_layers.norm_specs(f"{_BLOCK}/norm1"),
        **hub_layers.norm_specs(f"{_BLOCK}/norm2"),
        **hub_layers.ffn_specs(f"{_BLOCK}/mlp/fc1", f"{_BLOCK}/mlp/fc2"),
        f"{_BLOCK}/layer_scale\\d/lambda1": [(0, OUT, COPY)],
        # SwiGLU: its width is kept (module docstring); it reads and writes the stream.
        f"{_BLOCK}/mlp/weights_in/kernel": [(0, IN, DIVIDE)],
        f"{_BLOCK}/mlp/weights_out/kernel": [(1, OUT, COPY)],
        f"{_BLOCK}/mlp/weights_out/bias": [(0, OUT, COPY)],
    }

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        if io.layouts.get(IN) is not None:
            config["hidden_dim"] = plan.width(io.layouts[IN])
        return config


def grow_targets(family, config, widen):
    from keras_net2net.hub import backbone as hub_backbone

    if isinstance(widen, dict) and config["use_swiglu_ffn"] and "intermediate_dim" in widen:
        raise errors.PlanError(
            f"Expected widen keys among ['hidden_dim', 'num_heads'] for a DINOV2Backbone with "
            f"use_swiglu_ffn=True: its SwiGLU FFN keeps its width (one kernel holds both "
            f"halves of the gate). Received: widen={widen!r}. Fix: leave 'intermediate_dim' "
            f"out, or grow a backbone with use_swiglu_ffn=False.")
    targets = hub_backbone.default_targets(family, config, widen)
    if config["use_swiglu_ffn"]:
        targets["intermediate"] = config["intermediate_dim"]
    factor = targets["hidden"] / config["hidden_dim"]
    if is_number(widen) or isinstance(widen, dict):
        if abs(factor - round(factor)) > 1e-9:
            raise errors.PlanError(
                f"Expected hidden_dim to grow by a whole multiple for "
                f"{family.backbone.__name__}: each block's layer scales multiply the writers' "
                f"channels, so the mean pads a non-integer width needs are not what a padded "
                f"writer writes. Received: "
                f"widen={widen!r} (hidden_dim {config['hidden_dim']} -> {targets['hidden']}). "
                f"Fix: widen={float(max(2, math.ceil(factor)))} (the closest exact factor "
                f"above).")
    return targets


def _request(ctx, family, config, targets):
    request = {}
    for layer in ctx.graph.layers.values():
        if isinstance(layer, dinov2_layers.DINOV2Embedding):
            request[layer.name] = targets["hidden"]
        elif isinstance(layer, dinov2_layers.DINOV2Encoder):
            request[layer.name] = {"num_heads": targets["heads"],
                                   "head_dim": targets["hidden"] // targets["heads"],
                                   "intermediate_dim": targets["intermediate"]}
    return request


ZERO = (r"layer_scale\d/lambda1",)

TABLE = {dinov2_layers.DINOV2Embedding: DINOv2EmbeddingRule(),
         dinov2_layers.DINOV2Encoder: DINOv2EncoderRule()}

FAMILIES = [Family(
    keras_hub.models.DINOV2Backbone, embedding="embeddings", block="layers_{}",
    # "encoder", or "<name>_encoder" for a backbone given a name (from_config).
    block_names=lambda config: ["encoder", f"{config.get('name')}_encoder"],
    identity="pre", zero=ZERO, targets=grow_targets, request=_request, pairs=mit.pair_layers,
    append_blocks=vit.block_appender("layers", ZERO, first=0))]
