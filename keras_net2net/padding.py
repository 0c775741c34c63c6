"""Norm-fed groups at any width: padded units (LEMON, Wang et al., ICLR 2024).

LayerNormalization and RMSNormalization normalise over the channels, so a
copied channel changes their statistics unless every channel is copied equally
(an integer factor). For a width q = k*n + r they stay exact if each channel is
copied k times and r *pad* units are added whose value in every tensor of the
group is known:

- "mean": the per-token mean of the n old channels. A LayerNorm input of that
  kind keeps its mean, and its variance becomes s*var with s = k*n/q; with
  gamma' = sqrt(s)*gamma and epsilon' = s*epsilon the copies come out as
  before, and the pads come out as beta' = 0 ("zero").
- "zero": 0. An RMSNorm input of that kind has mean square s*ms: the same
  scaling keeps it exact, and its pads stay 0.

Writers into the group produce the kind asked for: a linear writer's pad
column is the mean of its old columns ("mean", exact by linearity) or zero
("zero", also after an activation with f(0) = 0). Readers give pads zero rows.
Element-wise ops carry the kind: sums keep "mean" and "zero", products and
activations with f(0) = 0 keep "zero". `analyse` finds one kind per tensor of
each norm-fed group, or the reason there is none (a norm-fed writer that is not
linear, a post-LN block whose norm reads a sum of "zero" and "mean" tensors,
channels that are concatenated or flattened, an op it does not know); such a
group keeps growing by whole multiples only.
"""

import keras

from keras_net2net.graph import TensorKey
from keras_net2net.rules import attention
from keras_net2net.rules import channelwise
from keras_net2net.rules import merge
from keras_net2net.rules import rule_for
from keras_net2net.rules import shapes
from keras_net2net.rules import tensor_ops

PAD = -1
MEAN, ZERO = "mean", "zero"

# Activations with f(0) == 0: a "zero" pad stays zero through them.
ZERO_AT_ZERO = {"linear", "relu", "relu6", "gelu", "silu", "swish", "tanh", "elu", "selu",
                "leaky_relu", "mish", "softsign", "hard_silu", "hard_swish", "celu",
                "tanh_shrink", "soft_shrink", "hard_shrink", "hard_tanh", "sparse_plus"}
_SUMS = {"Add", "Subtract", "Average"}
_PRODUCTS = {"Multiply", "Maximum", "Minimum"}
_SCALINGS = {"Multiply", "Divide", "TrueDivide", "Negative"}
_PER_CHANNEL = (channelwise.BatchNormRule, channelwise.PReLURule, channelwise.LayerScaleRule)
_MOVES = (channelwise.GlobalPoolRule, channelwise.SpatialRule, shapes.ReshapeRule,
          shapes.PermuteRule, shapes.RepeatVectorRule, tensor_ops.TransposeRule,
          tensor_ops.SwapaxesRule, tensor_ops.MoveaxisRule, tensor_ops.ExpandDimsRule,
          tensor_ops.SqueezeRule, tensor_ops.GetItemRule, tensor_ops.PadRule)
_MAX_POOLS = ("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "GlobalMaxPooling1D",
              "GlobalMaxPooling2D", "GlobalMaxPooling3D")


class _NoKinds(Exception):
    """A group's tensors cannot all get a pad kind; the message says why."""


def analyse(ctx):
    """Pad kinds for every norm-fed group that can take pads.

    Returns:
        ({root: {tensor key: kind}}, {root: reason}) for the roots of groups
        some LayerNorm/RMSNorm reads: the kinds where one assignment exists,
        else the reason.
    """
    kinds, reasons = {}, {}
    roots = {ctx.groups.find(atom) for atom, _ in ctx.norm_calls}
    for root in roots:
        if ctx.groups.is_frozen(root):
            continue
        try:
            kinds[root] = _Solver(ctx, root).solve()
        except _NoKinds as e:
            reasons[root] = str(e)
    return kinds, reasons


