"""What the keras_hub encoder-decoder families (BART, T5, Whisper) share:
cross attention, and two stacks of blocks under one `num_layers`.

Cross attention: a decoder block's cross-attention keys and values read the
encoder's stream (the `MEMORY` role), a reader like any other: the rows of
their kernels follow the encoder stream's mapping and are divided by its
copy counts; its queries read the decoder stream and its heads grow with the
block's heads (one mapping per block, so a copied head copies its query,
key and value slices and its output rows are divided). Where the two streams
are one group (BART and T5 share the token embedding), the mappings are the
same one; where they are two (Whisper), each has its own.

Two stacks: the config's `num_layers` counts the encoder blocks and the
decoder blocks alike, so a deeper model has one more block in each:
`deepen` names one encoder block and one decoder block (as many of each).
The widened student is rebuilt with more layers (`append_blocks`), each
inserted block a copy of its anchor whose writers are zero (pre-norm blocks:
x + 0 = x).
"""

import re

import numpy as np

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.graph import TensorKey
from keras_net2net.hub import layers as hub_layers
from keras_net2net.rules import composite
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import require_axis

MEMORY = "memory"  # the encoder stream a cross attention reads
ENCODER, DECODER = "transformer_encoder_layer_{}", "transformer_decoder_layer_{}"


def memory_of(call, name):
    """The tensor a block call passes as keyword `name` (the encoder
    sequence), or None."""
    value = call.kwargs.get(name)
    return value if isinstance(value, TensorKey) else None


def propagate_with_memory(rule, ctx, call, memory, stream=None):
    """`CompositeRule.propagate` for a block that also reads a second stream
    `memory` (a TensorKey or None): that stream is not frozen as a mask is,
    its layout is recorded as the `MEMORY` role (the rows its readers divide).
    `stream`: the tensor of the block's own stream (default: its first
    tensor argument).
    """
    reason = rule.refuse(call.op)
    if reason:
        ctx.barrier(call, reason)
        return
    stream = stream if stream is not None else composite.first_tensor(call)
    for key in call.inputs:
        if key not in (stream, memory):
            ctx.groups.freeze_layout(ctx.layout(key), (
                f"{type(call.op).__name__} {call.path!r} reads it as a mask or position "
                "input (its axes are positions, not channels)"))
    layout = ctx.layout(stream)
    if not require_axis(ctx, call, layout, ctx.rank(stream) - 1, role="model-width"):
        layout = None
    mem = ctx.layout(memory) if memory is not None else None
    if memory is not None and not require_axis(ctx, call, mem, ctx.rank(memory) - 1,
                                               role="encoder-width"):
        mem = None
    out_key = call.outputs[0]
    ctx.layouts[out_key] = layout
    if layout is None:
        ctx.fresh(out_key, ctx.rank(out_key) - 1, call.path, frozen=(
            f"{type(call.op).__name__} {call.path!r} writes the width it reads, which is kept"))
    for key in call.outputs[1:]:
        ctx.fresh(key, ctx.rank(key) - 1, call.path, frozen=(
            f"{type(call.op).__name__} {call.path!r}: an extra output (cache, scores)"))
    inner = composite.inner_roles(rule, ctx, call, layout)
    roles = {IN: layout, OUT: layout, **inner}
    if memory is not None:
        roles[MEMORY] = mem
    ctx.record_io(call, **roles)
    io = ctx.io[id(call.op)]
    ctx.width_checks[id(call.op)] = lambda view: rule.check_widths(call.op, io, view)


def stream_pad_constraints(rule, solver, call, ins, outs, where, memory):
    """Pad kinds of a block with cross attention: the stream it reads and
    writes takes the block's kind; the encoder stream is only read through
    kernel rows (zero for its pads), so any kind of it is exact."""
    composite.CompositeRule.pad_constraints(
        rule, solver, call, [k for k in ins if k != memory], outs, where)


