"""Merges: element-wise layers and keras.ops calls (with broadcasting and
constants) share one mapping across all inputs; Concatenate on the channel
axis joins its inputs' layouts end to end."""

import numpy as np

from keras_net2net import activations
from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.graph import TensorKey
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import ZERO_FILL
from keras_net2net.rules import sides
from keras_net2net.rules.base import Rule

# Pad kinds through element-wise merges (keras_net2net.padding), by the
# class name of the layer or op: sums keep "mean" and "zero" pads, products
# and maxima keep "zero" pads, scalings by a constant keep both.
_SUMS = {"Add", "Subtract", "Average"}
_PRODUCTS = {"Multiply", "Maximum", "Minimum"}
_SCALINGS = {"Multiply", "Divide", "TrueDivide", "Negative"}


def operands(call):
    """A call's arguments, lists and tuples flattened one level: the operands
    of a merge or an element-wise op (tensor keys and constants)."""
    flat = []
    for a in list(call.args) + list(call.kwargs.values()):
        if isinstance(a, (list, tuple)):
            flat.extend(a)
        else:
            flat.append(a)
    return flat


def merge_elementwise(ctx, call, operands):
    """Broadcasting merge: one mapping shared by every tensor operand."""
    out_key = call.outputs[0]
    out_shape = ctx.shape(out_key)
    rank = len(out_shape)
    where = f"{type(call.op).__name__} {call.path!r}"
    aligned, constants = [], []
    for operand in operands:
        if isinstance(operand, TensorKey):
            layout = ctx.layout(operand)
            if layout is None:
                continue
            axis = layout.axis + rank - ctx.rank(operand)
            if ctx.shape(operand)[layout.axis] == 1 and out_shape[axis] != 1:
                ctx.groups.freeze_layout(layout, f"{where} broadcasts it over channels")
                continue
            aligned.append(layout.moved(axis))
        elif operand is not None and not isinstance(operand, (str, bool)):
            constants.append(np.shape(operand))
    tensors = [k for k in operands if isinstance(k, TensorKey)]
    if not aligned and tensors and all(k in ctx.constants for k in tensors):
        ctx.layouts[out_key] = None  # computed from constants alone: a constant
        ctx.constants.add(out_key)
        return
    if not aligned:
        ctx.fresh(out_key, rank - 1 if rank > 1 else None, call.path,
                  frozen=f"{where} output has no channels to follow")
        return
    base = aligned[0]
    same_axis = all(layout.axis == base.axis for layout in aligned)
    ok = same_axis and all(ctx.unify(base, other, call.path) for other in aligned[1:])
    for shape in constants:
        offset = rank - len(shape)
        if base.axis >= offset and shape[base.axis - offset] not in (1,):
            ok = False
    if not ok:
        for layout in aligned:
            ctx.groups.freeze_layout(
                layout, f"{where} joins tensors whose channels cannot share one mapping")
    ctx.layouts[out_key] = base


def elementwise_pad_constraints(pads, call, ins, outs, where):
    """Pad kinds through an element-wise merge or op (see `_SUMS`); an op
    named after an activation keeps zero pads if it maps 0 to 0."""
    name = type(call.op).__name__
    constants = [a for a in operands(call)
                 if a is not None and not isinstance(a, (str, bool, TensorKey))]
    if name in _SUMS or name == "Concatenate":  # (Concatenate on another axis)
        pads.same(ins + outs, where)
        if constants:  # x + c: the mean moves with it, a zero does not
            pads.require(outs[0], MEAN_FILL, where)
    elif name in _SCALINGS and len(ins) == 1:
        pads.same(ins + outs, where)  # x * c, x / c, -x: linear
    elif name in _PRODUCTS or activations.maps_zero_to_zero(name.lower()) or \
            activations.maps_zero_to_zero(_snake(name)):
        for key in ins + outs:
            pads.require(key, ZERO_FILL, where)
    else:
        raise ValueError(f"{where} keeps no pad kind")


def _snake(name):
    """"LeakyRelu" -> "leaky_relu": the activation an op class is named after."""
    return "".join("_" + c.lower() if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))


def _has_sides(ctx, operands):
    return any(isinstance(k, TensorKey) and sides.of(ctx, k) for k in operands)