class _Solver:
    """Union-find over the group's tensors, each class with at most one kind."""

    def __init__(self, ctx, root):
        self.ctx, self.root = ctx, root
        self.parent, self.kind = {}, {}
        self.keys = {key for key, layout in ctx.layouts.items()
                     if layout is not None and self._touches(layout)}

    def _touches(self, layout):
        groups = self.ctx.groups
        hit = [s for s in layout.segments if any(
            groups.find(leaf) == self.root for leaf in groups.leaves(s.atom))]
        if hit and (len(layout.segments) != 1 or hit[0].inner != 1 or
                    hit[0].atom in groups.parts):
            raise _NoKinds("its channels are concatenated, split or flattened on the way")
        return bool(hit)

    def find(self, key):
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def same(self, keys, where):
        keys = list(keys)
        for other in keys[1:]:
            a, b = self.find(keys[0]), self.find(other)
            if a != b:
                ka, kb = self.kind.pop(a, None), self.kind.pop(b, None)
                self.parent[b] = a
                for k in (ka, kb):
                    if k is not None:
                        self.require(a, k, where)

    def require(self, key, kind, where):
        root = self.find(key)
        if self.kind.setdefault(root, kind) != kind:
            raise _NoKinds(f"{where} needs its channels padded with {kind}s where the "
                           f"rest of the group has {self.kind[root]}s")

    def solve(self):
        for call in self.ctx.graph.calls:
            ins = [k for k in call.inputs if k in self.keys]
            outs = [k for k in call.outputs if k in self.keys]
            # A composite layer that only reads the group (a masked-LM head,
            # whose logits are another group) still says how it reads pads.
            if outs or (ins and hasattr(rule_for(call.op), "pad_constraints")):
                self._constrain(call, ins, outs)
        return {key: self.kind.get(self.find(key), ZERO) for key in self.keys}

    def _constrain(self, call, ins, outs):
        op, rule = call.op, rule_for(call.op)
        where = f"{type(op).__name__} {call.path!r}"
        name = type(op).__name__
        if isinstance(rule, channelwise.LayerNormRule):
            for key in ins:
                self.require(key, ZERO if rule.reads_zero_pads(op) else MEAN, where)
            for key in outs:
                self.require(key, ZERO, where)
        elif self._writes(call, rule):
            act = getattr(getattr(op, "activation", None), "__name__", "linear")
            if act != "linear":
                if act not in ZERO_AT_ZERO:
                    raise _NoKinds(f"{where} writes into it through {act!r}, which maps "
                                   "neither a mean nor a zero pad to itself")
                for key in outs:
                    self.require(key, ZERO, where)
        elif isinstance(rule, merge.ElementwiseMergeRule) or name == "Concatenate":
            self._elementwise(call, name, ins, outs, where)
        elif isinstance(rule, channelwise.PassThroughRule):
            act = getattr(getattr(op, "activation", None), "__name__", None)
            if isinstance(op, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU)) \
                    or (act not in (None, "linear")):
                if act is not None and act not in ZERO_AT_ZERO:
                    raise _NoKinds(f"{where} applies {act!r}, which keeps no pad kind")
                for key in ins + outs:
                    self.require(key, ZERO, where)
            else:
                self.same(ins + outs, where)  # dropout, noise, identity: inference identity
        elif isinstance(rule, _PER_CHANNEL):
            for key in ins + outs:
                self.require(key, ZERO, where)  # pads get parameters that map 0 to 0
        elif isinstance(rule, _MOVES):
            if name in _MAX_POOLS:
                for key in ins + outs:
                    self.require(key, ZERO, where)
            else:
                self.same(ins + outs, where)
        elif hasattr(rule, "pad_constraints"):  # composite layers say it themselves
            try:
                rule.pad_constraints(self, call, ins, outs, where)
            except ValueError as e:
                raise _NoKinds(str(e)) from e
        else:
            raise _NoKinds(f"{where} passes the group on, and padded channels through it "
                           "are not supported")

    def _writes(self, call, rule):
        return is_writer(self.ctx, call.op)

    def _elementwise(self, call, name, ins, outs, where):
        constants = [a for a in merge._operands(call)
                     if a is not None and not isinstance(a, (str, bool, TensorKey))]
        if name in _SUMS or name == "Concatenate":  # (Concatenate on another axis)
            self.same(ins + outs, where)
            if constants:  # x + c: the mean moves with it, a zero does not
                self.require(outs[0], MEAN, where)
        elif name in _SCALINGS and len(ins) == 1:
            self.same(ins + outs, where)  # x * c, x / c, -x: linear
        elif name in _PRODUCTS:
            for key in ins + outs:
                self.require(key, ZERO, where)
        elif name.lower() in ZERO_AT_ZERO or _camel(name) in ZERO_AT_ZERO:
            for key in ins + outs:
                self.require(key, ZERO, where)
        else:
            raise _NoKinds(f"{where} keeps no pad kind")


def is_writer(ctx, op):
    """Whether `op` writes its output group through weights of its own (whose
    pad columns then make the pad kind), rather than passing it on."""
    rule = rule_for(op)
    return id(op) in ctx.producer_atoms or isinstance(
        rule, attention.GroupQueryAttentionRule) or getattr(rule, "writes", False)


def _camel(name):
    return "".join("_" + c.lower() if c.isupper() and i else c.lower()
                   for i, c in enumerate(name))
