"""Qwen 3.5 MoE: Qwen 3.5's hybrid blocks (keras_net2net.hub.qwen3_5: full
attention or a gated delta net, one-plus RMS norms) with a sparse mixture of
experts instead of the dense SwiGLU: a router `(width, experts)`, experts
with a fused [gate | up] kernel `(experts, width, 2 x moe_intermediate_dim)`
and a down kernel, and a shared SwiGLU expert of
`shared_expert_intermediate_size` units scaled by a sigmoid gate
`(width, 1)` read from the stream.

Every FFN width grows by the factor (DESIGN.md, mixture of experts): each
expert's units are copied in both halves of its fused kernel with one mapping
(`Product(halves, units)`), its down rows divided; the router and the shared
gate read the stream (rows divided), so routing, top-k and the gate are the
teacher's. An inserted block zeroes its mixer's output projection, every
expert's and the shared expert's down projection.

Reaches keras_hub internals: `keras_hub.src.models.qwen3_5_moe` (the decoder
class, for its rule).
"""

import dataclasses

import keras_hub
from keras_hub.src.models.qwen3_5_moe import qwen3_5_moe_decoder

from keras_net2net.channels import Product
from keras_net2net.hub import qwen3_5
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

FFN = qwen3_5.FFN  # here each expert's width (moe_intermediate_dim)
SHARED_FFN, HALVES, GATE_UP = "shared_ffn", "halves", "gate_up"
MOE = "sparse_moe_block"
SHARED = f"{MOE}/shared_expert"

SPECS = {
    f"{MOE}/router_gate/kernel": [(0, IN, DIVIDE)],
    f"{MOE}/shared_expert_gate/kernel": [(0, IN, DIVIDE)],
    f"{MOE}/experts/expert_feedforward_gate_dense": [(1, IN, DIVIDE), (2, GATE_UP, COPY)],
    f"{MOE}/experts/expert_feedforward_output_dense": [
        (1, FFN, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
    f"{SHARED}/feedforward_(gate|intermediate)_dense/kernel": [(0, IN, DIVIDE),
                                                               (1, SHARED_FFN, COPY)],
    f"{SHARED}/feedforward_output_dense/kernel": [(0, SHARED_FFN, DIVIDE),
                                                  (1, OUT, COPY, ZERO_FILL)],
}
INNER = {
    "intermediate_dim": composite.Inner(FFN, lambda l: l.moe_intermediate_dim,
                                        config_key="moe_intermediate_dim"),
    "shared_expert_intermediate_size": composite.Inner(
        SHARED_FFN, lambda l: l.shared_expert_intermediate_size,
        config_key="shared_expert_intermediate_size"),
    "halves": composite.Inner(HALVES, lambda l: 2, on_request=True),
}


class Qwen3_5MoeDecoderRule(qwen3_5.Qwen3_5DecoderRule):
    """Qwen3_5MoeTransformerDecoder: Qwen 3.5's rule with the experts."""

    def derived_roles(self, inner):
        return {**super().derived_roles(inner), GATE_UP: Product(inner[HALVES], inner[FFN])}


ZERO = qwen3_5.ZERO[:2] + (f"{MOE}/experts/expert_feedforward_output_dense",
                          f"{SHARED}/feedforward_output_dense/kernel")

_RULE = qwen3_5.rule(SPECS, INNER)
TABLE = {qwen3_5_moe_decoder.Qwen3_5MoeTransformerDecoder: Qwen3_5MoeDecoderRule(
    rename=None, specs=_RULE.specs, inner=_RULE.inner)}

FAMILIES = [dataclasses.replace(
    qwen3_5.family(keras_hub.models.Qwen3_5MoeBackbone, zero=ZERO,
                   inner_widths=("shared_expert_intermediate_size",)),
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "moe_intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"})]
