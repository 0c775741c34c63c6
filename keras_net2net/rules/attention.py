"""Attention layers (MultiHeadAttention, GroupQueryAttention) and EinsumDense.
See TABLE.

An attention layer consumes the channel groups of its query, key and value
(rows of the projections, divided by the copy counts) and owns widths that no
tensor carries: its heads and head dims, inner groups (`Context.inner`) named
"layer:key" after the config key that holds them. Their math, in the layout of
the Keras kernels (query/key/value `(model, heads, dim)`, output
`(heads, value_dim, out)`):

- heads (`num_heads`): a copied head copies its query, key and value slices;
  its output-kernel slice is divided by the copy count. Softmax runs per head,
  so every copy attends exactly as its original, and the output sums back.
- value dims (`value_dim`): copied in the value (and gate) kernels, divided in
  the output kernel, like channels.
- key dims (`key_dim`, GQA's `head_dim`): scores are q.k / sqrt(d). Copying
  both sides would count a copied dim twice, and rescaling by (d/d')^(1/4)
  is exact only when every dim is copied equally often. So the key side is
  copied and the query side keeps each dim once, times sqrt(d'/d), with its
  other copies zero (`QUERY_DIMS`): q'.k' / sqrt(d') = q.k / sqrt(d) at any d'.
  Balanced noise stays exact on that side too (copied keys are identical).
- grouped-query heads: query head u reads key/value head u // r
  (r = num_query_heads / num_key_value_heads). The query heads are the product
  (kv head, repeat): growing the kv heads copies each with its r query heads,
  growing r copies query heads inside their kv head, so each query head keeps
  its key/value head at any width.

A global factor (`widen=2.0`) grows the heads (MHA `num_heads`, GQA
`num_key_value_heads`, the query heads following), as model widths grow; head
dims and GQA's `num_repeats` grow when asked for by name:
`widen={"mha": {"num_heads": 8, "key_dim": 32}}`. Masks, `use_causal_mask`,
dropout and `return_attention_scores` are unchanged by construction; returned
scores carry the heads on their heads axis (a model output keeps them).
"""

import inspect
import re

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net.channels import Layout
from keras_net2net.channels import Product
from keras_net2net.channels import Segment
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout
from keras_net2net.rules.base import require_axis
from keras_net2net.rules.mixing import freeze_non_elementwise_activation
from keras_net2net.rules.mixing import refuse_special_kernels

L = keras.layers

QUERY, KEY, VALUE = "query", "key", "value"
HEADS, KEY_DIM, VALUE_DIM = "heads", "key_dim", "value_dim"
KV_HEADS, REPEATS = "kv_heads", "repeats"

# The projections' sublayers by attribute, shared by both attention layers.
_SUBLAYERS = ("_query_dense", "_key_dense", "_gate_dense", "_value_dense", "_output_dense")


def _arguments(call):
    """The call's arguments by parameter name (tensors as TensorKeys)."""
    signature = inspect.signature(call.op.call)
    return signature.bind_partial(*call.args, **call.kwargs).arguments


