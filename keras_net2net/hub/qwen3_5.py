"""Qwen 3.5: a hybrid of Llama-like blocks (pre-norm, one-plus RMS norms
`x * (1 + scale)`, SwiGLU) whose mixer is, per `layer_types`, either full
attention (grouped-query, QK-norm, partial rotary, a sigmoid output gate: the
query kernel `(width, query heads, 2 x head dim)` holds each head's query and
gate) or a gated delta net (linear attention with a per-head recurrent
state).

The gated delta net: `in_proj_qkv` writes [queries (k heads x dk) | keys
(k heads x dk) | values (v heads x dv)], a causal depthwise convolution over
those channels, `in_proj_z` (the output gate, v heads x dv), `in_proj_b` and
`in_proj_a` (one value per v head) with per-v-head `dt_bias` and `A_log`, a
gated RMS norm over dv shared by every head, `out_proj`. Value head j reads
key head j // r (r = v heads / k heads, `ops.repeat`), so a key head and its
r value heads are one unit: the channels of every projection are (k head,
inner) with a fixed inner run (dk, r x dv or r), a copied k head copies its
queries, keys, r value heads, gates, decay and convolution taps, its state
evolves as the original's, and `out_proj` divides its rows. Head dims (dk,
dv, full attention's head dim: rotary) and r are kept.

Widths: `hidden_dim` (zero pads at non-integer factors: RMS norms),
`num_key_value_heads` (with their query heads), `intermediate_dim`,
`linear_num_key_heads` and `linear_num_value_heads` (x r).

Deeper: a copy of the anchor block, of the anchor's type (`layer_types`
gains an entry after it), its mixer's output projection and its
feed-forward output zero: x + 0 + 0 = x.

Reaches keras_hub internals: `keras_hub.src.models.qwen3_5` (the decoder
and norm layers' classes, for their rules).
"""

import dataclasses

import keras_hub
from keras_hub.src.models.qwen3_5 import qwen3_5_decoder
from keras_hub.src.models.qwen3_5 import qwen3_5_layers

from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.hub import gemma
from keras_net2net.hub import llama
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE_ONE_PLUS
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

KV, QUERY_HEADS, FFN = llama.KV, llama.QUERY_HEADS, llama.FFN
LINEAR_HEADS, DK, DV, LINEAR_R = "linear_k_heads", "linear_dk", "linear_dv", "linear_repeats"
QKV, V_CHANNELS, V_HEADS = "linear_qkv", "linear_v_channels", "linear_v_heads"
LINEAR = "linear_attn"

