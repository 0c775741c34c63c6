"""XLNet: a word embedding and a sinusoidal relative position encoding of the
model width (`ContentAndQueryEmbedding`), then post-LN `XLNetEncoder` blocks
of two-stream relative attention (content, position and segment terms, each
with per-head biases) and a feed-forward.

Widths: `hidden_dim` (the stream), `num_heads` (the head dim, hidden_dim //
num_heads, is kept: the per-head biases `(heads, head dim)` and the segment
encoding `(2, heads, head dim)` copy with their heads) and
`intermediate_dim`. Post-LN blocks: whole copies only (integer factors).

The position encoding is no copy of anything: its width is hidden_dim, and
its frequencies are 10000^(-2i / hidden_dim), sines then cosines. At
hidden_dim x k, the new encoding holds the old sine i at 2i·k/2 = k·i and the
old cosine i at D'/2 + k·i, both at the same frequency, bit for bit (the same
real number, rounded once). Each block's `encoding` projection reads it:
the old rows go to those positions, every other row is zero (`_finish`), so
the projected positions are the teacher's.

Deeper: a post-LN block with its writers zero computes norm(x), not x, so
the anchor's output norm hands its scale and shift over to the new block
and becomes the identity norm (BERT's construction, `identity="post"`):
exact to epsilon / variance, and XLNet's epsilon is 1e-12.

Reaches keras_hub internals: `keras_hub.src.models.xlnet` (the embedding,
mask, segment-matrix and encoder layers' classes, for their rules).
"""

import numpy as np

import keras_hub
from keras_hub.src.models.xlnet import xlnet_content_and_query_embedding as xlnet_embedding
from keras_hub.src.models.xlnet import xlnet_encoder

from keras_net2net import errors
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import moonshine
from keras_net2net.hub import seq2seq
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import Rule

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
POSITIONS = seq2seq.MEMORY  # the position encoding, read like a second stream
_ATTENTION = "rel_attn"


class XLNetEmbeddingRule(Rule):
    """ContentAndQueryEmbedding: the word embedding produces the stream;
    the position encoding (its second output) takes the stream's group, so
    that the blocks' `encoding` rows have the new width (`_finish` places
    them)."""

    writes = True

    def propagate(self, ctx, call):
        out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
        for key in call.outputs[1:]:
            ctx.layouts[key] = out
        ctx.record_io(call, **{OUT: out})
        for mask in ctx.graph.calls:  # called before: its weight follows the stream
            if isinstance(mask.op, xlnet_encoder.XLNetAttentionMaskLayer):
                ctx.record_io(mask, **{OUT: out})

    def weight_axes(self, layer, io):
        return {0: [(1, OUT, COPY)]}


class XLNetMaskRule(Rule):
    """XLNetAttentionMaskLayer: masks from the padding mask (no channels);
    its unused `mask_emb` `(1, 1, width)` follows the stream."""

    def propagate(self, ctx, call):
        for key in call.outputs:  # its io: recorded by the embedding's rule
            ctx.layouts[key] = None

    def weight_axes(self, layer, io):
        return {0: [(2, OUT, COPY)]}


class XLNetEncoderRule(composite.CompositeRule):
    """XLNetEncoder: norm(x + rel_attn(x, positions)), norm(x + ffn(x))."""

    norms = True
    pre_norm = False
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.head_dim, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        **{f"{_ATTENTION}/{name}/kernel": [(0, IN, DIVIDE), (1, HEADS, COPY), (2, HEAD_DIM, dims)]
           for name, dims in (("query", QUERY_DIMS), ("key", COPY), ("value", COPY))},
        f"{_ATTENTION}/encoding/kernel": [(0, POSITIONS, DIVIDE), (1, HEADS, COPY),
                                          (2, HEAD_DIM, COPY)],
        f"{_ATTENTION}/attention_output/kernel": [(0, OUT, COPY), (1, HEADS, DIVIDE),
                                                  (2, HEAD_DIM, DIVIDE)],
        "(content|positional|segment)_attention_bias": [(0, HEADS, COPY), (1, HEAD_DIM, COPY)],
        "segment_encoding": [(1, HEADS, COPY), (2, HEAD_DIM, COPY)],
        **hub_layers.norm_specs("layer_norm_rel_attn"),
        **hub_layers.norm_specs("layer_norm_ff"),
        **hub_layers.ffn_specs("feedforward_intermediate_dense", "feedforward_output_dense"),
    }

    def propagate(self, ctx, call):
        seq2seq.propagate_with_memory(self, ctx, call, seq2seq.memory_of(call, "pos_emb"))


def _finish(ctx, plan, teacher, student):
    """Each block's `encoding` rows: old row r (divided over its copies by
    the stream's mapping) summed back, then placed where the new encoding
    holds the old one's frequency; every other row zero."""
    d, new = teacher.hidden_dim, student.hidden_dim
    k = new // d
    half = d // 2
    place = [k * r if r < half else new // 2 + k * (r - half) for r in range(d)]
    g = plan.src(ctx.layouts[_stream(ctx)])[0]
    for i in range(student.num_layers):  # inserted blocks copy their anchor's rows
        block = student.get_layer(f"xlnet_encoder_{i}")
        (kernel,) = [v for v in block.weights
                     if v.path.endswith(f"{_ATTENTION}/encoding/kernel")]
        written = kernel.numpy().astype("float64")
        rows = np.zeros_like(written)
        for r in range(d):
            rows[place[r]] = written[g == r].sum(axis=0)
        kernel.assign(rows.astype(kernel.dtype))


def _stream(ctx):
    return next(c.outputs[0] for c in ctx.graph.calls
                if isinstance(c.op, xlnet_embedding.ContentAndQueryEmbedding))


def _targets(family, config, widen):
    from keras_net2net.hub import backbone as hub_backbone

    targets = hub_backbone.default_targets(family, config, widen)
    if targets["hidden"] % config["hidden_dim"] or targets["hidden"] % 2:
        raise errors.PlanError(
            f"Expected hidden_dim to grow by a whole factor: XLNet's relative position "
            f"encoding has frequencies 10000^(-2i / hidden_dim), which a new width holds "
            f"only at a multiple. Received: widen={widen!r} (hidden_dim {config['hidden_dim']}"
            f" -> {targets['hidden']}). Fix: widen=2.0.")
    return targets


ZERO = (f"{_ATTENTION}/attention_output/kernel", r"feedforward_output_dense/(kernel|bias)")

TABLE = {
    xlnet_embedding.ContentAndQueryEmbedding: XLNetEmbeddingRule(),
    xlnet_encoder.XLNetAttentionMaskLayer: XLNetMaskRule(),
    xlnet_encoder.XLNetSegmentMatrixLayer: moonshine.ShapeReaderRule(),
    xlnet_encoder.XLNetEncoder: XLNetEncoderRule(),
}

FAMILIES = [Family(
    keras_hub.models.XLNetBackbone, embedding="content_query_embedding", block="xlnet_encoder_{}",
    identity="post", zero=ZERO, post_norms=("layer_norm", "layer_norm_ff"),
    targets=_targets, finish=_finish)]
