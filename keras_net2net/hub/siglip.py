"""SigLIP: a vision tower (patches and a position table, pre-LN
`SigLIPEncoderLayer`s: LayerNorm, multi-head attention, LayerNorm, an MLP
`fc1` (gelu) / `fc2`; a LayerNorm, then an attention-pooling head: a learned
probe attends over the tokens, plus an MLP on a LayerNorm of that) and a
text tower (token and position tables, the same blocks, a LayerNorm, the last
token, a Dense `head` into `projection_dim`), then a sigmoid-loss head:
logits = exp(scale) * cos(image, text) + bias (keras_net2net.hub.dual_encoder).

The shared space is the vision tower's `hidden_dim` itself (its pooled output
is not projected), so the text tower's `projection_dim` follows it. Widths:
each tower's `hidden_dim` (the text tower's `embedding_dim` with it),
`num_heads` (head dim kept), `intermediate_dim` (the blocks' and the pooling
head's MLP). Whole multiples only for the composite: the vision stream is
mean-padded at other factors (pre-LN blocks), and a mean pad changes a cosine
(the head needs zero pads). A tower alone takes any factor.

Deeper: an identity block after any block of either tower (the anchor copied
with its attention output and `mlp/fc2` zero).

Reaches keras_hub internals: `keras_hub.src.models.siglip.siglip_layers`
(the layer classes the rules are registered for).
"""

import keras_hub
from keras_hub.src.models.siglip import siglip_layers

from keras_net2net.hub import clip
from keras_net2net.hub import dual_encoder
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import vit
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

class SigLIPVisionEmbeddingRule(vit.ViTEmbeddingRule):
    """SigLIPVisionEmbedding: patches (Conv2D) + a position table."""

    specs = {"patch_embedding/kernel": [(3, OUT, COPY, MEAN_FILL)],
             "patch_embedding/bias": [(0, OUT, COPY, MEAN_FILL)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}


class SigLIPTextEmbeddingRule(composite.CompositeRule):
    """SigLIPTextEmbedding: token + position tables (ReversibleEmbeddings
    called forward only), a producer of `embedding_dim`."""

    residual = False
    width_key = "embedding_dim"
    specs = {"token_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}


class SigLIPEncoderLayerRule(clip.CLIPEncoderLayerRule):
    """SigLIPEncoderLayer: x + self_attn(layer_norm1(x)), x + mlp(layer_norm2(x))."""

    epsilon_key = "layer_norm_epsilon"
    specs = {**hub_layers.attention_specs("self_attn"),
             **hub_layers.norm_specs("layer_norm1"),
             **hub_layers.norm_specs("layer_norm2"),
             **hub_layers.ffn_specs("mlp/fc1", "mlp/fc2")}


class SigLIPPoolingRule(clip.CLIPEncoderLayerRule):
    """SigLIPMultiHeadAttentionPooling: h = mha(probe, x, x); the first (only)
    token of h + mlp(layernorm(h)). The probe, h and the output have the
    stream's width (`hidden_dim`), so they are taken as its group."""

    epsilon_key = "layer_norm_epsilon"
    # The probe, a query in the stream's width: "variable_<n>" (made without a name).
    specs = {r"variable(_\d+)?": [(2, IN, COPY)],
             **hub_layers.attention_specs("attention"),
             "layernorm/gamma": [(0, IN, NORM_SCALE)],
             "layernorm/beta": [(0, IN, COPY, ZERO_FILL)],
             **hub_layers.ffn_specs("mlp/fc1", "mlp/fc2")}

    def pad_constraints(self, solver, call, ins, outs, where):
        raise ValueError(
            f"{where} pools into a stream of its own (the probe's attention output plus an "
            "MLP) that is the tower's output: padded, it would come out at the 1 / sqrt(s) "
            "scale of the writers, not the teacher's")

    def propagate(self, ctx, call):
        super().propagate(ctx, call)
        out = call.outputs[0]
        layout = ctx.layout(out)
        if layout is not None:  # one token: the channels one axis up
            ctx.layouts[out] = layout.moved(ctx.rank(out) - 1)


ZERO = (r"self_attn/attention_output/(kernel|bias)", r"mlp/fc2/(kernel|bias)")


TABLE = {siglip_layers.SigLIPVisionEmbedding: SigLIPVisionEmbeddingRule(),
         siglip_layers.SigLIPTextEmbedding: SigLIPTextEmbeddingRule(),
         siglip_layers.SigLIPEncoderLayer: SigLIPEncoderLayerRule(),
         siglip_layers.SigLIPMultiHeadAttentionPooling: SigLIPPoolingRule(),
         siglip_layers.SigLIPHead: dual_encoder.SimilarityHeadRule()}

FAMILIES = [
    dual_encoder.tower_family(
        keras_hub.models.SigLIPVisionEncoder, siglip_layers.SigLIPVisionEmbedding,
        siglip_layers.SigLIPEncoderLayer, ZERO,
        also=(siglip_layers.SigLIPMultiHeadAttentionPooling,)),
    dual_encoder.tower_family(
        keras_hub.models.SigLIPTextEncoder, siglip_layers.SigLIPTextEmbedding,
        siglip_layers.SigLIPEncoderLayer, ZERO, clip.text_targets),
    dual_encoder.composite_family(keras_hub.models.SigLIPBackbone, None,
                                  [siglip_layers.SigLIPEncoderLayer], ZERO)]
