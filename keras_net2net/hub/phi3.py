"""Phi-3: Llama's blocks (RMS pre-norm, grouped-query attention, rotary with
optional "su" scaling, SwiGLU) under other sublayer names (`attention`,
`pre_attention_layernorm`, `post_attention_layernorm` before the
feed-forward), an untied LM head. Widths grow as Llama's do
(keras_net2net.hub.llama), with the head dim `hidden_dim // num_query_heads`
kept (rotary, and the su-scaling factors are per head-dim pair).
"""

import keras_hub
from keras_hub.src.models.phi3 import phi3_decoder
from keras_hub.src.models.phi3 import phi3_layernorm

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama

RENAME = {"self_attention": "attention", "self_attention_layernorm": "pre_attention_layernorm",
          "feedforward_layernorm": "post_attention_layernorm"}
ZERO = (r"attention/attention_output/kernel", r"feedforward_output_dense/kernel")

TABLE = {phi3_decoder.Phi3Decoder: llama.LlamaDecoderRule(rename=RENAME),
         phi3_layernorm.Phi3LayerNorm: hub_layers.RMSNormLastAxis()}

FAMILIES = [llama.family(keras_hub.models.Phi3Backbone, zero=ZERO)]
