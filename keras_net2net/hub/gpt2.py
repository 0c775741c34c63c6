"""GPT-2: pre-LN TransformerDecoder blocks, a tied token embedding.

Widths: `hidden_dim` (the stream, mean-padded at non-integer factors),
`num_heads` (head dim kept), `intermediate_dim`. The LM head is the token
embedding in reverse, which reads the final `layer_norm`: that norm is divided
by the copy counts (keras_net2net.rules.composite). An inserted block is a
copy of its anchor with the attention output and FFN output projections zero:
x + 0 + 0 = x.
"""

import keras_hub

from keras_net2net.hub.families import Family

ZERO = (r"self_attention/attention_output/(kernel|bias)",
        r"feedforward_output_dense/(kernel|bias)")

FAMILIES = [Family(keras_hub.models.GPT2Backbone, embedding="token_embedding",
                   tied_norm="layer_norm", identity="pre", zero=ZERO)]
