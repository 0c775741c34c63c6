"""Net2DeeperNet: where identity layers and zero-initialised residual blocks
go, and how they are built at the student's width (`LayerInsertion`, an
insertion of `keras_net2net.insertions`)."""

import dataclasses

import keras
import numpy as np

from keras_net2net import errors
from keras_net2net import insertions
from keras_net2net import ops
from keras_net2net import options
from keras_net2net.insertions import activation_of
from keras_net2net.insertions import assign
from keras_net2net.insertions import unique_name
from keras_net2net.activations import IDEMPOTENT
from keras_net2net.plan import resolve_layer
from keras_net2net.rules import registry

L = keras.layers
_CONVS = {L.Conv1D: 1, L.Conv2D: 2, L.Conv3D: 3}
_DEPTHWISE = {L.DepthwiseConv1D: 1, L.DepthwiseConv2D: 2}
_SEPARABLE = {L.SeparableConv1D: 1, L.SeparableConv2D: 2}
# Recurrent anchors take zero-initialised residual blocks only: no recurrent
# layer is the identity on its input.
_RECURRENT = (L.LSTM, L.GRU, L.SimpleRNN, L.Bidirectional)
_ACTIVATION_LAYERS = (L.Activation, L.ReLU, L.LeakyReLU, L.ELU)


@dataclasses.dataclass
class LayerInsertion(insertions.Insertion):
    """Identity layers ("identity") or zero-initialised residual blocks
    ("residual") after the call of `after`, the end of the anchor's
    Conv[-BN][-activation] pattern (`pattern`: the teacher layers copied)."""

    def build(self, maker):
        layout = maker.ctx.layout(self.tensor)
        width = maker.plan.new_shape(self.tensor)[layout.axis if layout else -1]
        build_layers(self, width, maker.taken)

    def apply(self, x, maker):
        for block in self.layers:
            x = apply_block(self.mode, block, x)
        return x

    def initial_weights(self, maker):
        initial_weights(self, None)

    def chain(self):
        if self.mode != "identity":
            return None
        return [layer for block in self.layers for layer in block]

    def anchored_variables(self):
        """[(teacher variables, new variables)] for the optimizer's new slots."""
        return [(self.anchor.trainable_variables,
                 [v for block in self.layers for layer in block for v in layer.trainable_variables])]


def deepenable(layer):
    """Whether layers can be inserted after `layer` (its rule's `deepenable`)."""
    rule = registry.rule_for(layer)
    return rule is not None and rule.deepenable


def plan_insertions(ctx, deepen, plan_span):
    """Reads the `deepen` option into `Insertion`s, in its order.

    Args:
        ctx: the analysis `Context`.
        deepen: as for `keras_net2net.expand_model`.
        plan_span: `plan_span(ctx, (first, last), how)` -> the insertion of a
            span to repeat (`keras_net2net.spans.plan_span`; spans build on
            this module, so the pipeline hands it in).
    """
    deepen = options.as_counts(deepen)
    if not isinstance(deepen, dict):
        raise errors.PlanError(
            f"Expected deepen to be a list of layer names or a dict {{name: count | "
            f"'residual', (first, last): count}}. Received: deepen={deepen!r} "
            f"({type(deepen).__name__}).")
    out = []
    for name, how in deepen.items():
        if isinstance(name, tuple):
            out.append(plan_span(ctx, name, how))
            continue
        anchor = resolve_layer(ctx.graph, name, "deepen")
        mode, count = _mode_and_count(name, how)
        if not deepenable(anchor):
            kinds = ", ".join(registry.kinds_where("deepenable"))
            raise errors.PlanError(
                f"Expected deepen to name a layer after which an identity layer can be "
                f"inserted ({kinds}). Received: deepen={{{name!r}: {how!r}}} for layer "
                f"{name!r} of class {type(anchor).__name__}. Fix: name the Dense or conv "
                f"layer before it.")
        _check_spatial(anchor, name)
        note = ""
        if isinstance(anchor, _RECURRENT):
            _check_recurrent(anchor, name, how)
            if mode == "identity":
                mode, note = "residual", (
                    "recurrent layer: deepened with a zero-initialised residual block, "
                    "since no recurrent layer is the identity")
        pattern, key = _pattern(ctx, anchor)
        activation, exact, act_note = _inserted_activation(pattern, mode)
        note = "; ".join(n for n in (note, act_note) if n)
        if isinstance(anchor, _RECURRENT):  # the block's own nonlinearity
            activation = activation_of(getattr(anchor, "forward_layer", anchor))
        out.append(LayerInsertion(anchor, pattern[-1], mode, count, pattern, activation,
                                  exact, note, key))
    _check_one_per_point(ctx, out)
    return out