def merge_axes(ctx, call, operands, joined=None):
    """A merge of tensors with layouts on several axes (`rules.sides`): per
    output axis, the operands' layouts there share one mapping, and an
    operand of full size there with no channel group on it (its size fixed)
    keeps them at their width. `joined` is Concatenate's axis: its layouts
    are joined end to end, and a part with none there is a run kept at its
    size."""
    out_key = call.outputs[0]
    out_shape = ctx.shape(out_key)
    rank = len(out_shape)
    where = f"{type(call.op).__name__} {call.path!r}"
    by_axis, tensors, constants = {}, [], []
    for operand in operands:
        if not isinstance(operand, TensorKey):
            if operand is not None and not isinstance(operand, (str, bool)):
                constants.append(np.shape(operand))
            continue
        shift, have = rank - ctx.rank(operand), {}
        for layout in sides.layouts(ctx, operand):
            axis = layout.axis + shift
            if ctx.shape(operand)[layout.axis] == 1 and out_shape[axis] != 1:
                ctx.groups.freeze_layout(layout, f"{where} broadcasts it over its axis")
                continue
            have[axis] = layout.moved(axis)
            by_axis.setdefault(axis, []).append(have[axis])
        tensors.append((operand, shift, have))
    if not by_axis and tensors and all(k in ctx.constants for k, _, _ in tensors):
        ctx.layouts[out_key] = None
        ctx.constants.add(out_key)
        return
    out = []
    for axis, found in sorted(by_axis.items()):
        if axis == joined:
            out.append(_join(ctx, call, axis, tensors))
            continue
        why = None
        if not all(ctx.unify(found[0], other, call.path) for other in found[1:]):
            why = "joins tensors whose channels cannot share one mapping"
        for operand, shift, have in tensors:
            size = ctx.shape(operand)[axis - shift] if axis >= shift else 1
            if axis not in have and size != 1 and operand not in ctx.constants:
                why = (f"joins tensors whose channels sit on different axes (axis {axis} "
                       "holds channels in one input and a size of its own in another)")
        for shape in constants:
            offset = rank - len(shape)
            if axis >= offset and shape[axis - offset] != 1:
                why = f"broadcasts a constant over axis {axis}, which carries channels"
        if why:
            for layout in found:
                ctx.groups.freeze_layout(layout, f"{where} {why}")
        out.append(found[0])
    if not out:
        ctx.fresh(out_key, rank - 1 if rank > 1 else None, call.path,
                  frozen=f"{where} output has no channels to follow")
        return
    sides.settle(ctx, out_key, out)


def _join(ctx, call, axis, tensors):
    """Concatenate's axis: the parts' layouts end to end; a part without a
    channel group there is a run kept at its size."""
    segments = []
    for operand, shift, have in tensors:
        if axis in have:
            segments.extend(have[axis].segments)
            continue
        width = ctx.shape(operand)[axis - shift]
        atom = ctx.groups.new_atom(width)
        ctx.groups.freeze(atom, f"{type(call.op).__name__} {call.path!r} joins it with an "
                                "input that has no channel group on that axis (kept at its size)")
        segments.append(Segment(atom, width))
    return Layout(axis, tuple(segments))


class ElementwiseMergeRule(Rule):
    """Add, Subtract, Multiply, Average, Maximum, Minimum and element-wise ops."""

    handles_sides = True

    def propagate(self, ctx, call):
        args = operands(call)
        if _has_sides(ctx, args):
            merge_axes(ctx, call, args)
            return
        merge_elementwise(ctx, call, args)

    def pad_constraints(self, pads, call, ins, outs, where):
        elementwise_pad_constraints(pads, call, ins, outs, where)


class ConcatenateRule(Rule):
    """On the channel axis, the parts' layouts are joined end to end; on
    another axis the parts' channels share one mapping, as in an Add (a class
    token or an `expand_dims`'d feature beside embeddings). A part that has no
    channel group (a feature computed from rank-1 inputs or constants) is a
    run kept at its size on the joined axis; channels on different axes of
    the parts keep their width, with the reason naming the layer."""

    handles_sides = True

    def pad_constraints(self, pads, call, ins, outs, where):
        # On the channel axis the group is concatenated, which padding refuses
        # before asking; on another axis it is a merge.
        elementwise_pad_constraints(pads, call, ins, outs, where)

    def propagate(self, ctx, call):
        inputs = [k for k in operands(call) if isinstance(k, TensorKey)]
        rank = ctx.rank(call.outputs[0])
        axis = call.op.axis % rank
        layouts = [ctx.layout(k) for k in inputs]
        if not _has_sides(ctx, inputs):
            if all(layout is not None and layout.axis == axis for layout in layouts):
                segments = tuple(s for layout in layouts for s in layout.segments)
                ctx.layouts[call.outputs[0]] = Layout(axis, segments)
                return
            if all(layout is not None and layout.axis != axis for layout in layouts):
                merge_elementwise(ctx, call, inputs)  # Joined along another axis.
                return
        merge_axes(ctx, call, inputs, joined=axis)
