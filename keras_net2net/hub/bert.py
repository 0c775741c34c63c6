"""BERT: token, position and segment embeddings, an embeddings LayerNorm,
post-LN TransformerEncoder blocks and a tanh pooler of width `hidden_dim`.

Post-LN blocks normalise x + f(x): the stream cannot take pads, so
`hidden_dim` grows by whole multiples (`intermediate_dim` and heads by any
amount). An identity block needs the LayerNorm hand-over of
keras_net2net.hub.backbone._post_norm_identity (exact to epsilon / var,
epsilon = 1e-12).
"""

import keras_hub

from keras_net2net.hub.families import Family

ZERO = (r"self_attention_layer/attention_output/(kernel|bias)",
        r"feedforward_output_dense/(kernel|bias)")

FAMILIES = [Family(keras_hub.models.BertBackbone, embedding="token_embedding",
                   also_hidden=("pooled_dense",), identity="post", zero=ZERO)]

# DistilBERT: BERT's blocks behind a TokenAndPositionEmbedding, no pooler.
FAMILIES.append(Family(keras_hub.models.DistilBertBackbone,
                       embedding="token_and_position_embedding", identity="post", zero=ZERO))
