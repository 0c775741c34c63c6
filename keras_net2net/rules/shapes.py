"""Layers that move the channel axis around: Flatten, Reshape, Permute,
RepeatVector. Flatten is where peers go wrong: in channels_last each spatial
position repeats the whole channel layout, interleaved, not in blocks."""

import math

from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.rules.base import OUT
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


class FlattenRule(Rule):
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


class ReshapeRule(Rule):
    """Reshapes that keep each channel's values together: same trailing channel
    axis, same leading dims up to a channels_first axis, or a full flatten."""

    def propagate(self, ctx, call):
        shape, out_shape = ctx.shape(call.inputs[0]), ctx.shape(call.outputs[0])
        layout = input_layout(ctx, call)
        out, mode = None, None
        if layout is not None:
            a = layout.axis
            if a == len(shape) - 1 and len(out_shape) >= 2 and out_shape[-1] == shape[a]:
                out, mode = layout.moved(len(out_shape) - 1), -1
            elif len(out_shape) > a and tuple(out_shape[1:a + 1]) == tuple(shape[1:a + 1]):
                out, mode = layout, a - 1
            elif len(out_shape) == 2:
                out, mode = flatten_layout(layout, shape, list(range(len(shape)))), "flat"
        if out is None:
            ctx.barrier(call, "this reshape mixes the channel axis with others")
            return
        ctx.layouts[call.outputs[0]] = out
        ctx.record_io(call, **{OUT: out})
        ctx.io[id(call.op)].extra["mode"] = mode

    def edit_config(self, config, io, plan):
        target = list(config["target_shape"])
        mode = io.extra["mode"]
        width = plan.width(io.layouts[OUT])
        if mode == "flat":
            target = [-1] if target == [-1] else [width]
        elif target[mode] != -1:
            target[mode] = width
        config["target_shape"] = tuple(target)
        return config


class PermuteRule(Rule):
    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        dims = list(call.op.dims)
        if layout is None:
            ctx.barrier(call, "no channel axis to follow")
            return
        ctx.layouts[call.outputs[0]] = layout.moved(dims.index(layout.axis) + 1)


class RepeatVectorRule(Rule):
    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        ctx.layouts[call.outputs[0]] = layout.moved(2) if layout is not None else None
