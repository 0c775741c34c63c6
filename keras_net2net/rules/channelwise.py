"""Layers that treat channels one at a time: outputs keep the input layout and
any per-channel parameter is indexed with the group's mapping."""

from keras_net2net import activations
from keras_net2net import graph
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import NORM_SCALE_DIVIDED
from keras_net2net.rules.base import NORM_SHIFT_DIVIDED
from keras_net2net.rules.base import NOT_ELEMENTWISE
from keras_net2net.rules.base import SAME_PADS
from keras_net2net.rules.base import ZERO_FILL
from keras_net2net.rules.base import ZERO_PADS
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import activation_name
from keras_net2net.rules.base import input_layout
from keras_net2net.rules.base import require_axis


def normalize_axes(axis, rank):
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    return sorted(a % rank for a in axes)


class PassThroughRule(Rule):
    """Element-wise layers without per-channel parameters (activations, dropout,
    noise, identity, masking).

    Args:
        keeps_zero: the layer's output is zero wherever its input is, in
            training mode too (dropout, identity; not noise that adds).
    """

    def __init__(self, keeps_zero=False):
        self.keeps_zero = keeps_zero

    def activation(self, op):
        """The function the layer applies, or None for an inference identity."""
        fn = getattr(op, "activation", None)
        return None if activation_name(fn) in (None, "linear") else fn

    def value_at_zero(self, op):
        fn = self.activation(op)
        if fn is not None:
            return activations.value_at_zero(fn)
        return 0.0 if self.keeps_zero else None

    def pad_constraints(self, pads, call, ins, outs, where):
        fn = self.activation(call.op)
        if fn is None:
            pads.same(ins + outs, where)  # dropout, noise, identity: inference identity
            return
        if not activations.maps_zero_to_zero(fn):
            raise ValueError(f"{where} applies {activations.name(fn)!r}, which keeps no pad kind")
        for key in ins + outs:
            pads.require(key, ZERO_FILL, where)

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        name = activation_name(getattr(call.op, "activation", None))
        if name in NOT_ELEMENTWISE and layout is not None and \
                layout.axis == ctx.rank(call.inputs[0]) - 1:
            ctx.groups.freeze_layout(
                layout, f"{type(call.op).__name__} {call.path!r} applies {name} across channels")
        ctx.layouts[call.outputs[0]] = layout


class ActivationRule(PassThroughRule):
    """Activation layers: Activation, and those whose `call` is the
    activation (ReLU, LeakyReLU, ELU)."""

    activation_layer = True

    @staticmethod
    def function(op):
        """The function the layer applies (its `call` for ReLU and kin)."""
        return op.activation if hasattr(op, "activation") else op.call

    def activation(self, op):
        return super().activation(op) if hasattr(op, "activation") else op.call

    def value_at_zero(self, op):
        return activations.value_at_zero(self.function(op))


class AcrossAxisRule(Rule):
    """Layers that combine values along `op.axis` (Softmax, UnitNormalization):
    a pass-through, unless that axis holds the channels, which then keep
    their width."""

    def __init__(self, what):
        self.what = what

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if layout is not None and layout.axis in normalize_axes(
                call.op.axis, ctx.rank(call.inputs[0])):
            ctx.groups.freeze_layout(
                layout, f"{type(call.op).__name__} {call.path!r} {self.what}")
        ctx.layouts[call.outputs[0]] = layout


class FrozenPassRule(Rule):
    """Keeps the channels it sees at their width, passing the layout on."""

    def __init__(self, reason):
        self.reason = reason

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        ctx.groups.freeze_layout(layout, f"{type(call.op).__name__} {call.path!r}: {self.reason}")
        ctx.layouts[call.outputs[0]] = layout


def _scale_problem(op):
    """Why a norm's output is not zero with its weights zeroed, or None."""
    return None if getattr(op, "scale", True) else "has scale=False: no scale to zero"


class _Norm(Rule):
    """Normalization layers: zeroing their scale and shift zeroes them."""

    zeroable = True

    def zeroing_problem(self, op):
        return _scale_problem(op)

    def zeroed_weights(self, layer):
        return layer, ("gamma", "beta", "scale")