class _AttentionRule(Rule):
    """Shared by MHA and GQA: inputs, masks, sublayers and weight specs.

    `specs`: {sublayer attribute: {weight name: [(axis, role, mode)]}}.
    """

    specs = {}
    zeroable = True

    def zeroing_problem(self, op):
        return None  # its output projection is zeroed; no activation follows

    def zeroed_weights(self, layer):
        return _keras.attention_output_dense(layer), ("kernel", "bias")

    def key_dim_axes(self, layer):
        sub = _keras.attention_key_dense(layer)  # its weights' last axis: key dims
        return {id(v): len(v.shape) - 1 for v in sub.weights} if sub is not None else {}

    def _inputs(self, ctx, call):
        """Layouts of query, key and value (None where not on the last axis);
        every other tensor the call reads is a mask, which keeps its width."""
        if any(getattr(getattr(call.op, attr, None), "lora_enabled", False) or
               getattr(getattr(call.op, attr, None), "quantization_mode", None)
               for attr in _SUBLAYERS):
            ctx.barrier(call, "its projections are LoRA-enabled or quantized; they keep "
                              "their width")
            return None
        args = _arguments(call)
        query, value = args.get("query"), args.get("value")
        key = args.get("key") or value
        for other in call.inputs:
            if other not in (query, key, value):
                ctx.groups.freeze_layout(
                    ctx.layout(other), f"{type(call.op).__name__} {call.path!r} reads it as "
                    "an attention mask (its axes are positions, not channels)")
        layouts = []
        for tensor in (query, key, value):
            layout = ctx.layout(tensor)
            ok = require_axis(ctx, call, layout, ctx.rank(tensor) - 1, role="model-width")
            layouts.append(layout if ok else None)
        return query, layouts

    @staticmethod
    def _guard_bias_add(ctx, call, heads, dims, lengths):
        """Keras' TensorFlow `ops.add` takes a bias of shape (heads, 1) for an
        NCHW bias over axis 1 of (batch, length, heads, 1) whenever heads ==
        length, and adds it along the sequence: with a head dim of 1 and a
        bias, the heads keep their count (unless no length could reach it)."""
        layer = call.op
        if keras.backend.backend() != "tensorflow" or not layer.use_bias or 1 not in dims:
            return
        count = min(layout.size for layout in heads)
        if any(n is None or n > count for n in lengths):
            for layout in heads:
                ctx.groups.freeze_layout(layout, (
                    f"{type(layer).__name__} {call.path!r} has a head dim of 1 and biases: "
                    "Keras' TensorFlow add() would take their (heads, 1) bias for one over the "
                    "sequence once the heads equal a sequence length"))

    def weight_axes(self, layer, io):
        """Weights keyed by index: the sublayers' weights repeat their names."""
        axes = {}
        for index, variable in enumerate(layer.weights):
            for attr, spec in self.specs.items():
                sub = getattr(layer, attr, None)
                if sub is not None and any(variable is w for w in sub.weights):
                    axes[index] = spec.get(variable.name, [])
        return axes


class MultiHeadAttentionRule(_AttentionRule):
    """MultiHeadAttention: consumes query, key and value; produces its output
    (`output_shape`, by default the query's width); owns `num_heads` (grown by
    a global factor), `key_dim` and `value_dim` (grown on request)."""

    inner_keys = {"num_heads": HEADS, "key_dim": KEY_DIM, "value_dim": VALUE_DIM}
    specs = {
        "_query_dense": {"kernel": [(0, QUERY, DIVIDE), (1, HEADS, COPY), (2, KEY_DIM, QUERY_DIMS)],
                         "bias": [(0, HEADS, COPY), (1, KEY_DIM, QUERY_DIMS)]},
        "_key_dense": {"kernel": [(0, KEY, DIVIDE), (1, HEADS, COPY), (2, KEY_DIM, COPY)],
                       "bias": [(0, HEADS, COPY), (1, KEY_DIM, COPY)]},
        "_value_dense": {"kernel": [(0, VALUE, DIVIDE), (1, HEADS, COPY), (2, VALUE_DIM, COPY)],
                         "bias": [(0, HEADS, COPY), (1, VALUE_DIM, COPY)]},
        # use_gate: sigmoid(query projection) times the attention output, per dim.
        "_gate_dense": {"kernel": [(0, QUERY, DIVIDE), (1, HEADS, COPY), (2, VALUE_DIM, COPY)],
                        "bias": [(0, HEADS, COPY), (1, VALUE_DIM, COPY)]},
        "_output_dense": {"kernel": [(0, HEADS, DIVIDE), (1, VALUE_DIM, DIVIDE), (2, OUT, COPY)],
                          "bias": [(0, OUT, COPY)]},
    }

    def propagate(self, ctx, call):
        found = self._inputs(ctx, call)
        if found is None:
            return
        query, (lq, lk, lv) = found
        layer = call.op
        heads = ctx.inner(call, "num_heads", layer.num_heads)
        key_dim = ctx.inner(call, "key_dim", layer.key_dim, on_request=True)
        value_dim = ctx.inner(call, "value_dim", layer.value_dim, on_request=True)
        out_key = call.outputs[0]
        shape = _keras.attention_output_shape(layer)
        if shape is None or len(shape) == 1:
            out = ctx.produce(call, out_key, ctx.rank(out_key) - 1)
        else:
            out = None
            ctx.fresh(out_key, ctx.rank(out_key) - 1, call.path, frozen=(
                f"MultiHeadAttention {call.path!r} has output_shape={tuple(shape)}: an output "
                "of several axes keeps its width"))
        if len(call.outputs) > 1:  # return_attention_scores: (batch.., heads, T.., S..)
            ctx.layouts[call.outputs[1]] = Layout(
                _scores_heads_axis(layer, ctx.rank(query)), heads.segments)
        lengths = [ctx.shape(query)[1], ctx.shape(_arguments(call)["value"])[1]]
        self._guard_bias_add(ctx, call, [heads], (layer.key_dim, layer.value_dim), lengths)
        ctx.record_io(call, **{QUERY: lq, KEY: lk, VALUE: lv, OUT: out, HEADS: heads,
                               KEY_DIM: key_dim, VALUE_DIM: value_dim})
        ctx.io[id(layer)].extra["query_width"] = ctx.shape(query)[-1]

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        out, query = io.layouts.get(OUT), io.layouts.get(QUERY)
        if out is not None:
            width = plan.width(out)
            query_width = plan.width(query) if query is not None else io.extra["query_width"]
            # Without output_shape the output takes the query's width.
            if config.get("output_shape") or width != query_width:
                config["output_shape"] = (width,)
        return config


