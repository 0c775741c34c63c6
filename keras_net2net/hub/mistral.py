"""Mistral: Llama's blocks (RMS pre-norm, grouped-query attention, rotary,
SwiGLU) with sliding-window attention, which masks positions only, so widths
grow as Llama's do (keras_net2net.hub.llama). The head dim is derived from
`hidden_dim // num_query_heads` when the config's `head_dim` is None; an
explicit `head_dim` is kept by the same rule (rotary), with the width grown
by whole heads.
"""

import keras_hub
from keras_hub.src.models.mistral import mistral_layer_norm
from keras_hub.src.models.mistral import mistral_transformer_decoder

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama

TABLE = {mistral_transformer_decoder.MistralTransformerDecoder: llama.LlamaDecoderRule(),
         mistral_layer_norm.MistralLayerNormalization: hub_layers.RMSNormLastAxis()}

FAMILIES = [llama.family(keras_hub.models.MistralBackbone)]
