"""CLIP and MetaCLIP 2: a vision tower (a patch embedding with a class token
and a position table, a LayerNorm `pre_layer_norm` into the stream, pre-LN
`CLIPEncoderLayer`s: LayerNorm, multi-head attention, LayerNorm, Dense,
quick_gelu, Dense; a final LayerNorm), a text tower (token and position
tables, the same blocks with a causal mask, a final LayerNorm), poolers (the
class token; the end-of-text token), a Dense projection of each into
`projection_dim`, and a cosine-similarity head (keras_net2net.hub.dual_encoder).

Widths: each tower's `hidden_dim` (and the text tower's `embedding_dim` with
it), `num_heads` (head dim kept) and `intermediate_dim`; `projection_dim`
grows by the factor too (equal copies or zero pads keep every cosine). Whole
multiples for the vision tower: its `pre_layer_norm` writes the stream, and a
LayerNorm's output carries no mean pad (its per-token mean is beta's, not a
constant); the text tower takes any factor (mean pads). quick_gelu sits
between the two MLP Denses, per channel, so copies of an MLP unit stay copies.
The position tables and the class token are per-channel: their columns are
copied; CLIP's `position_ids` (its vision table's row index) are kept.

Deeper: an identity block after any block of either tower (the anchor copied
with its attention output and `dense_2` zero: x + 0 + 0 = x).

Reaches keras_hub internals: `keras_hub.src.models.clip.clip_layers` and
`keras_hub.src.models.metaclip_2.metaclip_2_layers` (the layer classes the
rules are registered for), and the TokenAndPositionEmbedding class.
"""

import keras_hub
from keras_hub.src.layers.modeling import token_and_position_embedding as _tpe
from keras_hub.src.models.clip import clip_layers
from keras_hub.src.models.metaclip_2 import metaclip_2_layers

from keras_net2net.hub import dual_encoder
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import vit
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN


class CLIPVisionEmbeddingRule(vit.ViTEmbeddingRule):
    """CLIPVisionEmbedding: patches (Conv2D, no bias) + a class token + a
    position table, a producer of `hidden_dim`."""

    specs = {"class_embedding": [(0, OUT, COPY, MEAN_FILL)],
             "patch_embedding/kernel": [(3, OUT, COPY, MEAN_FILL)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}


class CLIPEncoderLayerRule(composite.CompositeRule):
    """CLIPEncoderLayer: x + mha(layer_norm_1(x)), x + dense_2(act(dense_1(
    layer_norm_2(x)))), pre-LN; head dim = hidden_dim // num_heads."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {**hub_layers.attention_specs("attention"),
             **hub_layers.norm_specs("layer_norm_1"),
             **hub_layers.norm_specs("layer_norm_2"),
             **hub_layers.ffn_specs("dense_1", "dense_2")}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        if io.layouts.get(IN) is not None:
            config["hidden_dim"] = plan.width(io.layouts[IN])
        return config


ZERO = (r"attention/attention_output/(kernel|bias)", r"dense_2/(kernel|bias)")


def text_targets(config, targets):
    """`embedding_dim` grows with `hidden_dim` (a text tower's `extra_targets`)."""
    targets["embedding_dim"] = targets["hidden"]  # the blocks read the embedding's output


TABLE = {clip_layers.CLIPVisionEmbedding: CLIPVisionEmbeddingRule(),
         clip_layers.CLIPEncoderLayer: CLIPEncoderLayerRule(),
         clip_layers.CLIPVisionPooler: dual_encoder.PoolerRule(),
         clip_layers.CLIPTextPooler: dual_encoder.PoolerRule(),
         clip_layers.CLIPHead: dual_encoder.SimilarityHeadRule(),
         metaclip_2_layers.MetaCLIP2VisionEmbedding: CLIPVisionEmbeddingRule(),
         metaclip_2_layers.MetaCLIP2EncoderLayer: CLIPEncoderLayerRule(),
         metaclip_2_layers.MetaCLIP2VisionPooler: dual_encoder.PoolerRule(),
         metaclip_2_layers.MetaCLIP2TextPooler: dual_encoder.PoolerRule(),
         metaclip_2_layers.MetaCLIP2Head: dual_encoder.SimilarityHeadRule()}

_TOWERS = (
    (keras_hub.models.CLIPVisionEncoder, clip_layers.CLIPVisionEmbedding,
     clip_layers.CLIPEncoderLayer, None),
    (keras_hub.models.CLIPTextEncoder, _tpe.TokenAndPositionEmbedding,
     clip_layers.CLIPEncoderLayer, text_targets),
    (keras_hub.models.MetaCLIP2VisionEncoder, metaclip_2_layers.MetaCLIP2VisionEmbedding,
     metaclip_2_layers.MetaCLIP2EncoderLayer, None),
    (keras_hub.models.MetaCLIP2TextEncoder, _tpe.TokenAndPositionEmbedding,
     metaclip_2_layers.MetaCLIP2EncoderLayer, text_targets),
)

FAMILIES = [dual_encoder.tower_family(tower, embedding, block, ZERO, extra)
            for tower, embedding, block, extra in _TOWERS] + [
    dual_encoder.composite_family(keras_hub.models.CLIPBackbone, "projection_dim",
                                  [clip_layers.CLIPEncoderLayer], ZERO),
    dual_encoder.composite_family(keras_hub.models.MetaCLIP2Backbone, "projection_dim",
                                  [metaclip_2_layers.MetaCLIP2EncoderLayer], ZERO)]