def _check_one_per_point(ctx, planned):
    seen = {}
    for ins in planned:
        other = seen.setdefault(id(ins.after), ins)
        if other is not ins:
            path = ctx.graph.paths[id(ins.after)]
            raise errors.PlanError(
                f"Expected one deepen request per insertion point. Received: requests for "
                f"{other.anchor.name!r} and {ins.anchor.name!r} both insert after {path!r}. "
                f"Fix: keep one of them, with a count.")


def _mode_and_count(name, how):
    if how in ("identity", "residual"):
        return how, 1
    if isinstance(how, int) and not isinstance(how, bool) and how >= 1:
        return "identity", how
    raise errors.PlanError(
        f"Expected a positive count, 'identity' or 'residual' for layer {name!r}. "
        f"Received: deepen={{{name!r}: {how!r}}}. Fix: e.g. deepen={{{name!r}: 2}}.")


def _check_spatial(anchor, name):
    if type(anchor) in _CONVS and getattr(anchor, "padding", "same") == "causal":
        raise errors.PlanError(
            f"Expected a conv whose identity copy keeps the spatial size. Received: "
            f"deepen={name!r}, a {type(anchor).__name__} with padding='causal'; a centred "
            f"identity tap would shift the sequence. Fix: deepen another layer.")


def _check_recurrent(anchor, name, how):
    """A residual block goes after one output tensor."""
    if anchor.return_state or getattr(anchor, "merge_mode", "concat") is None:
        what = "return_state=True" if anchor.return_state else "merge_mode=None"
        raise errors.PlanError(
            f"Expected a recurrent layer with one output to deepen after. Received: "
            f"deepen={{{name!r}: {how!r}}} for {type(anchor).__name__} {name!r} with {what}, "
            f"which returns several tensors. Fix: deepen the Dense or recurrent layer "
            f"that reads its output.")


def _single_consumer(ctx, key):
    consumers = ctx.graph.consumers.get(key, [])
    if len(consumers) == 1 and key not in ctx.graph.outputs:
        return consumers[0]
    return None


def _pattern(ctx, anchor):
    """The anchor and the BatchNorm / activation layer that follow it alone."""
    calls = ctx.graph.calls_of(anchor)
    key = calls[0].outputs[0]
    pattern = [anchor]
    nxt = _single_consumer(ctx, key) if len(calls) == 1 else None
    if nxt is not None and type(nxt.op) is L.BatchNormalization and \
            ctx.io.get(id(nxt.op)) and ctx.io[id(nxt.op)].layouts.get("in") is not None:
        pattern.append(nxt.op)
        key = nxt.outputs[0]
        nxt = _single_consumer(ctx, key)
    if nxt is not None and type(nxt.op) in _ACTIVATION_LAYERS and \
            len(ctx.graph.calls_of(nxt.op)) == 1:
        pattern.append(nxt.op)
        key = nxt.outputs[0]
    return pattern, key


def _inserted_activation(pattern, mode):
    last = pattern[-1]
    act = activation_of(last)
    if mode == "residual":
        inner = activation_of(pattern[-1]) if pattern[-1] is not pattern[0] else activation_of(pattern[0])
        return (inner if inner != "linear" else "relu"), True, ""
    if act in IDEMPOTENT:
        return act, True, ""
    return "linear", False, (
        f"inserted linear: the values reaching it come from {act!r}, which is not "
        f"idempotent, so a copy of that activation would change them")


def build_layers(ins, width, taken):
    """Creates the inserted layers for one Insertion at `width` channels."""
    anchor = ins.anchor
    policy = anchor.dtype_policy
    bn = next((p for p in ins.pattern if isinstance(p, L.BatchNormalization)), None)
    blocks, ins.identity_bns = [], []  # repeatable: lazy.build may run it twice
    for k in range(1, ins.count + 1):
        base = f"{anchor.name}_deepen_{k}"
        if ins.mode == "identity":
            block = [_main_layer(anchor, width, unique_name(base, taken), policy)]
            if bn is not None:
                block.append(_bn_like(bn, unique_name(base + "_bn", taken), policy))
                ins.identity_bns.append(block[-1])
            if ins.activation != "linear":
                block.append(L.Activation(ins.activation, name=unique_name(base + "_act", taken),
                                          dtype=policy))
        else:
            block = _residual_layers(anchor, bn, ins.activation, width, base, taken, policy)
        blocks.append(block)
    ins.layers = blocks
    return blocks


