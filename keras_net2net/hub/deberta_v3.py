"""DeBERTa-v3: post-LN encoder blocks norm(x + attention(x)), norm(x +
ffn(x)) with disentangled attention: content-to-content, content-to-position
and position-to-content scores, the positions being relative position
buckets whose embeddings (`rel_embedding`, a `(2 x buckets, width)` table
and a LayerNorm) are read by each block's own query and key projections.

The relative embeddings are the model width, read by the same query/key
kernels as the stream, so they are one group with the stream: the table's
columns and its LayerNorm's scale and shift are copied with the stream's
mapping, and every score (each a per-head dot product over the kept head
dim) is the teacher's. Widths: `hidden_dim` (the head dim `hidden_dim //
num_heads` is kept: the scores are scaled by 1 / sqrt(3 x head dim)),
`num_heads`, `intermediate_dim`; integer factors only (post-LN blocks and
the LayerNorms over the embeddings take no pads). Deepening inserts a post-LN
identity block (keras_net2net.hub.backbone `_post_norm_identity`): the
anchor's output norm hands its scale and shift over, exact up to epsilon /
variance (epsilon 1e-7).
"""

import dataclasses

import keras_hub
from keras_hub.src.models.deberta_v3 import disentangled_attention_encoder
from keras_hub.src.models.deberta_v3 import relative_embedding

from keras_net2net import _keras
from keras_net2net.channels import Product
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
FLAT = "heads_x_dims"


class RelativeEmbeddingRule(composite.CompositeRule):
    """RelativeEmbedding: LayerNorm(table), repeated over the batch; its
    input (the stream) gives the batch size only, and its output is taken
    into the stream's group (the blocks read both with the same kernels)."""

    norms = True
    specs = {"rel_embedding": [(1, OUT, COPY)],
             "rel_embeddings_layer_norm/gamma": [(0, IN, NORM_SCALE)],
             "rel_embeddings_layer_norm/beta": [(0, IN, COPY)]}

    def pad_constraints(self, solver, call, ins, outs, where):
        raise ValueError(f"{where} normalises a table of the model width, whose pads no "
                         "pad kind keeps exact")


class DisentangledEncoderRule(composite.CompositeRule):
    """DisentangledAttentionEncoder (post-LN), whose second input, the
    relative embeddings, is the stream's group."""

    norms = True
    pre_norm = False
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(
            HEAD_DIM, lambda l: _keras.self_attention(l).attn_head_size, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        **{f"self_attention_layer/{name}/kernel": [(0, IN, DIVIDE), (1, HEADS, COPY),
                                                   (2, HEAD_DIM, dims)]
           for name, dims in (("query", QUERY_DIMS), ("key", COPY), ("value", COPY))},
        **{f"self_attention_layer/{name}/bias": [(0, HEADS, COPY), (1, HEAD_DIM, dims)]
           for name, dims in (("query", QUERY_DIMS), ("key", COPY), ("value", COPY))},
        "self_attention_layer/attention_output/kernel": [(0, FLAT, DIVIDE), (1, OUT, COPY)],
        "self_attention_layer/attention_output/bias": [(0, OUT, COPY)],
        "self_attention_layer_norm/gamma": [(0, IN, NORM_SCALE)],
        "self_attention_layer_norm/beta": [(0, IN, COPY)],
        "feedforward_layer_norm/gamma": [(0, IN, NORM_SCALE)],
        "feedforward_layer_norm/beta": [(0, IN, COPY)],
        **hub_layers.ffn_specs("feedforward_intermediate_dense", "feedforward_output_dense"),
    }

    def derived_roles(self, inner):
        return {FLAT: Product(inner[HEADS], inner[HEAD_DIM])}

    def propagate(self, ctx, call):
        stream = composite.first_tensor(call)
        rel = call.kwargs.get("rel_embeddings")
        if rel is None and len(call.args) > 1:
            rel = call.args[1]
        if rel is None or rel not in call.inputs:
            super().propagate(ctx, call)
            return
        if not ctx.unify(ctx.layout(stream), ctx.layout(rel), call.path):
            ctx.groups.freeze_layout(ctx.layout(stream), (
                f"{type(call.op).__name__} {call.path!r} reads relative embeddings that do not "
                "line up with its input"))
        super().propagate(ctx, dataclasses.replace(
            call, inputs=[k for k in call.inputs if k != rel]))


ZERO = (r"self_attention_layer/attention_output/(kernel|bias)",
        r"feedforward_output_dense/(kernel|bias)")

TABLE = {relative_embedding.RelativeEmbedding: RelativeEmbeddingRule(),
         disentangled_attention_encoder.DisentangledAttentionEncoder: DisentangledEncoderRule()}

FAMILIES = [Family(keras_hub.models.DebertaV3Backbone, embedding="token_embedding",
                   block="disentangled_attention_encoder_layer_{}", identity="post", zero=ZERO,
                   rotary=True)]
