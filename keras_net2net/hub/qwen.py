"""Qwen (1.5 / 2): Llama's blocks with biases on the query, key and value
projections, and a tied LM head by default (its config keeps
`tie_word_embeddings`, so a tied Qwen grows tied: the final norm is divided
by the copy counts, keras_net2net.rules.composite).
"""

import keras_hub
from keras_hub.src.models.qwen import qwen_decoder
from keras_hub.src.models.qwen import qwen_layernorm

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama

TABLE = {qwen_decoder.QwenTransformerDecoder: llama.LlamaDecoderRule(biases=True),
         qwen_layernorm.QwenLayerNorm: hub_layers.RMSNormLastAxis()}

FAMILIES = [llama.family(keras_hub.models.QwenBackbone)]