def _scores_heads_axis(layer, query_rank):
    """The heads axis of the scores, as Keras' _build_attention_equation lays
    them out: (batch dims, heads, query attention dims, key attention dims)."""
    rank = query_rank + 1  # projected: (batch, ..., heads, dim)
    batch_dims = list(np.delete(np.arange(rank), tuple(_keras.attention_axes(layer)) + (rank - 1,)))
    return batch_dims.index(rank - 2)


class GroupQueryAttentionRule(_AttentionRule):
    """GroupQueryAttention: query, key, value and output share one width (Keras
    requires it), so they are one group; owns `num_key_value_heads` (grown by a
    global factor), `num_repeats` (query heads per kv head) and `head_dim`
    (grown on request). `num_query_heads` is their product."""

    QUERY_HEADS = "query_heads"
    # Writes its output group through its output projection without producing
    # it (query and output share one group): those columns make its pad kind.
    writes = True
    inner_keys = {"num_query_heads": QUERY_HEADS, "num_key_value_heads": KV_HEADS,
                  "head_dim": KEY_DIM}
    specs = {
        "_query_dense": {"kernel": [(0, QUERY, DIVIDE), (1, QUERY_HEADS, COPY),
                                    (2, KEY_DIM, QUERY_DIMS)],
                         "bias": [(0, QUERY_HEADS, COPY), (1, KEY_DIM, QUERY_DIMS)]},
        "_key_dense": {"kernel": [(0, KEY, DIVIDE), (1, KV_HEADS, COPY), (2, KEY_DIM, COPY)],
                       "bias": [(0, KV_HEADS, COPY), (1, KEY_DIM, COPY)]},
        "_value_dense": {"kernel": [(0, VALUE, DIVIDE), (1, KV_HEADS, COPY), (2, KEY_DIM, COPY)],
                         "bias": [(0, KV_HEADS, COPY), (1, KEY_DIM, COPY)]},
        "_gate_dense": {"kernel": [(0, QUERY, DIVIDE), (1, QUERY_HEADS, COPY), (2, KEY_DIM, COPY)],
                        "bias": [(0, QUERY_HEADS, COPY), (1, KEY_DIM, COPY)]},
        "_output_dense": {"kernel": [(0, QUERY_HEADS, DIVIDE), (1, KEY_DIM, DIVIDE),
                                     (2, OUT, COPY)],
                          "bias": [(0, OUT, COPY)]},
    }

    def propagate(self, ctx, call):
        found = self._inputs(ctx, call)
        if found is None:
            return
        query, (lq, lk, lv) = found
        layer = call.op
        if lq is None or not all(ctx.unify(lq, other, call.path) for other in (lk, lv)):
            reason = (f"GroupQueryAttention {call.path!r} needs query, key and value of one "
                      "width, and they cannot grow together")
            for layout in (lq, lk, lv):
                ctx.groups.freeze_layout(layout, reason)
            lq = lk = lv = None
        kv_heads = ctx.inner(call, "num_key_value_heads", layer.num_key_value_heads)
        repeats = ctx.inner(call, "num_repeats", layer.num_repeats, on_request=True)
        head_dim = ctx.inner(call, "head_dim", layer.head_dim, on_request=True)
        lengths = [ctx.shape(query)[1], ctx.shape(_arguments(call)["value"])[1]]
        self._guard_bias_add(ctx, call, [kv_heads, repeats], (layer.head_dim,), lengths)
        out_key = call.outputs[0]
        if lq is not None:
            ctx.layouts[out_key] = lq  # the output has the query's width
        else:
            ctx.fresh(out_key, ctx.rank(out_key) - 1, call.path, frozen=(
                f"GroupQueryAttention {call.path!r} writes the width of its query, "
                "which is kept"))
        if len(call.outputs) > 1:  # return_attention_scores: (batch, query heads, T, S)
            kv = kv_heads.segments[0]
            ctx.layouts[call.outputs[1]] = Layout(1, (Segment(kv.atom, kv.width, layer.num_repeats),))
            ctx.groups.freeze_layout(repeats, (
                f"GroupQueryAttention {call.path!r} returns its attention scores, whose "
                "heads axis follows the key/value heads only"))
        ctx.record_io(call, **{QUERY: lq, KEY: lk, VALUE: lv, OUT: lq, KV_HEADS: kv_heads,
                               self.QUERY_HEADS: Product(kv_heads, repeats), KEY_DIM: head_dim})


