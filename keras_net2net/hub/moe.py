"""Qwen-MoE (Qwen 1.5 MoE) and Qwen 3 MoE: Llama's attention with a sparse
mixture-of-experts feed-forward whose experts fuse their gate and up
projections into one kernel `(experts, width, 2 x moe_intermediate_dim)`
(gate units, then up units); Qwen-MoE adds a shared expert (a SwiGLU of
`shared_expert_intermediate_dim` units times a sigmoid gate read from the
stream). Blocks listed in `mlp_only_layers` have a dense SwiGLU instead.

Every FFN width grows by the factor (DESIGN.md, mixture of experts): each
expert's units are copied in both halves of the fused kernel with one mapping
(`Product(halves, units)`, the halves themselves kept), its down-projection
rows divided; the router `(width, experts)` and the shared-expert gate
`(width, 1)` read the stream (rows divided), so routing, top-k and the gate
are the teacher's. An inserted block zeroes the attention output and every
expert's (and the shared expert's) down-projection.
"""

import dataclasses

import keras_hub
from keras_hub.src.models.qwen3_moe import qwen3_moe_decoder
from keras_hub.src.models.qwen3_moe import qwen3_moe_layernorm
from keras_hub.src.models.qwen_moe import qwen_moe_decoder
from keras_hub.src.models.qwen_moe import qwen_moe_layernorm

from keras_net2net.channels import Product
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

FFN = llama.FFN
MOE_FFN, SHARED_FFN, HALVES, GATE_UP = "moe_ffn", "shared_ffn", "halves", "gate_up"
MOE = r"\w*sparse_moe_block(_\d+)?"  # auto-named: one per block
MLP = r"\w*moe_mlp(_\d+)?"  # a dense block's SwiGLU (mlp_only_layers)


def _swiglu(prefix, role):
    return {f"{prefix}/feedforward_(intermediate|gate)_dense/kernel": [
                (0, IN, DIVIDE), (1, role, COPY)],
            f"{prefix}/feedforward_output_dense/kernel": [
                (0, role, DIVIDE), (1, OUT, COPY, ZERO_FILL)]}


SPECS = {
    f"{MOE}/sparse_feedforward_gate_dense/kernel": [(0, IN, DIVIDE)],  # the router
    f"{MOE}/experts/expert_feedforward_gate_dense": [(1, IN, DIVIDE), (2, GATE_UP, COPY)],
    f"{MOE}/experts/expert_feedforward_output_dense": [
        (1, MOE_FFN, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
    f"{MOE}/shared_expert_gate_dense/kernel": [(0, IN, DIVIDE)],
    **_swiglu(f"{MOE}/shared_expert_dense", SHARED_FFN),
    **_swiglu(MLP, FFN),
}
ZERO = (r"self_attention/attention_output/kernel",
        f"{MOE}/experts/expert_feedforward_output_dense",
        f"{MOE}/shared_expert_dense/feedforward_output_dense/kernel",
        f"{MLP}/feedforward_output_dense/kernel")


class MoeDecoderRule(llama.LlamaDecoderRule):
    """A Llama block whose feed-forward is Qwen's mixture of experts."""

    def __init__(self, shared=False, **kwargs):
        inner = {"moe_intermediate_dim": composite.Inner(
                     MOE_FFN, lambda l: l.moe_intermediate_dim,
                     config_key="moe_intermediate_dim"),
                 "halves": composite.Inner(HALVES, lambda l: 2, on_request=True)}
        if shared:
            inner["shared_expert_intermediate_dim"] = composite.Inner(
                SHARED_FFN, lambda l: l.shared_expert_intermediate_dim,
                config_key="shared_expert_intermediate_dim")
        super().__init__(specs=SPECS, inner=inner, **kwargs)

    def derived_roles(self, inner):
        return {**super().derived_roles(inner),
                GATE_UP: Product(inner[HALVES], inner[MOE_FFN])}


TABLE = {
    qwen_moe_decoder.QwenMoeTransformerDecoder: MoeDecoderRule(shared=True, biases=True),
    qwen_moe_layernorm.QwenMoeLayerNorm: hub_layers.RMSNormLastAxis(),
    qwen3_moe_decoder.Qwen3MoeTransformerDecoder: MoeDecoderRule(),
    qwen3_moe_layernorm.Qwen3MoeLayerNorm: hub_layers.RMSNormLastAxis(),
}

def _dense_layers(config, new_config, inserts):
    """Qwen 3 MoE picks each block's kind by its index (`mlp_only_layers`,
    `decoder_sparse_step`): the deeper config lists the dense ones by their
    new index, an inserted block of its anchor's kind. (Qwen-MoE's blocks all
    read index 0 in keras_hub: one kind throughout, nothing to move.)"""
    dense_only, step = config.get("mlp_only_layers") or [], config.get("decoder_sparse_step", 1)
    kinds = []
    for i in range(config["num_layers"]):
        dense = i in dense_only or (i + 1) % step != 0
        kinds += [dense] * (1 + inserts.get(i, 0))
    new_config["mlp_only_layers"] = [i for i, dense in enumerate(kinds) if dense]
    new_config["decoder_sparse_step"] = 1


FAMILIES = [
    llama.family(keras_hub.models.QwenMoeBackbone, zero=ZERO,
                 inner_widths=("moe_intermediate_dim", "shared_expert_intermediate_dim")),
    dataclasses.replace(
        llama.family(keras_hub.models.Qwen3MoeBackbone, zero=ZERO, head_dim_key=True,
                     inner_widths=("moe_intermediate_dim",)),
        deepen_config=_dense_layers),
]
