"""Layers that move the channel axis around: Flatten, Reshape, Permute,
RepeatVector. Flatten is where peers go wrong: in channels_last each spatial
position repeats the whole channel layout, interleaved, not in blocks."""

import math

from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.rules import sides
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import SAME_PADS
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout


def flatten_layout(layout, shape, perm):
    """Layout of `shape` flattened after transposing by `perm` (None if unknown)."""
    pos = perm.index(layout.axis)
    dims = [shape[p] for p in perm]
    before, after = dims[1:pos], dims[pos + 1:]
    if None in before or None in after:
        return None
    tiled = tuple(Segment(s.atom, s.width, s.inner * math.prod(after))
                  for s in layout.segments)
    return Layout(1, tiled * math.prod(before))


class _Moves(Rule):
    """Moves values around without changing any: pads pass as they are, and
    zeros stay zeros."""

    pads = SAME_PADS

    def value_at_zero(self, op):
        return 0.0


class FlattenRule(Rule):
    pads = None  # pads would be tiled with the spatial positions (keras_net2net.padding)

    def value_at_zero(self, op):
        return 0.0

    def propagate(self, ctx, call):
        shape = ctx.shape(call.inputs[0])
        rank = len(shape)
        layout = input_layout(ctx, call)
        perm = list(range(rank))
        if getattr(call.op, "data_format", None) == "channels_first" and rank > 2:
            perm = [0, *range(2, rank), 1]  # Keras moves channels last first.
        out = flatten_layout(layout, shape, perm) if layout is not None else None
        if out is None:
            ctx.groups.freeze_layout(layout, f"Flatten {call.path!r} has unknown spatial size")
            ctx.fresh(call.outputs[0], 1, call.path, frozen=f"output of Flatten {call.path!r}")
            return
        ctx.layouts[call.outputs[0]] = out


class ReshapeRule(_Moves):
    """Reshapes that keep each channel's values together, as the layer
    (`target_shape`, batch excluded) or as `keras.ops.reshape` (`newshape`):

    - the channel axis stays last, or leading dims are kept up to a
      channels_first axis: the layout moves as it is;
    - trailing dims are folded into the channel axis, `(T, F, C) -> (T, F*C)`
      or a full flatten: each folded position repeats the channel layout,
      interleaved, as Flatten does;
    - a channel axis is unfolded, `Dense(h*w*C) -> (h, w, C)`: the reverse. The
      flat group is cut into h*w runs of C that share one mapping, so the
      writer grows in the interleaved order the new channel axis needs.

    Anything else mixes channels with other axes and keeps its width."""

    def propagate(self, ctx, call):
        shape, out_shape = ctx.shape(call.inputs[0]), ctx.shape(call.outputs[0])
        layout = input_layout(ctx, call)
        out = self._fold(ctx, call, layout, shape, out_shape) if layout is not None else None
        if out is None:
            ctx.barrier(call, "this reshape mixes the channel axis with others")
            return
        ctx.layouts[call.outputs[0]] = out
        ctx.record_io(call, **{OUT: out})

    def _fold(self, ctx, call, layout, shape, out_shape):
        a, last = layout.axis, len(shape) - 1
        if a == last and len(out_shape) >= 2 and out_shape[-1] == shape[a]:
            return layout.moved(len(out_shape) - 1)
        if len(out_shape) > a and tuple(out_shape[1:a + 1]) == tuple(shape[1:a + 1]):
            # Dims up to the channels kept: what follows them is reshaped
            # (channels_first), or unit dims are added ((C,) -> (C, 1, 1)).
            return layout
        if len(out_shape) == 2:
            return flatten_layout(layout, shape, list(range(len(shape))))
        if a != last or None in shape[1:] or None in out_shape[1:]:
            return None
        keep = min(_common_prefix(shape[1:], out_shape[1:]), a - 1)  # dims before channels
        folded, unfolded = shape[1 + keep:], out_shape[1 + keep:]
        if len(unfolded) == 1:  # (..., F, C) -> (..., F*C): C interleaved F times
            return Layout(len(out_shape) - 1, layout.segments * math.prod(folded[:-1]))
        if len(folded) == 1:  # (..., N) -> (..., h, w, C)
            width, tiles = unfolded[-1], math.prod(unfolded[:-1])
            atom = ctx.groups.new_atom(width)
            if len(layout.segments) == 1 and layout.segments[0].atom not in ctx.groups.parts:
                # Cut in one go: cut run by run, the split chain would be `tiles` deep.
                ctx.groups.split(layout.segments[0].atom, [width] * tiles, call.path)
            if not ctx.unify(layout, Layout(a, (Segment(atom, width),) * tiles), call.path):
                return None
            return Layout(len(out_shape) - 1, (Segment(atom, width),))
        return None

    def edit_config(self, config, io, plan):
        key = "target_shape" if "target_shape" in config else "newshape"
        target = list(config[key])
        out = io.layouts[OUT]
        # The layer's target_shape leaves out the batch axis; the op's does not.
        index = out.axis - 1 if key == "target_shape" else out.axis
        if -1 in target and len(target) == 1:
            return config  # a full flatten infers its width
        if target[index] != -1:
            target[index] = plan.width(out)
        config[key] = tuple(target)
        return config


def _common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class PermuteRule(_Moves):
    handles_sides = True  # every layout of the tensor moves alike (rules.sides)

    def propagate(self, ctx, call):
        if not sides.layouts(ctx, call.inputs[0]):
            ctx.barrier(call, "no channel axis to follow")
            return
        dims = [0] + list(call.op.dims)
        sides.moved(ctx, call, dims.index)


class RepeatVectorRule(_Moves):
    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        ctx.layouts[call.outputs[0]] = layout.moved(2) if layout is not None else None


class ExtractPatchesRule(Rule):
    """`keras.ops.image.extract_patches` (channels_last): each output position
    holds a patch, its channels tiled once per pixel of the patch. Only an input
    that keeps its width (a model input, most often) passes: it stays the same
    kept group, rather than a new group that could never grow. Growing through
    it would depend on the order each backend lays a patch out in."""

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        size = call.op.size
        pixels = math.prod(size) if isinstance(size, (list, tuple)) else size * size
        if layout is None or layout.axis != rank - 1 or \
                getattr(call.op, "data_format", None) == "channels_first" or \
                not all(ctx.groups.is_frozen(s.atom) for s in layout.segments) or \
                ctx.shape(call.outputs[0])[-1] != pixels * layout.size:
            ctx.barrier(call, "it mixes pixels of a patch into the channel axis")
            return
        ctx.layouts[call.outputs[0]] = Layout(rank - 1, layout.segments * pixels)