INNER = {
    "head_dim": composite.Inner(llama.HEAD_DIM, lambda l: l.head_dim, on_request=True),
    "linear_num_key_heads": composite.Inner(LINEAR_HEADS, lambda l: l.linear_num_key_heads,
                                            config_key="linear_num_key_heads"),
    "linear_key_head_dim": composite.Inner(DK, lambda l: l.linear_key_head_dim,
                                           on_request=True),
    "linear_value_head_dim": composite.Inner(DV, lambda l: l.linear_value_head_dim,
                                             on_request=True),
    "linear_repeats": composite.Inner(
        LINEAR_R, lambda l: l.linear_num_value_heads // l.linear_num_key_heads, on_request=True),
}

SPECS = {
    "self_attention/query/kernel": [(0, IN, DIVIDE), (1, QUERY_HEADS, COPY)],  # query | gate
    "input_layernorm/scale": [(0, IN, NORM_SCALE_ONE_PLUS)],
    "post_attention_layernorm/scale": [(0, IN, NORM_SCALE_ONE_PLUS)],
    f"{LINEAR}/in_proj_qkv/kernel": [(0, IN, DIVIDE), (1, QKV, COPY)],
    f"{LINEAR}/conv1d_kernel": [(0, QKV, COPY)],
    f"{LINEAR}/in_proj_z/kernel": [(0, IN, DIVIDE), (1, V_CHANNELS, COPY)],
    f"{LINEAR}/in_proj_(a|b)/kernel": [(0, IN, DIVIDE), (1, V_HEADS, COPY)],
    f"{LINEAR}/(dt_bias|A_log)": [(0, V_HEADS, COPY)],
    f"{LINEAR}/out_proj/kernel": [(0, V_CHANNELS, DIVIDE), (1, OUT, COPY, ZERO_FILL)],
}


def _runs(heads, *inner):
    """A layout of k heads, each owning a contiguous run of `inner` units,
    once per entry (the fused q | k | v columns)."""
    (segment,) = heads.segments
    return Layout(None, tuple(Segment(segment.atom, segment.width, n) for n in inner))


class Qwen3_5DecoderRule(llama.LlamaDecoderRule):
    """Qwen3_5TransformerDecoder: Llama's rule, one-plus norms, the full
    attention's fused query/gate kernel, and the gated delta net."""

    def derived_roles(self, inner):
        dk, dv, r = (inner[k].size for k in (DK, DV, LINEAR_R))
        heads = inner[LINEAR_HEADS]
        return {**super().derived_roles(inner), QKV: _runs(heads, dk, dk, r * dv),
                V_CHANNELS: _runs(heads, r * dv), V_HEADS: _runs(heads, r)}


ZERO = (r"self_attention/attention_output/kernel", f"{LINEAR}/out_proj/kernel",
        r"feedforward_output_dense/kernel")


def rule(specs=None, inner=None):
    """The decoder rule of a Qwen 3.5 block (and of Qwen 3.5 MoE's, with its
    expert specs and widths)."""
    return Qwen3_5DecoderRule(
        rename={"self_attention_layernorm": "input_layernorm",
                "feedforward_layernorm": "post_attention_layernorm"},
        specs={**SPECS, **(specs or {})}, inner={**INNER, **(inner or {})})


def targets(family, config, widen):
    """Llama's targets (head dim kept, `linear_num_key_heads` by the factor),
    value heads = key heads x r."""
    key = family.keys["intermediate"]  # Qwen 3.5 MoE: moe_intermediate_dim
    if key != "intermediate_dim":  # Llama's targets name intermediate_dim
        config = {**config, "intermediate_dim": config[key]}
        if isinstance(widen, dict):
            widen = {("intermediate_dim" if k == key else k): v for k, v in widen.items()}
    out = llama.grow_targets(family, config, widen)
    r = config["linear_num_value_heads"] // config["linear_num_key_heads"]
    out["linear_num_value_heads"] = out["linear_num_key_heads"] * r
    return out


def request(ctx, family, config, targets):
    inner_family = dataclasses.replace(family, extra={
        k: v for k, v in family.extra.items() if k != "linear_num_value_heads"})
    return llama.layer_request_of(ctx, inner_family, config, targets)


def layer_types(config, new_config, inserts):
    """`layer_types` gains, after each anchor, as many entries of its type."""
    types = list(config["layer_types"] or _default_types(config["num_layers"]))
    for anchor in sorted(inserts, reverse=True):
        types[anchor + 1:anchor + 1] = [types[anchor]] * inserts[anchor]
    new_config["layer_types"] = types


def _default_types(n):
    return ["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(n)]


def family(backbone, zero=ZERO, inner_widths=()):
    """The Family of a Qwen 3.5 backbone class."""
    widths = ("linear_num_key_heads", "linear_num_value_heads", *inner_widths)
    return dataclasses.replace(
        llama.family(backbone, zero=zero, head_dim_key=True, inner_widths=widths),
        targets=targets, request=request, deepen_config=layer_types)


TABLE = {qwen3_5_decoder.Qwen3_5TransformerDecoder: rule(),
         qwen3_5_layers.Qwen3_5LayerNorm: gemma.GemmaRMSNormRule()}

FAMILIES = [family(keras_hub.models.Qwen3_5Backbone)]
