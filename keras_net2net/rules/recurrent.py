"""Recurrent layers (LSTM, GRU, SimpleRNN, RNN of their cells) and their
wrappers (Bidirectional, TimeDistributed). See TABLE.

A recurrent layer of `units` produces one channel group, its units, and
consumes two: its input (rows of `kernel`) and its own units (rows of
`recurrent_kernel`, fed back at every step). Its weights lay G gate blocks of
`units` columns side by side (LSTM i, f, c, o; GRU z, r, h; SimpleRNN one), and
the GRU with `reset_after` stacks an input and a recurrent bias: `(2, 3 units)`.
So the gate axis is the units layout tiled G times (as Flatten tiles channels),
and the generic rewrite copies unit j inside every block:

    kernel[:, b U' + j]            = kernel[:, b U + g(j)]
    recurrent_kernel[k, b U' + j]  = recurrent_kernel[g(k), b U + g(j)] / c[g(k)]
    bias[..., b U' + j]            = bias[..., b U + g(j)]

Copies of a unit then get identical pre-activations at every step, hence
identical state (h, and LSTM's c) from the zero initial state, and the divided
recurrent rows give every unit the teacher's sum at the next step. The gates
act per unit (GRU's reset gate too, before or after the recurrent product), so
masks, `go_backwards`, `return_sequences` and `return_state` keep working.
"""

import keras

from keras_net2net.channels import Layout
from keras_net2net.channels import Segment
from keras_net2net.graph import Call
from keras_net2net.graph import TensorKey
from keras_net2net.rules import registry
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import require_axis

L = keras.layers

# The role of the gate axis: the units layout once per gate block.
GATES = "gates"
# Gate blocks per cell class (exact classes: a subclass may change `call`).
_GATES = {L.LSTMCell: 4, L.GRUCell: 3, L.SimpleRNNCell: 1}


