"""keras.ops calls that move, cut or contract the channel axis: split, pad,
slicing, transpose / swapaxes / moveaxis, stack, expand_dims / squeeze, and
the contractions matmul / einsum / `keras.layers.Dot`.

Moving the axis is exact: the layout follows it. Cutting the channel axis into
pieces (split) cuts the group into runs that grow apart. A contraction over a
channel axis would count each copy once more (activations cannot be divided by
the copy counts the way weights are), so there it is a barrier that says so.
"""

import string

import keras

from keras_net2net._keras import ops_numpy
from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.graph import TensorKey
from keras_net2net.rules import merge
from keras_net2net.rules.base import SAME_PADS
from keras_net2net.rules import sides
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout

_CONTRACTED = "contracts the channel axis, which would count every copied channel again"


def _norm(axis, rank):
    return axis % rank


def _follow(ctx, call, axis_map):
    """Moves the input's layouts (the primary and its sides, `rules.sides`)
    by `axis_map(axis) -> new axis or None`."""
    sides.moved(ctx, call, axis_map)


class _Moves(Rule):
    handles_sides = True  # every layout of the tensor moves alike
    pads = SAME_PADS  # a move: pads pass as they are


class TransposeRule(_Moves):
    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        axes = call.op.axes
        perm = list(range(rank))[::-1] if axes is None else [_norm(a, rank) for a in axes]
        _follow(ctx, call, perm.index)


class SwapaxesRule(_Moves):
    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        a, b = _norm(call.op.axis1, rank), _norm(call.op.axis2, rank)
        _follow(ctx, call, lambda axis: b if axis == a else a if axis == b else axis)


class MoveaxisRule(_Moves):
    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        source = [_norm(a, rank) for a in call.op.source]
        destination = [_norm(a, rank) for a in call.op.destination]
        order = [a for a in range(rank) if a not in source]
        for dst, src in sorted(zip(destination, source)):
            order.insert(dst, src)
        _follow(ctx, call, order.index)


class ExpandDimsRule(_Moves):
    def propagate(self, ctx, call):
        out_rank = ctx.rank(call.outputs[0])
        axes = call.op.axis if isinstance(call.op.axis, (list, tuple)) else [call.op.axis]
        new_axes = sorted(_norm(a, out_rank) for a in axes)
        kept = [a for a in range(out_rank) if a not in new_axes]
        _follow(ctx, call, lambda axis: kept[axis])


class SqueezeRule(_Moves):
    def propagate(self, ctx, call):
        shape = ctx.shape(call.inputs[0])
        axis = call.op.axis
        if axis is None:
            dropped = [a for a, d in enumerate(shape) if d == 1]
        else:
            axes = axis if isinstance(axis, (list, tuple)) else [axis]
            dropped = [_norm(a, len(shape)) for a in axes]
        kept = [a for a in range(len(shape)) if a not in dropped]
        _follow(ctx, call, lambda a: kept.index(a) if a in kept else None)


class PadRule(Rule):
    """Padding other axes than the channels (sequence, spatial)."""

    pads = SAME_PADS  # a move: pads pass as they are

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        widths = list(call.op.pad_width)
        if len(widths) == 1:
            widths = widths * rank
        if layout is not None and tuple(widths[layout.axis]) != (0, 0):
            ctx.barrier(call, "it pads the channel axis")
            return
        ctx.layouts[call.outputs[0]] = layout


class GetItemRule(Rule):
    """`x[key]` with ints, slices, None and Ellipsis: the channel axis must be
    taken whole (`:`); its new position follows from the key."""

    pads = SAME_PADS  # a move: pads pass as they are

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if layout is None:
            ctx.layouts[call.outputs[0]] = None
            return
        key = call.args[1] if len(call.args) > 1 else call.kwargs.get("key")
        new_axis = _axis_after_key(key, ctx.rank(call.inputs[0]), layout.axis)
        if new_axis is None:
            ctx.barrier(call, "it indexes into the channel axis, which would read channels "
                              "by position")
            return
        ctx.layouts[call.outputs[0]] = layout.moved(new_axis)


