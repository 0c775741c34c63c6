"""Composite layers: one rule owns a layer that holds sublayers.

A transformer block, an embedding with a tied reverse projection or an MBConv
block computes with weights of sublayers the graph never shows. A
`CompositeRule` declares, by the path of each weight below the layer
(`"self_attention/query/kernel"`), along which axes it follows the model-width
group it reads and writes (`IN` / `OUT`) and the layer's inner groups (heads,
head dim, feed-forward width: `Context.inner`, named "layer:key"), and which
config keys hold those inner widths. The generic weight rewrite does the rest,
with the same math as the plain layers (`rules.base` modes), so the student is
the same class built from the edited config.

`ReversibleEmbeddingRule` is here too: its reverse call reads the group its
forward call writes, through the same matrix. Copying the columns serves the
forward call; the reverse call would need them divided. The tie is kept exactly
the way staged training keeps it: the norm that writes the reverse call's input
has its scale and shift divided by the copy counts (`NORM_SCALE_DIVIDED`), so
that the logits sum back; an untied reverse matrix is divided itself.
"""

import dataclasses
import inspect
import re

import keras
import numpy as np

from keras_net2net.graph import TensorKey
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import require_axis
from keras_net2net.rules.registry import rule_for


@dataclasses.dataclass(frozen=True)
class Inner:
    """A width inside a composite layer.

    Attributes:
        role: the role its weight specs name.
        width: function layer -> current width.
        on_request: grown only when named (head dims), not by a global factor.
        config_key: the config key that holds it, or None where the layer
            derives it (keras_hub blocks: head dim = hidden width // heads).

    Example:

    ```python
    Inner("heads", lambda layer: layer.num_heads, config_key="num_heads")
    ```
    """

    role: str
    width: object
    on_request: bool = False
    config_key: object = None


