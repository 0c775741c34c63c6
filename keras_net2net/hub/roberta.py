"""RoBERTa and XLM-RoBERTa: BERT's post-LN TransformerEncoder blocks behind a
TokenAndPositionEmbedding and an embeddings LayerNorm (epsilon 1e-5), no
pooler; XLMRobertaBackbone subclasses RobertaBackbone (other presets and
tokenizer), so it takes this family by its base class.

Post-LN: `hidden_dim` grows by whole multiples (`intermediate_dim` and heads
by any amount); an identity block is the LayerNorm hand-over of
keras_net2net.hub.backbone._post_norm_identity (exact to epsilon / var).
"""

import keras_hub

from keras_net2net.hub.families import Family
from keras_net2net.hub.bert import ZERO

FAMILIES = [Family(keras_hub.models.RobertaBackbone, embedding="embeddings",
                   identity="post", zero=ZERO)]