def _axis_after_key(key, rank, axis):
    """Output position of input `axis` under `x[key]`, or None if the key
    does not take that axis whole (or is not a plain static key)."""
    items = list(key) if isinstance(key, (tuple, list)) else [key]
    if any(isinstance(k, TensorKey) or not (k is None or k is Ellipsis or isinstance(
            k, (int, slice))) for k in items):
        return None
    consuming = sum(1 for k in items if k is not None and k is not Ellipsis)
    if items.count(Ellipsis) > 1 or consuming > rank:
        return None
    expanded = []
    for k in items:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (rank - consuming))
        else:
            expanded.append(k)
    expanded.extend([slice(None)] * (rank - sum(1 for k in expanded if k is not None)))
    in_axis = out_axis = 0
    for k in expanded:
        if k is None:
            out_axis += 1
            continue
        if in_axis == axis:
            whole = isinstance(k, slice) and k.start in (None, 0) and k.stop is None and \
                k.step in (None, 1)
            return out_axis if whole else None
        in_axis += 1
        out_axis += 0 if isinstance(k, int) else 1
    return None


class StackRule(Rule):
    """Stacked tensors share one mapping (as an Add); the new axis may shift
    the channels."""

    def propagate(self, ctx, call):
        operands = [k for k in merge.operands(call) if isinstance(k, TensorKey)]
        stack_axis = _norm(call.op.axis, ctx.rank(call.outputs[0]))
        layouts = [ctx.layout(k) for k in operands]
        if all(layout is None for layout in layouts):
            ctx.layouts[call.outputs[0]] = None
            return
        base = layouts[0]
        if any(layout is None or layout.axis != base.axis or not ctx.unify(base, layout, call.path)
               for layout in layouts[1:]) or base is None:
            ctx.barrier(call, "it stacks tensors whose channels cannot share one mapping")
            return
        ctx.layouts[call.outputs[0]] = base.moved(base.axis + (stack_axis <= base.axis))


class SplitRule(Rule):
    """`split` / `array_split`: along the channel axis each piece is a run of
    the group that grows on its own (equal sections grow together, so they
    stay equal); along another axis every piece keeps the layout."""

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        if layout is None or layout.axis != _norm(call.op.axis, rank):
            for key in call.outputs:
                ctx.layouts[key] = layout
            return
        widths = [ctx.shape(k)[layout.axis] for k in call.outputs]
        sections = isinstance(call.op.indices_or_sections, int)
        if sections and len(set(widths)) > 1:
            ctx.barrier(call, "it splits the channels into unequal sections")
            return
        atoms = [ctx.groups.new_atom(w) for w in widths]
        if sections:
            for atom in atoms[1:]:
                ctx.groups.union(atoms[0], atom, call.path)
        pieces = [Layout(layout.axis, (Segment(a, w),)) for a, w in zip(atoms, widths)]
        joined = Layout(layout.axis, tuple(p.segments[0] for p in pieces))
        if not ctx.unify(layout, joined, call.path):
            ctx.barrier(call, "its pieces do not line up with the channel groups it reads")
            return
        for key, piece in zip(call.outputs, pieces):
            ctx.layouts[key] = piece
        if not sections:
            ctx.record_io(call, **{f"piece{i}": p for i, p in enumerate(pieces)})

    def edit_config(self, config, io, plan):
        if isinstance(config["indices_or_sections"], int):
            return config
        widths = [plan.width(io.layouts[f"piece{i}"]) for i in range(len(io.layouts))]
        bounds = [sum(widths[:i + 1]) for i in range(len(widths) - 1)]
        config["indices_or_sections"] = bounds
        return config


def _contract(ctx, call, specs, out_spec, operands):
    """Shared by matmul, einsum and Dot: `specs` are the operands' axis
    letters, `out_spec` the output's. A channel axis whose letter reaches the
    output moves there (operands with the same letter share one mapping); a
    group summed over keeps its width (one already kept is summed as it is)."""
    placed = []
    for key, spec in zip(operands, specs):
        layout = ctx.layout(key)
        if layout is None:
            continue
        letter = spec[layout.axis]
        if letter not in out_spec:
            if not all(ctx.groups.is_frozen(s.atom) for s in layout.segments):
                ctx.groups.freeze_layout(
                    layout, f"{type(call.op).__name__} {call.path!r} {_CONTRACTED}")
            continue
        placed.append(layout.moved(out_spec.index(letter)))
    if not placed:
        ctx.layouts[call.outputs[0]] = None
        return
    base = placed[0]
    if any(p.axis != base.axis or not ctx.unify(base, p, call.path) for p in placed[1:]):
        ctx.barrier(call, "its operands carry different channel groups into the output")
        return
    ctx.layouts[call.outputs[0]] = base