class CompositeRule(Rule):
    """A layer with sublayers, grown from declarations.

    Subclasses set:
        specs: {regex over the weight's path below the layer: [(axis, role,
            mode[, pad fill])]}, roles `IN`/`OUT` (the model width) or an inner
            role; the first matching regex wins; weights matching none keep
            their shape.
        inner: {name: Inner} of widths inside the layer.
        residual: True when the output has the width and group of the input
            (a transformer block); False when the layer produces a new group
            of `width_key` (an embedding).
        norms: True when the layer normalises its input group inside (a
            LayerNorm over the stream): copies must be even, or pads.
        pre_norm: every norm reads the stream itself or a sum of the stream
            and writers (pre-LN): the stream takes mean pads. A post-LN block
            normalises a sum of a normalised (zero-padded) stream and a writer,
            which no pad kind makes exact.
        epsilon_key: config key of the norms' epsilon (scaled by s when pads
            are used and the plan does not keep epsilons).

    Example:

    ```python
    class ScaledFFNRule(CompositeRule):  # x + out(act(inner(x))), sublayers "inner", "out"
        inner = {"units": Inner("ffn", lambda layer: layer.units, config_key="units")}
        specs = {"inner/kernel": [(0, IN, DIVIDE), (1, "ffn", COPY)],
                 "inner/bias": [(0, "ffn", COPY)],
                 "out/kernel": [(0, "ffn", DIVIDE), (1, OUT, COPY)],
                 "out/bias": [(0, OUT, COPY)]}
    keras_net2net.register_rule(ScaledFFN, ScaledFFNRule())
    ```
    """

    specs = {}
    inner = {}
    residual = True
    # Extra outputs are the stream itself at other depths (DINOv2's pyramid
    # of block outputs), not caches or scores.
    stream_outputs = False
    norms = False
    pre_norm = True
    pad_kind = "mean"
    epsilon_key = None

    def derived_roles(self, inner):
        """Roles computed from the inner layouts (grouped-query heads:
        `Product(kv heads, repeats)`); {} by default."""
        return {}

    @property
    def inner_keys(self):
        """{name: role} of the inner widths, for the report."""
        return {name: spec.role for name, spec in self.inner.items()}

    def is_pre_norm(self, layer):
        return self.pre_norm

    def refuse(self, layer):
        """A reason the layer cannot grow (e.g. cross-attention), or None."""
        return None

    def check_widths(self, layer, io, view):
        """Brings the layer's inner widths in line once every group's width
        is resolved (`keras_net2net.plan.Widths`); returns [(what, why)] of
        the widths set back. Nothing by default."""
        return []

    def propagate(self, ctx, call):
        reason = self.refuse(call.op)
        if reason:
            ctx.barrier(call, reason)
            return
        stream = first_tensor(call)
        for key in call.inputs:
            if key != stream:
                ctx.groups.freeze_layout(ctx.layout(key), (
                    f"{type(call.op).__name__} {call.path!r} reads it as a mask or position "
                    "input (its axes are positions, not channels)"))
        layout = ctx.layout(stream)
        if not require_axis(ctx, call, layout, ctx.rank(stream) - 1, role="model-width"):
            layout = None
        out_key = call.outputs[0]
        if self.residual:
            out = layout
            ctx.layouts[out_key] = layout
            if layout is None:
                ctx.fresh(out_key, ctx.rank(out_key) - 1, call.path, frozen=(
                    f"{type(call.op).__name__} {call.path!r} writes the width it reads, "
                    "which is kept"))
        else:
            out = ctx.produce(call, out_key, ctx.rank(out_key) - 1)
        for key in call.outputs[1:]:
            if self.stream_outputs and out is not None and ctx.rank(key) == ctx.rank(out_key):
                ctx.layouts[key] = out
                continue
            ctx.fresh(key, ctx.rank(key) - 1, call.path, frozen=(
                f"{type(call.op).__name__} {call.path!r}: an extra output (cache, scores)"))
        inner = inner_roles(self, ctx, call, layout)
        ctx.record_io(call, **{IN: layout if self.residual else None, OUT: out}, **inner)
        io = ctx.io[id(call.op)]
        ctx.width_checks[id(call.op)] = lambda view: self.check_widths(call.op, io, view)

    def pad_constraints(self, solver, call, ins, outs, where):
        """Pad kinds (keras_net2net.padding): a pre-norm block reads and
        writes mean-padded streams; anything else has none."""
        if self.residual and self.norms and not self.is_pre_norm(call.op):
            raise ValueError(
                f"{where} is a post-norm block: its norm reads the sum of a normalised "
                "(zero-padded) stream and a writer, which no pad kind keeps exact")
        if not self.residual:
            return  # a producer: its columns make its output's kind
        for key in ins + outs:
            solver.require(key, self.pad_kind, where)

    def weight_axes(self, layer, io):
        axes = {}
        prefix = layer.name + "/"
        for index, variable in enumerate(layer.weights):
            path = variable.path
            path = path.split(prefix, 1)[1] if prefix in path else variable.name
            for pattern, spec in self.specs.items():
                if re.fullmatch(pattern, path):
                    axes[index] = spec
                    break
        return axes

    def edit_config(self, config, io, plan):
        if self.width_key is not None and io.layouts.get(OUT) is not None:
            config[self.width_key] = plan.width(io.layouts[OUT])
        for spec in self.inner.values():
            if spec.config_key and io.layouts.get(spec.role) is not None:
                config[spec.config_key] = plan.width(io.layouts[spec.role])
        layout = io.layouts.get(IN)
        if self.epsilon_key and layout is not None and not plan.keep_epsilon:
            config[self.epsilon_key] = config[self.epsilon_key] * plan.kept_fraction(layout)
        return config


def first_tensor(call):
    """The first tensor argument of a call (the stream a block reads)."""
    for arg in list(call.args) + list(call.kwargs.values()):
        if isinstance(arg, TensorKey):
            return arg
    return call.inputs[0]


