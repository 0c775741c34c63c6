"""GPT-OSS: Llama-like blocks (RMS pre-norm, grouped-query attention with
rotary and q/k/v/output biases) with learned attention sinks (one logit per
query head joining its softmax), sliding-window attention on every other
block, and a mixture-of-experts feed-forward whose experts hold a fused,
interleaved gate/up projection `(experts, width, 2 x units)` (gate at even,
up at odd positions) and a clamped SwiGLU.

Widths as Llama's (keras_net2net.hub.llama): `hidden_dim`, kv heads with
their query heads (head dim kept: rotary), `intermediate_dim` (every
expert's units; the router reads the stream, so routing is the teacher's).
A copied query head copies its sink. The fused axis is the pair (unit,
gate or up) (`Product`), so a copied unit copies both of its columns. An
inserted block zeroes the attention output and every expert's down
projection (weights and biases): x + 0 + 0 = x. The local / global pattern
follows the block index: identity blocks go two at a time or after the last
block (keras_net2net.hub.gemma `sliding_pattern`).
"""

import dataclasses

import keras_hub
from keras_hub.src.models.gpt_oss import gpt_oss_decoder
from keras_hub.src.models.gpt_oss import gpt_oss_layer_norm

from keras_net2net.channels import Product
from keras_net2net.hub import gemma
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

FFN, QUERY_HEADS = llama.FFN, llama.QUERY_HEADS
PAIR, GATE_UP = "gate_or_up", "units_x_gate_up"
MOE = "sparse_moe_block"
SPECS = {
    "self_attention/sinks": [(0, QUERY_HEADS, COPY)],
    "self_attention/attention_output/bias": [(0, OUT, COPY, ZERO_FILL)],
    f"{MOE}/router/router_dense/kernel": [(0, IN, DIVIDE)],
    f"{MOE}/experts/gate_up_proj": [(1, IN, DIVIDE), (2, GATE_UP, COPY)],
    f"{MOE}/experts/gate_up_proj_bias": [(1, GATE_UP, COPY)],
    f"{MOE}/experts/down_proj": [(1, FFN, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
    f"{MOE}/experts/down_proj_bias": [(1, OUT, COPY, ZERO_FILL)],
}


class GptOssDecoderRule(llama.LlamaDecoderRule):
    """GptOssTransformerDecoder: Llama's rule with sinks and fused experts."""

    def derived_roles(self, inner):
        return {**super().derived_roles(inner), GATE_UP: Product(inner[FFN], inner[PAIR])}


ZERO = (r"self_attention/attention_output/(kernel|bias)", f"{MOE}/experts/down_proj(_bias)?")

TABLE = {
    gpt_oss_decoder.GptOssTransformerDecoder: GptOssDecoderRule(
        biases=True, specs=SPECS,
        rename={"self_attention_layernorm": "input_layernorm",
                "feedforward_layernorm": "post_attention_layernorm"},
        inner={"gate_or_up": composite.Inner(PAIR, lambda l: 2, on_request=True)}),
    gpt_oss_layer_norm.GptOssLayerNormalization: hub_layers.RMSNormLastAxis(),
}

FAMILIES = [dataclasses.replace(
    llama.family(keras_hub.models.GptOssBackbone, zero=ZERO),
    deepen_config=gemma.sliding_pattern(2, 1, key="sliding_window", block="transformer_layer_{}"))]
