"""Rules for keras_hub's layers, registered when keras_hub imports.

The transformer blocks are `CompositeRule`s: each weight below the block is
declared by its path with the same modes as the plain layers (attention as in
keras_net2net.rules.attention, norms as in keras_net2net.padding). Inner
groups: `num_heads` (grown by a global factor), `head_dim` (on request; the
blocks derive it as hidden width // heads, so it is no config key) and
`intermediate_dim`.
"""

import inspect

import keras
from keras_hub.src.layers.modeling import cached_multi_head_attention as _cmha
from keras_hub.src.layers.modeling import masked_lm_head as _mlm
from keras_hub.src.layers.modeling import position_embedding as _pe
from keras_hub.src.layers.modeling import reversible_embedding as _re
from keras_hub.src.layers.modeling import token_and_position_embedding as _tpe
from keras_hub.src.layers.modeling import transformer_decoder as _td
from keras_hub.src.layers.modeling import transformer_encoder as _te

from keras_net2net import _keras
from keras_net2net.rules import attention
from keras_net2net.rules import channelwise
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import NORM_SCALE_DIVIDED
from keras_net2net.rules.base import NORM_SHIFT_DIVIDED
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import ZERO_FILL
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout
from keras_net2net.rules.base import require_axis

HEADS, HEAD_DIM, FFN = "heads", "head_dim", "ffn"
DECODED = "decoded"  # the width a masked-LM head decodes from (its embedding's)


def attention_specs(prefix):
    """Weight specs of a MultiHeadAttention sublayer at `prefix` that reads
    and writes the stream (query/key/value `(width, heads, dim)`, output
    `(heads, dim, width)`)."""
    qkv = {"query": QUERY_DIMS, "key": COPY, "value": COPY}
    specs = {}
    for name, dims in qkv.items():
        specs[f"{prefix}/{name}/kernel"] = [(0, IN, DIVIDE), (1, HEADS, COPY), (2, HEAD_DIM, dims)]
        specs[f"{prefix}/{name}/bias"] = [(0, HEADS, COPY), (1, HEAD_DIM, dims)]
    specs[f"{prefix}/attention_output/kernel"] = [
        (0, HEADS, DIVIDE), (1, HEAD_DIM, DIVIDE), (2, OUT, COPY, MEAN_FILL)]
    specs[f"{prefix}/attention_output/bias"] = [(0, OUT, COPY, MEAN_FILL)]
    return specs


def norm_specs(prefix):
    return {f"{prefix}/gamma": [(0, IN, NORM_SCALE)], f"{prefix}/beta": [(0, IN, COPY, ZERO_FILL)]}


def ffn_specs(inner, outer):
    return {f"{inner}/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
            f"{inner}/bias": [(0, FFN, COPY)],
            f"{outer}/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
            f"{outer}/bias": [(0, OUT, COPY, MEAN_FILL)]}


_BLOCK_INNER = {
    "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
    "head_dim": composite.Inner(HEAD_DIM, lambda l: _keras.self_attention(l).key_dim,
                                on_request=True),
    "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                        config_key="intermediate_dim"),
}