class ReversibleEmbeddingRule(Rule):
    """keras.layers.ReversibleEmbedding (and keras_hub's): the forward call
    produces the model width like an Embedding; a reverse call
    (`reverse=True`, logits) reads that same group. Tied: the norm writing the
    reverse call's input is divided (module docstring); untied: the reverse
    matrix `(width, vocab)` is divided along its rows.

    Example:

    ```python
    emb = keras.layers.ReversibleEmbedding(50, 8)
    x = keras.layers.LayerNormalization()(emb(tokens))
    logits = emb(x, reverse=True)   # the LayerNorm gets divided when x's width grows
    ```
    """

    width_key = "output_dim"

    def propagate(self, ctx, call):
        layer = call.op
        if getattr(layer, "quantization_mode", None):
            ctx.barrier(call, "it is quantized; it keeps its width")
            return
        arguments = inspect.signature(layer.call).bind_partial(*call.args, **call.kwargs)
        if not arguments.arguments.get("reverse", False):
            out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
            ctx.record_io(call, **{OUT: out})
            return
        ctx.fresh(call.outputs[0], ctx.rank(call.outputs[0]) - 1, call.path,
                  frozen=f"ReversibleEmbedding {call.path!r}: reverse logits (the vocabulary)")
        key = call.inputs[0]
        layout = ctx.layout(key)
        atom = ctx.producer_atoms.get(id(layer))
        if layout is None or atom is None:
            ctx.groups.freeze_layout(layout, f"ReversibleEmbedding {call.path!r} is called "
                                             "in reverse before (or without) its forward call")
            return
        if not layer.tie_weights:
            ctx.unify(layout, ctx.layouts[ctx.graph.calls_of(layer)[0].outputs[0]], call.path)
            ctx.io[id(layer)].extra["untied_reader"] = True
            return
        reason = tied_norm(ctx, key, call)
        if reason:
            ctx.groups.freeze_layout(layout, reason)
            return
        ctx.unify(layout, ctx.layouts[ctx.graph.calls_of(layer)[0].outputs[0]], call.path)
        norm = ctx.graph.producers[tied_source(ctx, key)].op
        ctx.io[id(norm)].extra["tied_divide"] = True

    def weight_axes(self, layer, io):
        axes = {"embeddings": [(1, OUT, COPY)]}  # pads: the stream's kind (Rebuilder)
        if not layer.tie_weights:  # its rows read the group, called in reverse or not yet
            axes["reverse_embeddings"] = [(0, OUT, DIVIDE)]
        return axes


def tied_source(ctx, key):
    """The tensor a tied reverse call's input `key` comes from through
    layers that only scale it, each read once: dropout (the identity at
    inference) and a multiplication by a scalar constant (T5's head scales by
    hidden_dim ** -0.5). Dividing the norm that writes it divides `key`."""
    while True:
        producer = ctx.graph.producers.get(key)
        if producer is None or len(producer.inputs) != 1 or not _scales_only(producer) or \
                len(ctx.graph.consumers.get(key, [])) > 1 or key in ctx.graph.outputs:
            return key
        key = producer.inputs[0]


def _scales_only(call):
    op = call.op
    if isinstance(op, keras.layers.Dropout):
        return True
    constants = [a for a in list(call.args) + list(call.kwargs.values())
                 if not isinstance(a, TensorKey)]
    return type(op).__name__ == "Multiply" and not isinstance(op, keras.layers.Layer) and \
        len(constants) == 1 and np.size(constants[0]) == 1


def tied_norm(ctx, key, call):
    """Why a tied reverse call's input cannot take the division, or None."""
    key = tied_source(ctx, key)
    producer = ctx.graph.producers.get(key)
    io = ctx.io.get(id(producer.op)) if producer is not None else None
    rule = rule_for(producer.op) if producer is not None else None
    if rule is None or not rule.divides_for_tied_embedding \
            or io is None or io.layouts.get(IN) is None or \
            getattr(producer.op, "scale", True) is False:
        return (f"ReversibleEmbedding {call.path!r} is tied and reads a tensor that no "
                "LayerNorm/RMSNorm with a scale writes: its copied columns cannot be "
                "divided anywhere")
    if len(ctx.graph.consumers.get(key, [])) > 1 or key in ctx.graph.outputs:
        return (f"ReversibleEmbedding {call.path!r} is tied and its input is read elsewhere "
                "too: dividing the norm that writes it would change those readers")
    return None


def inner_roles(rule, ctx, call, layout):
    """{role: layout} of a composite call's inner widths (and the derived
    ones); where it normalises its input inside, the input's group takes
    whole copies only."""
    inner = {spec.role: ctx.inner(call, name, spec.width(call.op), spec.on_request)
             for name, spec in rule.inner.items()}
    if rule.norms and layout is not None:
        atom = layout.segments[0].atom
        ctx.groups.require_blocks(atom, 1, (
            f"{type(call.op).__name__} {call.path!r} normalises its input inside, "
            "so every channel must be copied equally (an integer widening factor)"))
        ctx.norm_calls.append((atom, call))
    inner.update(rule.derived_roles(inner))
    return inner