def _directions(layer):
    """The RNN layers a call runs: [layer], or [forward, backward]."""
    if isinstance(layer, L.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _not_exact(layer, directions):
    """Why copying units would not reproduce `layer`, or None."""
    for rnn in directions:
        if type(rnn.cell) not in _GATES:
            return (f"its cell {type(rnn.cell).__name__} is not an LSTMCell, GRUCell or "
                    f"SimpleRNNCell, so its gate layout is unknown")
        if rnn.stateful:
            return ("stateful RNNs carry their state between calls in variables that are "
                    "not weights; its units keep their width so the state carries over")
    forward, backward = directions[0], directions[-1]
    if type(forward.cell) is not type(backward.cell) or forward.cell.units != backward.cell.units:
        return (f"its forward and backward layers differ ({type(forward.cell).__name__}"
                f"({forward.cell.units}) vs {type(backward.cell).__name__}"
                f"({backward.cell.units})), so they cannot share one units mapping")
    return None


def _call_tensors(call):
    """(sequences, [initial state keys], mask key) of an RNN call."""
    args, kwargs = call.args, call.kwargs
    state = kwargs.get("initial_state", args[1] if len(args) > 1 else None)
    mask = kwargs.get("mask", args[2] if len(args) > 2 else None)
    states = keras.tree.flatten(state) if state is not None else []
    return args[0] if args else kwargs.get("sequences"), \
        [s for s in states if isinstance(s, TensorKey)], \
        mask if isinstance(mask, TensorKey) else None


def _units_segment(ctx, call, units):
    """The units atom: one per layer over all its calls (shared layers)."""
    atom = ctx.producer_atoms.get(id(call.op))
    if atom is None:
        atom = ctx.groups.new_atom(units, producer=call.path)
        ctx.producer_atoms[id(call.op)] = atom
    return Segment(atom, units)


class RecurrentRule(Rule):
    """LSTM, GRU, SimpleRNN, RNN(cell) and Bidirectional of those: a producer of
    its units, a mixing consumer of its input and of its own units."""

    weights = {
        "kernel": [(0, IN, DIVIDE), (1, GATES, COPY)],
        "recurrent_kernel": [(0, OUT, DIVIDE), (1, GATES, COPY)],
        "bias": [(-1, GATES, COPY)],
    }

    def __init__(self, deepenable=True):
        # Recurrent anchors take zero-initialised residual blocks
        # (keras_net2net.deepen); RNN(cell) of any cell does not.
        self.deepenable = deepenable

    def propagate(self, ctx, call):
        directions = _directions(call.op)
        reason = _not_exact(call.op, directions)
        if reason is not None:
            ctx.barrier(call, reason)
            return
        name = f"{type(call.op).__name__} {call.path!r}"
        sequences, states, mask = _call_tensors(call)
        inp = ctx.layout(sequences)
        if not require_axis(ctx, call, inp, 2):
            inp = None
        # The mask's axis is time, never channels.
        ctx.groups.freeze_layout(ctx.layout(mask) if mask else None,
                                 f"{name} reads it as a time-step mask")
        cell = directions[0].cell
        seg = _units_segment(ctx, call, cell.units)
        units = Layout(1, (seg,))
        for key in states:
            if not ctx.unify(ctx.layout(key), units, call.path):
                ctx.groups.freeze_layout(
                    units, f"{name} starts from an initial state whose channels it cannot follow")
        merge = getattr(call.op, "merge_mode", None)
        main = ((seg, seg) if merge == "concat" else (seg,))
        n_main = 2 if isinstance(call.op, L.Bidirectional) and merge is None else 1
        for i, key in enumerate(call.outputs):
            layout = Layout(ctx.rank(key) - 1, main if i < n_main else (seg,))
            if ctx.shape(key)[-1] != layout.size:  # pragma: no cover - defensive
                raise ValueError(f"output {i} has width {ctx.shape(key)[-1]}, "
                                 f"expected {layout.size}")
            ctx.layouts[key] = layout
        gates = Layout(1, (seg,) * _GATES[type(cell)])
        ctx.record_io(call, **{IN: inp, OUT: units, GATES: gates})

    def edit_config(self, config, io, plan):
        units = plan.width(io.layouts[OUT])
        for key in ("layer", "backward_layer"):  # Bidirectional
            if isinstance(config.get(key), dict):
                _set_units(_unbuilt(config[key])["config"], units)
        if "layer" not in config:
            _set_units(config, units)
        return config


def _unbuilt(layer_config):
    """A wrapped layer's config without its build shapes, which are the
    teacher's: the wrapper builds it at the student's shapes."""
    layer_config.pop("build_config", None)
    return layer_config


def _set_units(config, units):
    if "units" in config:
        config["units"] = units
    else:  # keras.layers.RNN(cell)
        _unbuilt(config["cell"])["config"]["units"] = units


class TimeDistributedRule(Rule):
    """TimeDistributed(layer): the wrapped layer's own rule, run on the shapes
    of one time step. Axis a >= 2 of the wrapper is axis a - 1 of the layer."""

    def propagate(self, ctx, call):
        wrapper, inner = call.op, call.op.layer
        rule = registry.rule_for(inner)
        name = f"TimeDistributed {call.path!r}"
        if rule is None:
            ctx.barrier(call, f"it wraps {registry.unknown_reason(inner)}")
            return
        # The student rebuilds each wrapper's layer from its config: a layer
        # shared with another call would come out untied.
        owner = ctx.__dict__.setdefault("wrapped_by", {}).setdefault(id(inner), id(wrapper))
        if id(inner) in ctx.graph.layers or owner != id(wrapper):
            ctx.barrier(call, f"its layer {inner.name!r} is also called outside it")
            return
        if len(call.inputs) > 1:  # an explicit mask: time steps, not channels
            for key in call.inputs[1:]:
                ctx.groups.freeze_layout(ctx.layout(key), f"{name} reads it as a time-step mask")
        outer_in, outer_out = call.inputs[0], call.outputs[0]
        inner_in, inner_out = (self._step_key(ctx, k) for k in (outer_in, outer_out))
        layout = ctx.layout(outer_in)
        if layout is not None and layout.axis == 1:
            ctx.groups.freeze_layout(layout, f"{name} reads axis 1 as time, not as channels")
            layout = None
        ctx.layouts[inner_in] = layout.moved(layout.axis - 1) if layout is not None else None
        # The inner rule keys its state by id(inner): lend it the wrapper's
        # (earlier calls of a shared wrapper), take it back after.
        for table in (ctx.producer_atoms, ctx.io):
            if id(wrapper) in table:
                table[id(inner)] = table[id(wrapper)]
        rule.propagate(ctx, Call(inner, call.path, (inner_in,), {}, [inner_in], [inner_out],
                                 call.owner))
        for table in (ctx.producer_atoms, ctx.io):
            if id(inner) in table:
                table[id(wrapper)] = table.pop(id(inner))
        if id(wrapper) in ctx.io:
            ctx.io[id(wrapper)].extra["wrapped_rule"] = rule
        out = ctx.layouts.get(inner_out)
        ctx.layouts[outer_out] = out.moved(out.axis + 1) if out is not None else None

    @staticmethod
    def _step_key(ctx, key):
        """A tensor key for one time step of `key`: the time axis dropped."""
        step = TensorKey(key.context + ("time_step",), key.tensor_id)
        shape = ctx.graph.shapes[key]
        ctx.graph.shapes[step] = shape[:1] + shape[2:]
        ctx.graph.dtypes[step] = ctx.graph.dtypes[key]
        return step

    def edit_config(self, config, io, plan):
        inner = _unbuilt(config["layer"])
        inner["config"] = io.extra["wrapped_rule"].edit_config(inner["config"], io, plan)
        return config

    def weight_axes(self, layer, io):
        return io.extra["wrapped_rule"].weight_axes(layer.layer, io)


class ConvLSTMRule(Rule):
    """ConvLSTM1D/2D/3D (channels_last): an LSTM whose products are
    convolutions. Its filters are its units, on the last axis of its input,
    outputs and states; kernels `(*k, in, 4 filters)` and `(*k, filters, 4
    filters)` lay the four gate blocks on their last axis, as LSTM's do, and
    the recurrent convolution reads the units on its input axis (-2): copied
    inside every gate block, divided on the recurrent rows, exact as LSTM."""

    weights = {
        "kernel": [(-2, IN, DIVIDE), (-1, GATES, COPY)],
        "recurrent_kernel": [(-2, OUT, DIVIDE), (-1, GATES, COPY)],
        "bias": [(-1, GATES, COPY)],
    }
    width_key = "filters"

    def propagate(self, ctx, call):
        layer, name = call.op, f"{type(call.op).__name__} {call.path!r}"
        if layer.stateful:
            ctx.barrier(call, "stateful RNNs carry their state between calls in variables "
                        "that are not weights; its filters keep their width")
            return
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            ctx.barrier(call, "its channels are not on the last axis (channels_first)")
            return
        sequences, states, mask = _call_tensors(call)
        inp = ctx.layout(sequences)
        if not require_axis(ctx, call, inp, ctx.rank(sequences) - 1):
            inp = None
        ctx.groups.freeze_layout(ctx.layout(mask) if mask else None,
                                 f"{name} reads it as a time-step mask")
        seg = _units_segment(ctx, call, layer.filters)
        for key in states:
            if not ctx.unify(ctx.layout(key), Layout(ctx.rank(key) - 1, (seg,)), call.path):
                ctx.groups.freeze_layout(
                    ctx.layout(key), f"{name} starts from an initial state whose channels "
                    "it cannot follow")
        for key in call.outputs:
            ctx.layouts[key] = Layout(ctx.rank(key) - 1, (seg,))
        units = Layout(ctx.rank(call.outputs[0]) - 1, (seg,))
        ctx.record_io(call, **{IN: inp, OUT: units, GATES: Layout(1, (seg,) * 4)})


_RECURRENT = RecurrentRule()

# {layer class: rule instance}; merged into the registry by rules/__init__.py.
TABLE = {
    L.LSTM: _RECURRENT,
    L.GRU: _RECURRENT,
    L.SimpleRNN: _RECURRENT,
    L.RNN: RecurrentRule(deepenable=False),
    L.Bidirectional: _RECURRENT,
    L.TimeDistributed: TimeDistributedRule(),
}
for _cls in (getattr(L, n, None) for n in ("ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")):
    if _cls is not None:
        TABLE[_cls] = ConvLSTMRule()