class EinsumDenseRule(Rule):
    """EinsumDense, read from its equation `input,kernel->output`.

    The input's channel axis is the letter at its layout's axis: contracted
    with the kernel (in the kernel, not the output: rows divided by the copy
    counts), per-channel (kernel and output: copied, the output carries the
    input's channels), passed through (output only: carried), or summed away
    (neither: the channels keep their width). The layer produces a group on
    its last output axis when that axis comes from the kernel alone; other
    kernel output axes (e.g. (heads, dim)) keep their width, since a tensor
    carries one channel axis and the next layer reads the last one. When both
    a produced axis and carried input channels would reach the output, the
    input's channels keep their width. The bias follows the output letter when
    `bias_axes` names it.
    """

    zeroable = True

    def propagate(self, ctx, call):
        if refuse_special_kernels(ctx, call):
            return
        spec = _einsum_axes(call.op.equation, ctx.rank(call.inputs[0]))
        if spec is None:
            ctx.barrier(call, f"its equation {call.op.equation!r} repeats a letter in one "
                              "operand or has a form the toolkit does not read")
            return
        ins, kernel, outs, offset = spec
        elided = offset if ins[0] is None else 0
        if ctx.shape(call.outputs[0])[1:elided] != ctx.shape(call.inputs[0])[1:elided]:
            ctx.barrier(call, "Keras gives it a wrong symbolic output shape (the axes its "
                              "'...' stands for, reversed), which growth cannot follow")
            return
        inp = input_layout(ctx, call)
        letter = ins[inp.axis] if inp is not None and inp.axis < len(ins) else None
        weights = {"kernel": [], "bias": []}
        carried = None  # output axis the input's channels pass to
        if inp is not None and letter is None:  # an elided axis passes through
            carried = inp.axis if ins[0] is None else len(outs) - (len(ins) - inp.axis)
        elif inp is not None and letter in outs:
            carried = outs.index(letter)
            if letter in kernel:
                weights["kernel"].append((kernel.index(letter), IN, COPY))
        elif inp is not None and letter in kernel:
            weights["kernel"].append((kernel.index(letter), IN, DIVIDE))
        elif inp is not None:
            ctx.groups.freeze_layout(inp, f"EinsumDense {call.path!r} sums over its channels "
                                          f"(letter {letter!r} of {call.op.equation!r})")
            inp = None
        out_key = call.outputs[0]
        last = outs[-1]
        produced = last is not None and last in kernel and last not in ins
        if produced:
            if carried is not None:
                ctx.groups.freeze_layout(inp, (
                    f"EinsumDense {call.path!r} passes these channels to output axis "
                    f"{carried} and produces its own on the last axis; a tensor carries one "
                    "channel axis"))
                weights["kernel"] = []
                carried = None
            out = ctx.produce(call, out_key, len(outs) - 1)
            weights["kernel"].append((kernel.index(last), OUT, COPY))
            axis = len(outs) - 1
        elif carried is not None:
            out = inp.moved(carried)
            ctx.layouts[out_key] = out
            axis = carried
        else:
            out = None
            ctx.fresh(out_key, len(outs) - 1, call.path, frozen=(
                f"EinsumDense {call.path!r}: the last axis of {call.op.equation!r} is not a "
                "kernel output axis"))
        bias_axes = call.op.bias_axes or ""
        if out is not None and outs[axis] in bias_axes:
            first = min(outs.index(c) for c in bias_axes)
            weights["bias"].append((axis - first, OUT, COPY))
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, OUT: out})
        extra = ctx.io[id(call.op)].extra
        extra["weights"] = weights
        # Position of the output axis in the config's output_shape (no batch).
        extra["shape_index"] = axis - offset if out is not None else None

    def edit_config(self, config, io, plan):
        index, out = io.extra.get("shape_index"), io.layouts.get(OUT)
        shape = list(config["output_shape"]) if isinstance(
            config["output_shape"], (list, tuple)) else [config["output_shape"]]
        if out is not None and index is not None and 0 <= index < len(shape) and \
                shape[index] is not None:
            shape[index] = plan.width(out)
            config["output_shape"] = tuple(shape)
        return config

    def weight_axes(self, layer, io):
        return io.extra.get("weights", {})


