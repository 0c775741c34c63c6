"""DINOv3: DINOv2's layout (class, register and mask tokens, a
`DINOV3Encoder` container of pre-LN blocks `layers_i` with layer scales, a
final LayerNormalization) with rotary positions (`DINOV3RopePositionEmbedding`
reads only the image's size) and flat `q_proj`/`k_proj`/`v_proj` Dense(D)
projections reshaped to (heads, D // heads), `o_proj` back; an MLP
(`up_proj`, `down_proj`) or a gated one (`gate_proj` too).

Widths: `hidden_dim` and `num_heads` together (the head dim is kept: the
rotary frequencies are per head-dim pair, and the flat projections are
(heads x head dim) blocks, copied a head at a time as MiT's are), and
`intermediate_dim`. Whole multiples only, for DINOv2's reason (layer
scales). Deeper: `deepen=["encoder"]` appends blocks with both layer scales
zero (keras_net2net.hub.dinov2).
"""

import keras_hub
from keras_hub.src.models.dinov3 import dinov3_layers

from keras_net2net.channels import Product
from keras_net2net.hub import dinov2
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub import vit
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
QK = mit.QK
_BLOCK = r"layers_\d+"


class DINOv3EmbeddingRule(vit.ViTEmbeddingRule):
    """DINOV3Embedding: patches + class, register and mask tokens."""

    specs = {"cls_token": [(2, OUT, COPY)],
             "register_tokens": [(2, OUT, COPY)],
             "mask_token": [(2, OUT, COPY)],
             "patch_embeddings/projection/kernel": [(3, OUT, COPY)],
             "patch_embeddings/projection/bias": [(0, OUT, COPY)]}


def _flat(name, role_in, role_out):
    return {f"{_BLOCK}/{name}/kernel": [(0, role_in, DIVIDE), (1, role_out, COPY)],
            f"{_BLOCK}/{name}/bias": [(0, role_out, COPY)]}


class DINOv3EncoderRule(composite.CompositeRule):
    """DINOV3Encoder: pre-LN blocks x + s1 * attn(norm1(x)), x + s2 * mlp(norm2(x))."""

    norms = True
    inner = dinov2.DINOv2EncoderRule.inner
    specs = {
        **_flat("attention/q_proj", IN, QK), **_flat("attention/k_proj", IN, QK),
        **_flat("attention/v_proj", IN, QK), **_flat("attention/o_proj", QK, OUT),
        **hub_layers.norm_specs(f"{_BLOCK}/norm1"),
        **hub_layers.norm_specs(f"{_BLOCK}/norm2"),
        **_flat("mlp/gate_proj", IN, FFN), **_flat("mlp/up_proj", IN, FFN),
        **_flat("mlp/down_proj", FFN, OUT),
        f"{_BLOCK}/layer_scale\\d/lambda1": [(0, OUT, COPY)],
    }

    def derived_roles(self, inner):
        return {QK: Product(inner[HEADS], inner[HEAD_DIM])}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        if io.layouts.get(IN) is not None:
            config["hidden_dim"] = plan.width(io.layouts[IN])
        return config


def _targets(family, config, widen):
    return dinov2.grow_targets(family, dict(config, use_swiglu_ffn=False), widen)


def _request(ctx, family, config, targets):
    request = {}
    for layer in ctx.graph.layers.values():
        if isinstance(layer, dinov3_layers.DINOV3Embedding):
            request[layer.name] = targets["hidden"]
        elif isinstance(layer, dinov3_layers.DINOV3Encoder):
            request[layer.name] = {"num_heads": targets["heads"],
                                   "head_dim": targets["hidden"] // targets["heads"],
                                   "intermediate_dim": targets["intermediate"]}
    return request


TABLE = {dinov3_layers.DINOV3Embedding: DINOv3EmbeddingRule(),
         dinov3_layers.DINOV3Encoder: DINOv3EncoderRule()}

FAMILIES = [Family(
    keras_hub.models.DINOV3Backbone, embedding="embeddings", block="layers_{}",
    block_names=lambda config: ["encoder", f"{config.get('name')}_encoder"],
    identity="pre", zero=dinov2.ZERO, targets=_targets, request=_request, pairs=mit.pair_layers,
    append_blocks=vit.block_appender("layers", dinov2.ZERO, first=0))]