class BatchNormRule(_Norm):
    weights = {name: [(0, IN, COPY)] for name in
               ("gamma", "beta", "moving_mean", "moving_variance")}
    pads = ZERO_PADS  # pads get parameters that map 0 to 0

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        on_channels = layout is not None and layout.axis in normalize_axes(call.op.axis, rank)
        ctx.layouts[call.outputs[0]] = layout
        ctx.record_io(call, **{IN: layout if on_channels else None})


class LayerNormRule(_Norm):
    """Normalises over the channels themselves, so copies must be even: an
    integer factor, or (keras_net2net.padding) k copies of each channel plus
    pads, with gamma' = sqrt(s) * gamma and epsilon' = s * epsilon."""

    scale_name, shift_name = "gamma", "beta"
    divides_for_tied_embedding = True

    def reads_zero_pads(self, op):
        """RMS scaling keeps zero pads at zero; a mean-centred norm needs mean pads."""
        return bool(getattr(op, "rms_scaling", False))

    def pad_constraints(self, pads, call, ins, outs, where):
        for key in ins:
            pads.require(key, ZERO_FILL if self.reads_zero_pads(call.op) else MEAN_FILL, where)
        for key in outs:
            pads.require(key, ZERO_FILL, where)

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        axes = normalize_axes(call.op.axis, rank)
        ctx.layouts[call.outputs[0]] = layout
        if layout is None or layout.axis not in axes:
            ctx.record_io(call, **{IN: None})
            return
        self._constrain(ctx, call, layout)
        ctx.record_io(call, **{IN: layout})
        ctx.io[id(call.op)].extra["param_axis"] = axes.index(layout.axis)

    def _constrain(self, ctx, call, layout):
        name = type(call.op).__name__
        if len(layout.atoms()) > 1:
            ctx.groups.freeze_layout(
                layout, f"{name} {call.path!r} normalises over channels of several groups at once")
            return
        atom = layout.segments[0].atom
        ctx.groups.require_blocks(
            atom, 1, f"{name} {call.path!r} needs every channel copied equally "
            "(an integer widening factor)")
        if getattr(call.op, "scale", True) is not False:  # pads need a scale to correct
            ctx.norm_calls.append((atom, call))

    def weight_axes(self, layer, io):
        if io.layouts.get(IN) is None:
            return {}
        axis = io.extra["param_axis"]
        if io.extra.get("tied_divide"):  # read by a tied reverse embedding
            return {self.scale_name: [(axis, IN, NORM_SCALE_DIVIDED)],
                    self.shift_name: [(axis, IN, NORM_SHIFT_DIVIDED)]}
        return {self.scale_name: [(axis, IN, NORM_SCALE)], self.shift_name: [(axis, IN, COPY)]}

    def edit_config(self, config, io, plan):
        layout = io.layouts.get(IN)
        if layout is not None:
            config["epsilon"] = config["epsilon"] * plan.kept_fraction(layout)
        return config


class RMSNormRule(LayerNormRule):
    """keras.layers.RMSNormalization: x * rsqrt(mean(x^2) + epsilon) * scale."""

    scale_name = "scale"

    def reads_zero_pads(self, op):
        return True

    def zeroing_problem(self, op):
        return None  # always has a scale (its `scale` attribute is the variable)


