"""Gemma 4 (text-only): Gemma 3's blocks (pre- and post-norms, grouped-query
attention with QK-norm and an explicit `head_dim`, rotary wavelengths per
block from `layer_types`, a GeGLU of `intermediate_dim` units) whose RMS
norms multiply by `scale` (not 1 + scale), and whose output is multiplied by
a per-block `layer_scalar`: (x + attn + ffw) * lambda; a tied embedding
times sqrt(hidden_dim).

Widths as Gemma's (keras_net2net.hub.gemma): `hidden_dim` (zero pads at
non-integer factors), key-value heads with their query heads,
`intermediate_dim`; `head_dim` kept. The scalar scales every channel alike,
so it is kept; the tied final norm is divided for the LM head and takes
sqrt(D' / D) back for the embedding scale.

Deeper: a copy of the anchor block with its attention output and GeGLU
output projections zero and its `layer_scalar` set to 1: (x + post(0) +
post(0)) * 1 = x. It takes its anchor's `layer_types` entry, so no other
block changes its attention or rotary wavelength. The widened student is
rebuilt deeper (`append_blocks`, keras_net2net.hub.seq2seq.write_deeper).
Refused, typed: vision or audio encoders, per-layer
inputs, shared key-value layers, mixture-of-experts blocks, separate global
heads or head dims, the double-wide MLP, embedding models (their layers
have no rule yet).

keras_hub internals: `Gemma4TextDecoderBlock` and Gemma 4's
`RMSNormalization` (keras_hub.src.models.gemma4).
"""

import functools
import re

import keras_hub
import numpy as np
from keras_hub.src.models.gemma4 import gemma4_decoder_block
from keras_hub.src.models.gemma4 import gemma4_layers

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.hub import gemma
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import seq2seq
from keras_net2net.hub.backbone import build_student
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE

# Config values a text-only, dense Gemma 4 has; anything else has no rule.
BLOCK = "decoder_block_{}"
PLAIN = {"vision_encoder": None, "audio_encoder": None, "hidden_size_per_layer_input": 0,
         "num_kv_shared_layers": 0, "enable_moe_block": False,
         "num_global_key_value_heads": None, "global_head_dim": None,
         "use_double_wide_mlp": False, "is_embedding_model": False}


class Gemma4DecoderRule(gemma.GemmaDecoderRule):
    """Gemma4TextDecoderBlock: Gemma 3's sublayers, plain-scale norms."""

    inner = {**gemma.GemmaDecoderRule.inner,
             gemma.FFW_UNITS: composite.Inner(gemma.FFN, lambda l: l.intermediate_dim)}
    specs = {**gemma.GemmaDecoderRule.specs,
             "pre_attention_norm/scale": [(0, IN, NORM_SCALE)],
             "pre_ffw_norm/scale": [(0, IN, NORM_SCALE)]}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        config["intermediate_dim"] = plan.width(io.layouts[gemma.FFN])
        return config


def _targets(family, config, widen):
    odd = [key for key, value in PLAIN.items() if config.get(key, value) != value]
    if odd:
        raise errors.UnsupportedModelError(
            f"Expected a text-only, dense Gemma4Backbone "
            f"({', '.join(f'{k}={v!r}' for k, v in PLAIN.items())}). "
            f"Received: {odd[0]}={config[odd[0]]!r}, whose layers keras-net2net has no "
            f"growth rule for yet. Fix: grow a Gemma4Backbone without it (its text decoder "
            f"weights are the same), or a plain functional copy of it.")
    return gemma.grow_targets(family, config, widen, reduction=1)


TABLE = {gemma4_decoder_block.Gemma4TextDecoderBlock: Gemma4DecoderRule(),
         gemma4_layers.RMSNormalization: hub_layers.RMSNormLastAxis()}

def _append_blocks(task, student, inserts):
    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    n = config["num_layers"]
    types = []
    for i, kind in enumerate(config["layer_types"]):
        types += [kind] * (1 + inserts.get(i, 0))
    config.update(layer_types=types, num_layers=len(types))
    deeper, made = build_student(task, backbone, config)
    new_backbone = deeper.backbone if task is not None else deeper
    stacks = [(BLOCK, n, inserts)]
    rest = [(backbone.get_layer(layer.name), layer) for layer in new_backbone.layers
            if layer.weights and not re.fullmatch(BLOCK.format(r"\d+"), layer.name)]
    seq2seq.write_deeper(backbone, new_backbone, stacks, rest, gemma.ZERO)
    for anchor, count in inserts.items():
        start = anchor + sum(c for a, c in inserts.items() if a < anchor)
        for t in range(1, count + 1):
            scalar = new_backbone.get_layer(BLOCK.format(start + t)).layer_scalar
            lazy.set_value(scalar, np.ones(scalar.shape, scalar.dtype))
    lazy.initialize_rest(deeper.variables + made)
    return deeper


FAMILIES = [Family(
    keras_hub.models.Gemma4Backbone, embedding="token_embedding", block="decoder_block_{}",
    identity="pre", zero=gemma.ZERO, append_blocks=_append_blocks, rotary=True,
    tied_norm="final_normalization",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"},
    targets=_targets, request=functools.partial(gemma.layer_request_of, reduction=1),
    finish=functools.partial(gemma.finish_student, one_plus=False))]
