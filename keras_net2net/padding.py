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

from keras_net2net import activations
from keras_net2net.rules import rule_for
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import ZERO_FILL

PAD = -1
MEAN, ZERO = MEAN_FILL, ZERO_FILL


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
            if outs or (ins and getattr(rule_for(call.op), "constrains_reads", False)):
                self._constrain(call, ins, outs)
        return {key: self.kind.get(self.find(key), ZERO) for key in self.keys}

    def _constrain(self, call, ins, outs):
        op, rule = call.op, rule_for(call.op)
        where = f"{type(op).__name__} {call.path!r}"
        if is_writer(self.ctx, op):  # its columns make the kind
            fn = getattr(op, "activation", None)
            act = getattr(fn, "__name__", "linear")
            if act != "linear":
                if not activations.maps_zero_to_zero(fn):
                    raise _NoKinds(f"{where} writes into it through {act!r}, which maps "
                                   "neither a mean nor a zero pad to itself")
                for key in outs:
                    self.require(key, ZERO, where)
            return
        if rule is None:
            raise _NoKinds(f"{where} passes the group on, and padded channels through it "
                           "are not supported")
        try:  # the rule knows how pads pass its layer (rules.base.Rule.pad_constraints)
            rule.pad_constraints(self, call, ins, outs, where)
        except ValueError as e:
            raise _NoKinds(str(e)) from e


def is_writer(ctx, op):
    """Whether `op` writes its output group through weights of its own (whose
    pad columns then make the pad kind), rather than passing it on."""
    rule = rule_for(op)
    return id(op) in ctx.producer_atoms or getattr(rule, "writes", False)