def cross_attention_specs(prefix):
    """Weight specs of a keras_hub MultiHeadAttention cross attention at
    `prefix`: queries read the stream, keys and values the encoder's."""
    specs = hub_layers.attention_specs(prefix)
    for name in ("key", "value"):
        specs[f"{prefix}/{name}/kernel"] = [(0, MEMORY, DIVIDE)] + specs[
            f"{prefix}/{name}/kernel"][1:]
    return specs


class CrossAttentionDecoderRule(hub_layers.TransformerBlockRule):
    """keras_hub TransformerDecoder (and Whisper's): self attention, cross
    attention over `encoder_sequence` when it has one, a feed-forward; pre-
    or post-LN. Without cross attention it is the layers.py rule."""

    def __init__(self, attention_name="self_attention"):
        super().__init__(attention_name)
        self.specs.update(cross_attention_specs("cross_attention"))
        self.specs.update(hub_layers.norm_specs("cross_attention_layer_norm"))

    def refuse(self, layer):
        return None

    def propagate(self, ctx, call):
        propagate_with_memory(self, ctx, call, memory_of(call, "encoder_sequence"))

    def pad_constraints(self, solver, call, ins, outs, where):
        stream_pad_constraints(self, solver, call, ins, outs, where,
                               memory_of(call, "encoder_sequence"))

    def edit_config(self, config, io, plan):
        """Also the build shapes its config holds (keras_hub builds the
        layer from them in `from_config`): the decoder stream's width and
        the encoder stream's."""
        config = super().edit_config(config, io, plan)
        for key, role in (("decoder_sequence_shape", IN), ("encoder_sequence_shape", MEMORY)):
            shape, layout = config.get(key), io.layouts.get(role)
            if shape and layout is not None:
                config[key] = [*shape[:-1], plan.width(layout)]
        return config


def two_stacks(config):
    """Block names of an encoder-decoder backbone: the encoder's, then the
    decoder's."""
    n = config["num_layers"]
    return [ENCODER.format(i) for i in range(n)] + [DECODER.format(i) for i in range(n)]


def _stack_inserts(backbone_name, n, inserts):
    """{encoder anchor: count}, {decoder anchor: count} from the driver's
    {index in two_stacks: count}; their totals must agree."""
    enc = {i: c for i, c in inserts.items() if i < n}
    dec = {i - n: c for i, c in inserts.items() if i >= n}
    if sum(enc.values()) != sum(dec.values()):
        first, last = ENCODER.format(n - 1), DECODER.format(n - 1)
        raise errors.PlanError(
            f"Expected as many new encoder blocks as decoder blocks: {backbone_name}'s "
            f"num_layers counts both stacks. Received: deepen adds {sum(enc.values())} after "
            f"encoder blocks and {sum(dec.values())} after decoder blocks. Fix: name one of "
            f"each, e.g. deepen=[{first!r}, {last!r}].")
    return enc, dec


def _new_index(i, stack_inserts):
    return i + sum(c for a, c in stack_inserts.items() if a < i)


