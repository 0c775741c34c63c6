"""OPT: GPT-2's pre-LN TransformerDecoder blocks (ReLU feed-forward) behind a
TokenAndPositionEmbedding, a final `layer_norm`, and the LM head the token
embedding in reverse (tied): that norm is divided by the copy counts, as
GPT-2's is (keras_net2net.hub.gpt2).

Widths: `hidden_dim` (mean pads at non-integer factors: pre-LN), `num_heads`
(head dim kept), `intermediate_dim`. An inserted block is a copy of its
anchor with the attention and feed-forward output projections zero.
"""

import keras_hub

from keras_net2net.hub.families import Family
from keras_net2net.hub.gpt2 import ZERO

FAMILIES = [Family(keras_hub.models.OPTBackbone, embedding="embeddings",
                   tied_norm="layer_norm", identity="pre", zero=ZERO)]