class TransformerBlockRule(composite.CompositeRule):
    """keras_hub TransformerEncoder / TransformerDecoder (self-attention only):
    x + attention(norm(x)), x + ffn(norm(x)) when `normalize_first` (pre-LN,
    GPT-2), else norm(x + attention(x)), norm(x + ffn(x)) (post-LN, BERT)."""

    inner = _BLOCK_INNER
    norms = True
    epsilon_key = "layer_norm_epsilon"

    def __init__(self, attention_name):
        self.specs = {**attention_specs(attention_name),
                      **norm_specs("self_attention_layer_norm"),
                      **norm_specs("feedforward_layer_norm"),
                      **ffn_specs("feedforward_intermediate_dense", "feedforward_output_dense")}

    def is_pre_norm(self, layer):
        return bool(layer.normalize_first)

    def check_widths(self, layer, io, view):
        """keras_hub derives the head dim as model width // num_heads, so the
        heads and head dim must agree with the model width the plan gives.
        Where they do not (the stream is kept because the block's output is
        the model's output, or a factor rounds differently), the heads are
        set to a count that keeps the head dim; where none does, the heads
        are kept and the head dim grows (exact: rules.base.QUERY_DIMS)."""
        stream, heads, dims = (io.layouts.get(r) for r in (IN, HEADS, HEAD_DIM))
        if heads is None or dims is None:
            return []
        width = view.width(stream) if stream is not None else \
            int(_keras.query_dense(_keras.self_attention(layer)).kernel.shape[0])
        h, asked, k = heads.size, view.width(heads), view.width(dims)
        if width // asked == k:
            return []
        path = f"{layer.name}:num_heads"
        why = (f"keras_hub's {type(layer).__name__} derives its head dim as width // "
               f"num_heads, and its width is {width}"
               + (" (kept)" if stream is None or view.width(stream) == stream.size else ""))
        for n in range(asked, h - 1, -1):
            if width // n == k:
                view.set(heads, n)
                return [(path, f"{why}: {n} heads keep the head dim {k}")] if n < asked else []
        view.set(heads, h)
        view.set(dims, width // h)
        return [(path, f"{why}: {h} heads of dim {width // h}")]

    def refuse(self, layer):
        if _keras.cross_attention(layer) is not None:
            return ("a TransformerDecoder with cross-attention reads a second sequence; "
                    "it keeps its width")
        return None


class PositionEmbeddingRule(Rule):
    """keras_hub PositionEmbedding: adds rows of its `(length, width)` table
    of the width it reads, so its output is the input's group and its table
    columns follow it (a writer: mean columns for pads)."""

    writes = True
    weights = {"embeddings": [(1, OUT, COPY)]}  # pads: the stream's kind (Rebuilder)

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if layout is not None and layout.axis != ctx.rank(call.inputs[0]) - 1:
            ctx.barrier(call, "it reads its input's channels on another axis")
            return
        ctx.layouts[call.outputs[0]] = layout
        ctx.record_io(call, **{OUT: layout})


class TokenAndPositionEmbeddingRule(composite.CompositeRule):
    """keras_hub TokenAndPositionEmbedding: token plus position tables, a
    producer of the model width (`embedding_dim`)."""

    residual = False
    width_key = "embedding_dim"
    specs = {"token_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)],
             "token_embedding/reverse_embeddings": [(0, OUT, DIVIDE)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}


class MaskedLMHeadRule(composite.CompositeRule):
    """keras_hub MaskedLMHead: gathers the masked positions of the stream,
    then norm(dense(x)) decoded by the tied token embedding in reverse
    (`token_embedding` set), or by its own `output_kernel` (untied).

    The dense reads the stream (rows divided) and writes the decoded width:
    the embedding's group when tied (the reverse call reads through the
    embedding's copied columns, so the norm before it is divided by the copy
    counts, as a tied final norm is: rules.composite), else the stream's (its
    width is the input's, derived when built). Whole copies only: the norm
    inside reads the decoded group, and no pad kind is worked out for it.

    Example:

    ```python
    task = keras_hub.models.BertMaskedLM(backbone=bert, preprocessor=None)
    n2n.expand_model(task, widen=2.0)   # a BertMaskedLM on a BertBackbone twice as wide
    ```
    """

    constrains_reads = True  # padding asks it (see pad_constraints)

    specs = {
        "intermediate_dense/kernel": [(0, IN, DIVIDE), (1, DECODED, COPY)],
        "intermediate_dense/bias": [(0, DECODED, COPY)],
        "intermediate_layer_norm/gamma": [(0, DECODED, NORM_SCALE_DIVIDED)],
        "intermediate_layer_norm/beta": [(0, DECODED, NORM_SHIFT_DIVIDED)],
        "embeddings": [(1, DECODED, COPY)],  # the tied embedding, also the head's weight
        "output_kernel": [(0, DECODED, DIVIDE)],
    }

    def propagate(self, ctx, call):
        layer = call.op
        stream = composite.first_tensor(call)
        for key in call.inputs:
            if key != stream:
                ctx.groups.freeze_layout(ctx.layout(key), (
                    f"MaskedLMHead {call.path!r} reads it as mask positions"))
        ctx.fresh(call.outputs[0], ctx.rank(call.outputs[0]) - 1, call.path,
                  frozen=f"MaskedLMHead {call.path!r}: logits over the vocabulary")
        layout = ctx.layout(stream)
        if not require_axis(ctx, call, layout, ctx.rank(stream) - 1, role="model-width"):
            layout = None
        decoded = layout
        embedding = layer.token_embedding
        if embedding is not None:
            calls = ctx.graph.calls_of(_owner(ctx, embedding))
            decoded = ctx.layout(calls[0].outputs[0]) if calls else None
            if decoded is None:
                ctx.groups.freeze_layout(layout, (
                    f"MaskedLMHead {call.path!r} decodes with an embedding the graph does "
                    "not call forward"))
                layout = None
        elif layout is None:
            decoded = None
        if decoded is not None:
            ctx.groups.require_blocks(decoded.segments[0].atom, 1, (
                f"MaskedLMHead {call.path!r} normalises the width it decodes from, so "
                "every channel must be copied equally (an integer widening factor)"))
        ctx.record_io(call, **{IN: layout, OUT: None, DECODED: decoded})

    def weight_axes(self, layer, io):
        axes = super().weight_axes(layer, io)
        if layer.token_embedding is not None:
            return axes
        # Untied (ESM's): the output kernel's rows are divided, so the norm
        # before it keeps its plain (copied) scale and shift.
        for index, variable in enumerate(layer.weights):
            if variable.path.endswith("intermediate_layer_norm/gamma") or \
                    variable.path.endswith("intermediate_layer_norm/beta"):
                axes[index] = [(0, DECODED, COPY)]
        return axes

    def pad_constraints(self, solver, call, ins, outs, where):
        raise ValueError(f"{where} normalises the width it decodes from, and padded "
                         "channels through it are not worked out")


def _owner(ctx, embedding):
    """The graph's layer that calls `embedding` forward: itself, or a layer
    holding it (DistilBERT's TokenAndPositionEmbedding), whose output is
    then the embedding's group."""
    for layer in ctx.graph.layers.values():
        if layer is embedding:
            return layer
    for layer in ctx.graph.layers.values():
        if not isinstance(layer, keras.Model) and isinstance(layer, keras.layers.Layer) and \
                any(sub is embedding for sub in _keras.sublayers(layer)):
            return layer
    return embedding


class ReversibleEmbeddingRule(composite.ReversibleEmbeddingRule):
    """keras_hub's ReversibleEmbedding, also where its forward call is inside
    a layer holding it (OPT's and RoBERTa's TokenAndPositionEmbedding) and a
    task calls it in reverse (OPTCausalLM's LM head): the reverse call reads
    the holder's output group, through the same tie as the core rule's."""

    def propagate(self, ctx, call):
        layer = call.op
        arguments = inspect.signature(layer.call).bind_partial(*call.args, **call.kwargs)
        owner = _holder(ctx, layer)
        calls = ctx.graph.calls_of(owner) if owner is not None else []
        if not arguments.arguments.get("reverse", False) or \
                ctx.producer_atoms.get(id(layer)) is not None or not calls or \
                getattr(layer, "quantization_mode", None):
            super().propagate(ctx, call)
            return
        ctx.fresh(call.outputs[0], ctx.rank(call.outputs[0]) - 1, call.path,
                  frozen=f"ReversibleEmbedding {call.path!r}: reverse logits (the vocabulary)")
        key = call.inputs[0]
        layout, forward = ctx.layout(key), ctx.layout(calls[0].outputs[0])
        if layout is None or forward is None:
            reason = (f"ReversibleEmbedding {call.path!r} is called in reverse on a width "
                      f"its holder {owner.name!r} does not write")
            ctx.groups.freeze_layout(layout, reason)
            ctx.groups.freeze_layout(forward, reason)
            return
        reason = None if not layer.tie_weights else composite.tied_norm(ctx, key, call)
        if reason:
            ctx.groups.freeze_layout(layout, reason)
            return
        ctx.unify(layout, forward, call.path)
        ctx.record_io(call, **{OUT: forward})
        if layer.tie_weights:
            norm = ctx.graph.producers[composite.tied_source(ctx, key)].op
            ctx.io[id(norm)].extra["tied_divide"] = True


def _holder(ctx, layer):
    """The graph's layer (not a model) holding `layer` as a sublayer, or None."""
    for other in ctx.graph.layers.values():
        if other is not layer and not isinstance(other, keras.Model) and \
                isinstance(other, keras.layers.Layer) and \
                any(sub is layer for sub in _keras.sublayers(other)):
            return other
    return None


class RMSNormLastAxis(channelwise.RMSNormRule):
    """An RMS norm over the last axis with a `scale` (keras_hub's
    LlamaLayerNorm and kin, which have no `axis` attribute)."""

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        ctx.layouts[call.outputs[0]] = layout
        if layout is None or layout.axis != ctx.rank(call.inputs[0]) - 1:
            ctx.record_io(call, **{IN: None})
            return
        self._constrain(ctx, call, layout)
        ctx.record_io(call, **{IN: layout})
        ctx.io[id(call.op)].extra["param_axis"] = 0


TABLE = {
    _td.TransformerDecoder: TransformerBlockRule("self_attention"),
    _te.TransformerEncoder: TransformerBlockRule("self_attention_layer"),
    _pe.PositionEmbedding: PositionEmbeddingRule(),
    _tpe.TokenAndPositionEmbedding: TokenAndPositionEmbeddingRule(),
    _re.ReversibleEmbedding: ReversibleEmbeddingRule(),
    # keras_hub's models build Keras' own class: the same rule, which falls
    # back to the core one unless a holder calls it forward.
    keras.layers.ReversibleEmbedding: ReversibleEmbeddingRule(),
    _cmha.CachedMultiHeadAttention: attention.MultiHeadAttentionRule(),
    _mlm.MaskedLMHead: MaskedLMHeadRule(),
}