class MatmulRule(Rule):
    def propagate(self, ctx, call):
        a, b = call.inputs[:2]
        ra, rb = ctx.rank(a), ctx.rank(b)
        if ra < 2 or rb < 2:
            ctx.barrier(call, "vector products contract their only axis")
            return
        batch = string.ascii_lowercase[:max(ra, rb) - 2]
        sa = batch[len(batch) - (ra - 2):] + "xk"
        sb = batch[len(batch) - (rb - 2):] + "ky"
        _contract(ctx, call, [sa, sb], batch + "xy", [a, b])


class EinsumRule(Rule):
    def propagate(self, ctx, call):
        operands = [k for k in merge.operands(call) if isinstance(k, TensorKey)]
        specs, out_spec = _einsum_specs(call.op.subscripts, [ctx.rank(k) for k in operands])
        if specs is None:
            ctx.barrier(call, "its equation could not be read")
            return
        _contract(ctx, call, specs, out_spec, operands)


def _einsum_specs(subscripts, ranks):
    """Per-operand axis letters and the output's, with '...' spelled out."""
    text = subscripts.replace(" ", "")
    lhs, _, rhs = text.partition("->")
    inputs = lhs.split(",")
    if len(inputs) != len(ranks):
        return None, None
    spare = [c for c in string.ascii_uppercase + string.ascii_lowercase if c not in text]
    width = max((r - len(s.replace("...", "")) for s, r in zip(inputs, ranks) if "..." in s),
                default=0)
    ellipsis = "".join(spare[:width])
    specs = []
    for s, r in zip(inputs, ranks):
        if "..." in s:
            n = r - len(s.replace("...", ""))
            s = s.replace("...", ellipsis[width - n:])
        specs.append(s)
    if not rhs and "->" not in text:  # implicit output: letters seen once, sorted
        letters = "".join(specs)
        rhs = ellipsis + "".join(sorted(c for c in set(letters) if letters.count(c) == 1
                                        and c not in ellipsis))
    rhs = rhs.replace("...", ellipsis)
    if any(len(s) != r for s, r in zip(specs, ranks)):
        return None, None
    return specs, rhs


class DotRule(Rule):
    """`keras.layers.Dot`: contracts one axis of each input; the remaining
    axes of the first input, then of the second, follow the batch axis."""

    def propagate(self, ctx, call):
        a, b = call.inputs[:2]
        ra, rb = ctx.rank(a), ctx.rank(b)
        axes = call.op.axes
        axes = [axes, axes] if isinstance(axes, int) else list(axes)
        ca, cb = _norm(axes[0], ra), _norm(axes[1], rb)
        if call.op.normalize:
            ctx.barrier(call, "it normalises over the contracted axis")
            return
        sa = "z" + string.ascii_lowercase[:ra - 1]
        sb = "z" + string.ascii_uppercase[:rb - 1]
        sb = sb[:cb] + sa[ca] + sb[cb + 1:]
        out = "z" + "".join(c for i, c in enumerate(sa) if i not in (0, ca)) + \
            "".join(c for i, c in enumerate(sb) if i not in (0, cb))
        _contract(ctx, call, [sa, sb], out, [a, b])


TABLE = {
    ops_numpy.Transpose: TransposeRule(),
    ops_numpy.Swapaxes: SwapaxesRule(),
    ops_numpy.Moveaxis: MoveaxisRule(),
    ops_numpy.ExpandDims: ExpandDimsRule(),
    ops_numpy.Squeeze: SqueezeRule(),
    ops_numpy.Pad: PadRule(),
    ops_numpy.GetItem: GetItemRule(),
    ops_numpy.Stack: StackRule(),
    ops_numpy.Split: SplitRule(),
    ops_numpy.ArraySplit: SplitRule(),
    ops_numpy.Matmul: MatmulRule(),
    ops_numpy.Einsum: EinsumRule(),
    keras.layers.Dot: DotRule(),
}
