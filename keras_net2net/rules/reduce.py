"""Reductions (`keras.ops.sum`, `keras.ops.mean`) and the constants that
inlined custom layers derive from their inputs.

A reduction over other axes than the channels moves the channel axis (or
keeps it, with `keepdims`). Over the channel axis it is a barrier: a sum would
count every copied channel again, and a mean is exact only for groups whose
channels are all copied equally, which is not yet planned for it.

`sum(zeros_like(x))` is 0 whatever x holds (zeros_like ignores NaN and inf):
`keras_net2net.inline` derives the constants that sublayers of a custom layer
are called on (position ids) from the layer's input this way, so that the
sublayer stays a graph layer whose width can grow. Such a tensor, and what
element-wise ops compute from it alone, is a constant: it has no channels to
follow and constrains none (`Context.constants`).
"""


from keras_net2net._keras import ops_numpy
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout


def _axes(axis, rank):
    if axis is None:
        return set(range(rank))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return {a % rank for a in axes}


class ReduceRule(Rule):
    def __init__(self, what):
        self.what = what

    def propagate(self, ctx, call):
        source = call.inputs[0] if call.inputs else None
        producer = ctx.graph.producers.get(source)
        if source in ctx.constants or (producer is not None and
                                       isinstance(producer.op, ops_numpy.ZerosLike)):
            ctx.layouts[call.outputs[0]] = None  # a constant, whatever the width
            ctx.constants.add(call.outputs[0])
            return
        layout = input_layout(ctx, call)
        if layout is None:
            ctx.layouts[call.outputs[0]] = None
            return
        rank = ctx.rank(source)
        axes = _axes(call.op.axis, rank)
        if layout.axis in axes:
            ctx.barrier(call, f"it {self.what}")
            return
        keepdims = getattr(call.op, "keepdims", False)
        new = layout.axis if keepdims else layout.axis - sum(a < layout.axis for a in axes)
        ctx.layouts[call.outputs[0]] = layout.moved(new)


TABLE = {
    ops_numpy.Sum: ReduceRule(
        "sums over the channel axis, which would count every copied channel again"),
    ops_numpy.Mean: ReduceRule(
        "averages over the channel axis, which is exact only where every channel is "
        "copied equally (not planned for a mean yet)"),
}