def _main_layer(anchor, width, name, policy, activation=None):
    cls = type(anchor)
    if cls is L.Dense:
        return L.Dense(width, activation=activation, name=name, dtype=policy)
    window = tuple(k if k % 2 else 3 for k in anchor.kernel_size)
    common = dict(padding="same", data_format=anchor.data_format, activation=activation,
                  name=name, dtype=policy)
    if cls in _CONVS:
        groups = 1
        if anchor.groups > 1:  # stay grouped; depthwise-style (1 input per group) stays so
            groups = width if anchor.kernel.shape[-2] == 1 else anchor.groups
        return cls(width, window, groups=groups, **common)
    if cls in _DEPTHWISE:
        return cls(window, depth_multiplier=1, **common)
    return cls(width, window, depth_multiplier=1, **common)


def _bn_like(bn, name, policy):
    config = bn.get_config()
    config.update(name=name, center=True, scale=True, dtype=policy)
    return L.BatchNormalization.from_config(config)


def _recurrent_like(anchor, width, name, policy):
    """A recurrent layer of the anchor's kind (forward direction) that maps a
    sequence of `width` channels to one of `width` channels."""
    rnn = anchor.forward_layer if isinstance(anchor, L.Bidirectional) else anchor
    config = rnn.get_config()
    config.update(units=width, return_sequences=True, return_state=False, go_backwards=False,
                  stateful=False, name=name, dtype=policy)
    return type(rnn).from_config(config)


def _residual_layers(anchor, bn, activation, width, base, taken, policy):
    if isinstance(anchor, _RECURRENT) and anchor.return_sequences:
        # x + Dense_0(RNN(x)): the block adds recurrent depth, the zero Dense
        # (kernel and bias) makes it start as the identity, masks or not.
        return [_recurrent_like(anchor, width, unique_name(base + "_a", taken), policy),
                L.Dense(width, name=unique_name(base + "_b", taken), dtype=policy,
                        kernel_initializer="zeros"),
                L.Add(name=unique_name(base + "_add", taken), dtype=policy)]
    if type(anchor) is L.Dense or isinstance(anchor, _RECURRENT):
        return [L.Dense(width, activation=activation, name=unique_name(base + "_a", taken), dtype=policy),
                L.Dense(width, name=unique_name(base + "_b", taken), dtype=policy,
                        kernel_initializer="zeros"),
                L.Add(name=unique_name(base + "_add", taken), dtype=policy)]
    bn = bn or L.BatchNormalization(axis=1 if anchor.data_format == "channels_first" else -1)
    return [_main_layer(anchor, width, unique_name(base + "_a", taken), policy),
            _bn_like(bn, unique_name(base + "_a_bn", taken), policy),
            L.Activation(activation, name=unique_name(base + "_act", taken), dtype=policy),
            _main_layer(anchor, width, unique_name(base + "_b", taken), policy),
            _bn_like(bn, unique_name(base + "_b_bn", taken), policy),
            L.Add(name=unique_name(base + "_add", taken), dtype=policy)]


def apply_block(mode, block, x):
    """Calls one inserted block on the symbolic tensor x."""
    if mode == "identity":
        for layer in block:
            x = layer(x)
        return x
    *body, add = block
    y = x
    for layer in body:
        y = layer(y)
    return add([x, y])


def initial_weights(ins, stats):
    """Sets the inserted layers' weights: identities, and zero last scales in
    residual blocks. `stats` is (mean, var) of the insertion tensor or None."""
    for block in ins.layers:
        if ins.mode == "identity":
            for layer in block:
                set_identity(layer, stats)
        else:
            _zero_last_scale(block)


def set_identity(layer, stats):
    if isinstance(layer, L.BatchNormalization):
        width = layer.gamma.shape[0]
        mean, var = stats if stats is not None else (np.zeros(width), np.ones(width))
        values = {"gamma": np.sqrt(var + layer.epsilon), "beta": mean,
                  "moving_mean": mean, "moving_variance": var}
        assign(layer, values)
        return
    if isinstance(layer, L.Activation):
        return
    values = {"bias": 0.0}
    if isinstance(layer, L.Dense):
        values["kernel"] = np.eye(layer.units)
    elif type(layer) in _DEPTHWISE:
        width = layer.kernel.shape[-2]
        values["kernel"] = ops.identity_kernel(layer.kernel_size, width, depthwise=True)
    elif type(layer) in _SEPARABLE:
        width = layer.filters
        values["depthwise_kernel"] = ops.identity_kernel(layer.kernel_size, width, depthwise=True)
        values["pointwise_kernel"] = ops.identity_kernel((1,) * len(layer.kernel_size), width)
    else:
        values["kernel"] = ops.identity_kernel(layer.kernel_size, layer.filters,
                                               per_group=layer.kernel.shape[-2])
    assign(layer, values)


def _zero_last_scale(block):
    last = block[-2]
    if isinstance(last, L.BatchNormalization):
        assign(last, {"gamma": 0.0, "beta": 0.0})
    else:
        assign(last, {"kernel": 0.0, "bias": 0.0})
