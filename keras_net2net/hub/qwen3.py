"""Qwen 3: Llama's blocks with QK-norm (an RMS norm over the head dim of
every query and key head) and a config `head_dim` free of the model width,
tied by default (its config keeps `tie_word_embeddings`).

The head dim is kept (rotary), so the QK-norm scales `(head_dim,)` are shared
by every head, copied ones too, and keep their values; `hidden_dim`, kv heads
(with their query heads) and `intermediate_dim` grow by the factor each
(keras_net2net.hub.llama, `head_dim_key`).
"""

import keras_hub
from keras_hub.src.models.qwen3 import qwen3_decoder
from keras_hub.src.models.qwen3 import qwen3_layernorm

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama

TABLE = {qwen3_decoder.Qwen3TransformerDecoder: llama.LlamaDecoderRule(),
         qwen3_layernorm.Qwen3LayerNorm: hub_layers.RMSNormLastAxis()}

FAMILIES = [llama.family(keras_hub.models.Qwen3Backbone, head_dim_key=True)]
