"""Layers that mix channels: they consume their input's groups (copy rows,
divide by copy counts) and produce a group of their own (copy columns)."""

from keras_net2net import graph
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MID
from keras_net2net.rules.base import NOT_ELEMENTWISE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import activation_name
from keras_net2net.rules.base import input_layout
from keras_net2net.rules.base import require_axis


def freeze_non_elementwise_activation(ctx, call, out):
    name = activation_name(getattr(call.op, "activation", None))
    if name in NOT_ELEMENTWISE:
        ctx.groups.freeze_layout(
            out, f"{type(call.op).__name__} {call.path!r} applies {name} across its channels")


def refuse_special_kernels(ctx, call):
    """LoRA and quantized kernels have extra weights that we do not rewrite."""
    layer = call.op
    if getattr(layer, "lora_enabled", False):
        ctx.barrier(call, "LoRA-enabled layers are kept at their width")
        return True
    if getattr(layer, "quantization_mode", None):
        ctx.barrier(call, "quantized layers are kept at their width")
        return True
    return False


class DenseRule(Rule):
    width_key = "units"
    deepenable = True
    zeroable = True
    weights = {"kernel": [(0, IN, DIVIDE), (1, OUT, COPY)], "bias": [(0, OUT, COPY)]}

    def propagate(self, ctx, call):
        if refuse_special_kernels(ctx, call):
            return
        rank = ctx.rank(call.inputs[0])
        inp = input_layout(ctx, call)
        if not require_axis(ctx, call, inp, rank - 1):
            inp = None
        out = ctx.produce(call, call.outputs[0], rank - 1)
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, OUT: out})


class ConvRule(Rule):
    """Conv1D/2D/3D: kernel (*window, in / groups, out)."""

    width_key = "filters"
    weights = {"kernel": [(-2, IN, DIVIDE), (-1, OUT, COPY)], "bias": [(0, OUT, COPY)]}
    deepenable = True
    zeroable = True

    def propagate(self, ctx, call):
        if refuse_special_kernels(ctx, call):
            return
        rank = ctx.rank(call.inputs[0])
        axis = graph.channels_axis(call.op, rank)
        inp = input_layout(ctx, call)
        if not require_axis(ctx, call, inp, axis):
            inp = None
        groups = getattr(call.op, "groups", 1)
        if groups != 1 and inp is not None and groups == inp.size:
            return self._depthwise(ctx, call, inp)
        out = ctx.produce(call, call.outputs[0], axis)
        if groups != 1:
            reason = (f"{type(call.op).__name__} {call.path!r} is a grouped convolution "
                      f"(groups={call.op.groups}); its groups are kept as they are")
            ctx.groups.freeze_layout(inp, reason)
            ctx.groups.freeze_layout(out, reason)
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, OUT: out})

    def _depthwise(self, ctx, call, inp):
        """groups == input channels (ConvNeXt's depthwise conv): channel c*m+k
        reads input c alone, so it follows the input's layout like a depthwise."""
        out = inp.with_inner(call.op.filters // call.op.groups)
        ctx.layouts[call.outputs[0]] = out
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, OUT: out})
        ctx.io[id(call.op)].extra["depthwise"] = True

    def edit_config(self, config, io, plan):
        if io.extra.get("depthwise"):
            config["groups"] = plan.width(io.layouts[IN])
        return super().edit_config(config, io, plan)

    def weight_axes(self, layer, io):
        if io.extra.get("depthwise"):
            return {"kernel": [(-1, OUT, COPY)], "bias": [(0, OUT, COPY)]}
        return self.weights


class ConvTransposeRule(ConvRule):
    """Conv*DTranspose: kernel (*window, out, in)."""

    weights = {"kernel": [(-2, OUT, COPY), (-1, IN, DIVIDE)], "bias": [(0, OUT, COPY)]}
    deepenable = False  # no identity transposed conv is inserted (keras_net2net.deepen)


class DepthwiseRule(Rule):
    """DepthwiseConv1D/2D: per-channel; output channel c*m+k comes from input c."""

    weights = {"kernel": [(-2, IN, COPY)], "bias": [(0, OUT, COPY)]}
    deepenable = True
    zeroable = True

    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        axis = graph.channels_axis(call.op, rank)
        inp = input_layout(ctx, call)
        if not require_axis(ctx, call, inp, axis):
            ctx.fresh(call.outputs[0], axis, call.path,
                      frozen=f"{call.path!r} reads channels it cannot follow")
            ctx.record_io(call, **{IN: None, OUT: None})
            return
        out = inp.with_inner(call.op.depth_multiplier)
        ctx.layouts[call.outputs[0]] = out
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, OUT: out})


class SeparableRule(Rule):
    """SeparableConv1D/2D: depthwise (per channel) then pointwise (mixing)."""

    width_key = "filters"
    weights = {
        "depthwise_kernel": [(-2, IN, COPY)],
        "pointwise_kernel": [(-2, MID, DIVIDE), (-1, OUT, COPY)],
        "bias": [(0, OUT, COPY)],
    }
    deepenable = True
    zeroable = True

    def zeroed_weights(self, layer):
        return layer, ("pointwise_kernel", "bias")  # the depthwise part stays as it is

    def propagate(self, ctx, call):
        rank = ctx.rank(call.inputs[0])
        axis = graph.channels_axis(call.op, rank)
        inp = input_layout(ctx, call)
        if not require_axis(ctx, call, inp, axis):
            inp = None
        mid = inp.with_inner(call.op.depth_multiplier) if inp is not None else None
        out = ctx.produce(call, call.outputs[0], axis)
        freeze_non_elementwise_activation(ctx, call, out)
        ctx.record_io(call, **{IN: inp, MID: mid, OUT: out})


class EmbeddingRule(Rule):
    """Embedding: a producer; its integer input carries no channels."""

    width_key = "output_dim"
    weights = {"embeddings": [(1, OUT, COPY)]}

    def propagate(self, ctx, call):
        if refuse_special_kernels(ctx, call):
            return
        out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
        ctx.record_io(call, **{OUT: out})
