"""Mixtral: Mistral's attention (grouped-query, rotary, sliding window) with a
sparse mixture-of-experts SwiGLU feed-forward.

Mixture of experts (DESIGN.md): every expert's FFN (`intermediate_dim` units,
weights `(experts, width, units)` and `(experts, units, width)`) is grown as a
dense SwiGLU is: its units copied, its down-projection rows divided. The
router `(width, experts)` reads the stream (rows divided), so its logits, the
top-k choice and the routing weights are the teacher's. An inserted block has
its attention output and every expert's down-projection zero: x + 0 + 0 = x
whatever it routes to.
"""

import keras_hub
from keras_hub.src.models.mixtral import mixtral_decoder
from keras_hub.src.models.mixtral import mixtral_layer_norm

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

FFN = llama.FFN
MOE = r"\w*sparse_moe_block(_\d+)?"  # auto-named: one per block
EXPERTS = {
    f"{MOE}/sparse_feedforward_gate_dense/kernel": [(0, IN, DIVIDE)],  # the router
    f"{MOE}/experts/expert_feedforward_(gate|intermediate)_dense": [
        (1, IN, DIVIDE), (2, FFN, COPY)],
    f"{MOE}/experts/expert_feedforward_output_dense": [
        (1, FFN, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
}
ZERO = (r"self_attention/attention_output/kernel",
        f"{MOE}/experts/expert_feedforward_output_dense")

TABLE = {mixtral_decoder.MixtralTransformerDecoder: llama.LlamaDecoderRule(specs=EXPERTS),
         mixtral_layer_norm.MixtralLayerNormalization: hub_layers.RMSNormLastAxis()}

FAMILIES = [llama.family(keras_hub.models.MixtralBackbone, zero=ZERO)]