def make_append_blocks(zero, own_weights=None, stacks=(ENCODER, DECODER), layers=None):
    """An `append_blocks` function for a two-stack backbone with pre-norm
    blocks: the widened student rebuilt with as many more layers as each
    stack gains, every old block's weights at its new index, each inserted
    block a copy of its anchor with the weights matching `zero` (its writers)
    zero.

    Args:
        zero: regexes over a weight's path below its block.
        own_weights: function(block) -> [(key, variable)]: the block's
            weights keyed so an anchor's and a new block's keys line up
            (default: by path below the block). T5 names its norms by a
            global counter, and only block 0 holds the position bias.
        stacks: the two stacks' block names, "{}" for the index.
        layers: None (one `num_layers` counts both stacks, which must gain
            as many blocks each), or the two config keys counting each
            stack's blocks (Moonshine's), which grow independently.
    """
    own_weights = own_weights or _by_path

    def append_blocks(task, student, inserts):
        from keras_net2net.hub import backbone as hub_backbone

        backbone = student.backbone if task is not None else student
        config = backbone.get_config()
        if layers is None:
            n = config["num_layers"]
            enc, dec = _stack_inserts(type(backbone).__name__, n, inserts)
            config["num_layers"] = n + sum(enc.values())
            counts = (n, n)
        else:
            counts = tuple(config[key] for key in layers)
            enc = {i: c for i, c in inserts.items() if i < counts[0]}
            dec = {i - counts[0]: c for i, c in inserts.items() if i >= counts[0]}
            for key, stack_inserts in zip(layers, (enc, dec)):
                config[key] += sum(stack_inserts.values())
        deeper, made = hub_backbone.build_student(task, backbone, config)
        new_backbone = deeper.backbone if task is not None else deeper
        plan = [(name, count, stack_inserts)
                for name, count, stack_inserts in zip(stacks, counts, (enc, dec))]
        rest = [(backbone.get_layer(layer.name), layer) for layer in new_backbone.layers
                if not _is_block(layer, plan) and layer.weights]
        write_deeper(backbone, new_backbone, plan, rest, zero, own_weights)
        lazy.initialize_rest(deeper.variables + made)
        return deeper

    return append_blocks


def _is_block(layer, stacks):
    return any(re.fullmatch(stack.replace("{}", r"\d+"), layer.name) for stack, _, _ in stacks)


def write_deeper(backbone, new_backbone, stacks, rest, zero, own_weights=None):
    """Writes a widened backbone's weights into a rebuilt deeper one: every
    old block at its new index, each inserted block a copy of its anchor with
    the weights matching `zero` (its writers) zero, and every other layer
    from its pair in `rest`.

    Args:
        backbone: the widened backbone (its old depth).
        new_backbone: the rebuilt deeper backbone.
        stacks: [(block name with "{}", old block count, {anchor: count})].
        rest: [(old layer, new layer)] of the layers outside the blocks.
        zero: regexes over a weight's path below its block.
        own_weights: function(block) -> [(key, variable)] (default: by
            path below the block).

    Raises:
        UnsupportedModelError: a weight of the deeper model that nothing
            wrote (a bug).
    """
    own_weights = own_weights or _by_path
    written = set()
    for stack, n, stack_inserts in stacks:
        for i in range(n):
            source = dict(own_weights(backbone.get_layer(stack.format(i))))
            j = _new_index(i, stack_inserts)
            targets = [(j, False)] + [(j + t, True)
                                      for t in range(1, stack_inserts.get(i, 0) + 1)]
            for index, inserted in targets:
                block = new_backbone.get_layer(stack.format(index))
                for key, variable in own_weights(block):
                    if key not in source:
                        raise _bug(new_backbone, variable)
                    value = source[key].numpy()
                    if inserted and any(re.fullmatch(z, key) for z in zero):
                        value = np.zeros_like(value)
                    lazy.set_value(variable, value)
                    written.add(id(variable))
    for old, layer in rest:
        if len(old.weights) != len(layer.weights):
            raise _bug(new_backbone, layer.weights[0])
        for a, b in zip(old.weights, layer.weights):
            lazy.set_value(b, a.numpy())
            written.add(id(b))
    missed = [v for v in new_backbone.weights if id(v) not in written]
    if missed:
        raise _bug(new_backbone, missed[0])


def _by_path(block):
    prefix = block.name + "/"
    return [(v.path.split(prefix, 1)[1] if prefix in v.path else v.name, v)
            for v in block.weights]


def _bug(model, variable):
    return errors.UnsupportedModelError(
        f"Expected the deeper {type(model).__name__} to hold the grown model's weights and "
        f"new blocks only. Received: a weight {variable.path!r} of neither. This is a bug in "
        f"keras-net2net's keras_hub support: please report it.")
