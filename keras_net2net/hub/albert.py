"""ALBERT: factorised embeddings (`embedding_dim`, a LayerNorm, then a Dense
projection to `hidden_dim`) and post-LN TransformerEncoder blocks shared
across layers (`num_groups` blocks, each called num_layers / num_groups times).

A shared block is one layer called several times: its calls read one stream
group and share its inner groups, which the core unifies over calls, so one
mapping serves every call. `embedding_dim` grows with the factor (its
LayerNorm reads a sum of writers: any factor); `hidden_dim` by whole
multiples (post-LN). No identity block exists: a new layer is a further call
of a shared block's weights, which computes something else; grow it wider.
"""

import keras_hub

from keras_net2net.hub.families import Family
from keras_net2net.hub.bert import ZERO


def _blocks(config):
    return [f"group_{g}_inner_layer_{i}" for g in range(config["num_groups"])
            for i in range(config["num_inner_repetitions"])]


FAMILIES = [Family(
    keras_hub.models.AlbertBackbone, embedding="embedding_projection",
    also_hidden=("pooled_dense",), extra={"embedding_dim": "token_embedding"},
    block_names=_blocks, zero=ZERO,
    identity=("its blocks are shared across layers: a further layer is another call of a "
              "shared block's weights, not an identity"))]