def _einsum_axes(equation, rank):
    """(input letters, kernel letters, output letters, offset) of an
    EinsumDense equation, one letter per tensor axis (None where elided), and
    the offset from an output axis to its index in `output_shape`. None for
    forms Keras does not take or a letter repeated in one operand."""
    m = re.fullmatch(r"(\.\.\.)?([a-zA-Z]+)(\.\.\.)?,([a-zA-Z]+)->(\.\.\.)?([a-zA-Z]+)(\.\.\.)?",
                     equation.replace(" ", ""))
    if m is None:
        return None
    left_in, x, right_in, y, left_out, z, right_out = m.groups()
    if any(len(set(s)) != len(s) for s in (x, y, z)):
        return None
    elided = rank - len(x)
    if left_in and left_out and not (right_in or right_out) and elided >= 1:
        return [None] * elided + list(x), list(y), [None] * elided + list(z), elided
    if right_in and right_out and not (left_in or left_out) and elided >= 0:
        return list(x) + [None] * elided, list(y), list(z) + [None] * elided, 1
    if not (left_in or right_in or left_out or right_out) and elided == 0:
        return list(x), list(y), list(z), 1
    return None


TABLE = {
    L.MultiHeadAttention: MultiHeadAttentionRule(),
    L.GroupQueryAttention: GroupQueryAttentionRule(),
    L.EinsumDense: EinsumDenseRule(),
}