class GroupNormRule(_Norm):
    """GroupNormalization: each group of channels is normalised alone, so
    copies must stay inside their group, equally many per channel. With one
    channel per group (`groups=-1`, instance norm) it is a per-channel layer
    and grows at any width."""

    weights = {"gamma": [(0, IN, COPY)], "beta": [(0, IN, COPY)]}

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        rank = ctx.rank(call.inputs[0])
        ctx.layouts[call.outputs[0]] = layout
        if layout is None or layout.axis != call.op.axis % rank:
            ctx.record_io(call, **{IN: None})
            return
        if call.op.groups in (-1, layout.size):
            ctx.record_io(call, **{IN: layout})
            ctx.io[id(call.op)].extra["per_channel"] = True
            return
        if len(layout.segments) != 1 or layout.segments[0].inner != 1:
            ctx.groups.freeze_layout(
                layout, f"GroupNormalization {call.path!r} reads a concatenation "
                "or a flattened tensor")
        else:
            ctx.groups.require_blocks(
                layout.segments[0].atom, call.op.groups,
                f"GroupNormalization {call.path!r} needs every channel copied "
                "equally inside each of its groups (an integer widening factor)")
        ctx.record_io(call, **{IN: layout})

    def edit_config(self, config, io, plan):
        if io.extra.get("per_channel"):
            config["groups"] = -1  # Keras reads -1 as one group per channel.
        return config


class PReLURule(Rule):
    pads = ZERO_PADS

    def value_at_zero(self, op):
        return 0.0

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        ctx.layouts[call.outputs[0]] = layout
        shared = {a % ctx.rank(call.inputs[0]) for a in (call.op.shared_axes or [])}
        on_channels = layout is not None and layout.axis not in shared
        ctx.record_io(call, **{IN: layout if on_channels else None})
        if on_channels:
            ctx.io[id(call.op)].extra["alpha_axis"] = layout.axis - 1

    def weight_axes(self, layer, io):
        if io.layouts.get(IN) is None:
            return {}
        return {"alpha": [(io.extra["alpha_axis"], IN, COPY)]}


class SpatialRule(Rule):
    """Pooling, padding, cropping, upsampling: channels stay on their axis.

    Args:
        pads: SAME_PADS, or ZERO_PADS for a max that a per-token mean does
            not pass (max pooling).
        keeps_zero: the output is zero wherever the input is (padding,
            cropping, upsampling; not augmentations that add).
    """

    def __init__(self, pads=SAME_PADS, keeps_zero=False):
        self.pads, self.keeps_zero = pads, keeps_zero

    def value_at_zero(self, op):
        return 0.0 if self.keeps_zero else None

    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        axis = graph.channels_axis(call.op, rank)
        layout = input_layout(ctx, call)
        if require_axis(ctx, call, layout, axis):
            ctx.layouts[call.outputs[0]] = layout
        else:
            ctx.fresh(call.outputs[0], axis, call.path,
                      frozen=f"{call.path!r} reads channels it cannot follow")


class GlobalPoolRule(Rule):
    """Global pooling; `pads` as for `SpatialRule`."""

    def __init__(self, pads=SAME_PADS):
        self.pads = pads

    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        axis = graph.channels_axis(call.op, rank)
        layout = input_layout(ctx, call)
        out_axis = axis if call.op.keepdims else 1
        if require_axis(ctx, call, layout, axis):
            ctx.layouts[call.outputs[0]] = layout.moved(out_axis)
        else:
            ctx.fresh(call.outputs[0], out_axis, call.path,
                      frozen=f"{call.path!r} reads channels it cannot follow")


class RescalingRule(Rule):
    def propagate(self, ctx, call):
        import numpy as np

        layout = input_layout(ctx, call)
        if np.size(call.op.scale) > 1 or np.size(call.op.offset) > 1:
            ctx.groups.freeze_layout(
                layout, f"Rescaling {call.path!r} has a per-channel scale or offset")
        ctx.layouts[call.outputs[0]] = layout


class LayerScaleRule(Rule):
    """ConvNeXt's LayerScale: x * gamma, one gamma per channel."""

    width_key = "projection_dim"
    pads = ZERO_PADS
    # Its weight is created without a name ("variable", "variable_1", ...):
    # keyed by position instead.
    weights = {0: [(0, IN, COPY)]}

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if not require_axis(ctx, call, layout, ctx.rank(call.inputs[0]) - 1):
            ctx.barrier(call, "its scale is not on the channel axis")
            return
        ctx.layouts[call.outputs[0]] = layout
        ctx.record_io(call, **{IN: layout})

    def edit_config(self, config, io, plan):
        config[self.width_key] = plan.width(io.layouts[IN])
        return config
