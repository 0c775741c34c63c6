"""ELECTRA: BERT's post-LN encoder (epsilon 1e-12) with factorised embeddings:
token, position and segment tables of `embedding_dim`, their LayerNorm, then
a Dense projection to `hidden_dim` where the two differ (ALBERT's shape), and
a tanh pooler. The config names its vocabulary `vocab_size`.

`embedding_dim` grows with the factor (its LayerNorm reads a sum of
writers), `hidden_dim` by whole multiples (post-LN); an identity block is the
LayerNorm hand-over of keras_net2net.hub.backbone._post_norm_identity. Without
a projection (`embedding_dim == hidden_dim`) the token embedding writes the
model width itself.
"""

import keras_hub

from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub.families import Family
from keras_net2net.hub.bert import ZERO


def _request(ctx, family, config, targets):
    request = hub_backbone.layer_request(ctx, family, config, targets)
    if config["embedding_dim"] == config["hidden_dim"]:  # no projection layer
        del request[family.embedding]
    return request


FAMILIES = [Family(
    keras_hub.models.ElectraBackbone, embedding="embeddings_projection",
    also_hidden=("pooled_dense",), extra={"embedding_dim": "token_embedding"},
    identity="post", zero=ZERO, request=_request)]
