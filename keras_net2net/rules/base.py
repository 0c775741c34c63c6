"""What a rule is, and the analysis context rules write into.

A rule knows one kind of layer: how its call maps input channel layouts to
output layouts (`propagate`), which config fields hold widths (`edit_config`),
and along which axes each of its weights follows which layout
(`weight_axes`). The generic weight rewrite in `keras_net2net.ops` does the
rest, so most rules are a few declarative lines.
"""

import dataclasses

from keras_net2net import channels
from keras_net2net.channels import Layout
from keras_net2net.channels import Segment

# Roles of a weight axis: follow a layout's mapping; `mix` also divides by the
# number of copies (a consumer summing over that axis).
IN, OUT, MID = "in", "out", "mid"

# How a weight axis follows its role's mapping g (third entry of a weight
# spec): COPY new[j] = old[g(j)]; DIVIDE also divides by the copy count of
# g(j) (a consumer summing over that axis); QUERY_DIMS is the query side of
# attention scores q.k / sqrt(d): each old position is kept once (its first
# copy), scaled by sqrt(d'/d), and its other copies are zero, so that with the
# key side copied q'.k' / sqrt(d') == q.k / sqrt(d) at any width d' (copying
# both sides would count copied dims twice).
COPY, DIVIDE, QUERY_DIMS = False, True, "query_dims"
# A norm's scale over channels that may carry pads (keras_net2net.padding):
# copied, then multiplied by sqrt(s), s = the fraction of copies (not pads).
NORM_SCALE = "norm_scale"
# A norm's scale or shift read by a tied reverse embedding (the embedding's
# columns are copied, not divided): copied, divided by the copy counts, and
# for the scale also multiplied by sqrt(s) as NORM_SCALE is; both undo the
# 1 / sqrt(s) a plan that keeps epsilons puts on the embedding's columns.
NORM_SCALE_DIVIDED, NORM_SHIFT_DIVIDED = "norm_scale_divided", "norm_shift_divided"
# The same two scale modes for a norm that multiplies by (1 + scale) (Gemma's
# RMSNormalization): applied to 1 + scale, then 1 subtracted again.
NORM_SCALE_ONE_PLUS = "norm_scale+1"
NORM_SCALE_DIVIDED_ONE_PLUS = "norm_scale_divided+1"
# Fill of a weight axis's pad positions (keras_net2net.padding), as an
# optional fourth entry of a weight spec: MEAN_FILL for the columns of a
# writer into a mean-padded stream, ZERO_FILL for shifts.
MEAN_FILL, ZERO_FILL = "mean", "zero"

# Activations that act on one channel at a time only.
NOT_ELEMENTWISE = {"softmax", "log_softmax", "glu", "sparsemax"}
# Activations φ with φ(φ(x)) == φ(x): an inserted copy after them is exact.
IDEMPOTENT = {"linear", "relu", "relu6", "hard_tanh"}


@dataclasses.dataclass
class LayerIO:
    """Layouts of one layer's roles, unified over all its calls."""

    layouts: dict
    extra: dict = dataclasses.field(default_factory=dict)


class Context:
    """State of the channel analysis of one graph."""

    def __init__(self, graph):
        self.graph = graph
        self.groups = channels.ChannelGroups()
        self.layouts = {}
        self.sides = {}  # tensor key -> layouts on other axes (rules.sides)
        self.io = {}  # id(layer) -> LayerIO
        self.barriers = []  # (path, class name, reason)
        self.producer_atoms = {}  # id(layer) -> atom it produces
        self.inner_atoms = {}  # id(layer) -> {key: atom} of widths inside the layer
        self.on_request = set()  # inner atoms a global factor leaves alone
        self.norm_calls = []  # (atom, call) of LayerNorm/RMSNorm over channels
        self.pad_kinds = {}  # root -> {tensor key: pad kind}, set by keras_net2net.padding
        self.pad_reasons = {}  # root -> why its tensors cannot take pads
        # id(layer) -> function(plan.Widths) -> [(what, why)]: widths that must
        # agree inside a layer (keras_hub blocks derive the head dim from the
        # model width), checked once every group's width is resolved.
        self.width_checks = {}
        # Tensors that do not depend on the model's inputs' values (what
        # keras_net2net.inline derives position ids from): no channels.
        self.constants = set()

    def layout(self, key):
        return self.layouts.get(key)

    def shape(self, key):
        return self.graph.shapes[key]

    def rank(self, key):
        return len(self.graph.shapes[key])

    def fresh(self, key, axis, path, frozen=None):
        """A new atom on `axis` of tensor `key`."""
        if axis is None:
            self.layouts[key] = None
            return None
        width = self.shape(key)[axis]
        if width is None:
            self.layouts[key] = None
            return None
        atom = self.groups.new_atom(width, producer=path)
        if frozen:
            self.groups.freeze(atom, frozen)
        layout = Layout(axis, (Segment(atom, width),))
        self.layouts[key] = layout
        return layout

    def produce(self, call, key, axis):
        """The output atom of a producing layer: one per layer over all calls."""
        layer_id = id(call.op)
        if layer_id in self.producer_atoms:
            atom = self.producer_atoms[layer_id]
            layout = Layout(axis, (Segment(atom, self.groups.widths[atom]),))
            self.layouts[key] = layout
            return layout
        layout = self.fresh(key, axis, call.path)
        if layout is not None:
            self.producer_atoms[layer_id] = layout.segments[0].atom
        return layout

    def inner(self, call, key, width, on_request=False):
        """A width that lives inside a layer (attention heads, key_dim), which
        no tensor of the graph carries: its own group, named "path:key", one
        per layer over all calls. `widen={path: {key: width}}` asks for it by
        name; a global factor grows it unless `on_request`.

        Returns:
            A `Layout` (axis None) of the inner group, for `record_io`.
        """
        atoms = self.inner_atoms.setdefault(id(call.op), {})
        if key not in atoms:
            atoms[key] = self.groups.new_atom(width, producer=f"{call.path}:{key}")
            if on_request:
                self.on_request.add(atoms[key])
        atom = atoms[key]
        return Layout(None, (Segment(atom, self.groups.widths[atom]),))

    def barrier(self, call, reason):
        """Freeze everything the call reads and give its outputs frozen atoms."""
        name = type(call.op).__name__
        self.barriers.append((call.path, name, reason))
        text = f"{name} {call.path!r}: {reason}"
        for key in call.inputs:
            self.groups.freeze_layout(self.layout(key), text)
        for key in call.outputs:
            rank = self.rank(key)
            self.fresh(key, rank - 1 if rank > 1 else None, call.path, frozen=text)

    def unify(self, a, b, by):
        """Union two layouts run by run, splitting groups where one side is a
        concatenation; False if they cannot be lined up."""
        if a is None or b is None:
            return a is b
        if not self._line_up(a, b, by):
            return False
        for x, y in zip(self.groups.expand(a.segments), self.groups.expand(b.segments)):
            self.groups.union(x.atom, y.atom, by)
        return True

    def _line_up(self, a, b, by):
        groups = self.groups
        for _ in range(4 * (len(a.segments) + len(b.segments)) + 4):
            sa, sb = groups.expand(a.segments), groups.expand(b.segments)
            if [(s.width, s.inner) for s in sa] == [(s.width, s.inner) for s in sb]:
                return True
            if a.size != b.size or any(s.inner != 1 for s in sa + sb):
                return False
            i = next(i for i, (x, y) in enumerate(zip(sa, sb)) if x.width != y.width)
            longer, shorter = (sa[i], sb[i]) if sa[i].width > sb[i].width else (sb[i], sa[i])
            groups.split(longer.atom, [shorter.width, longer.width - shorter.width], by)
        return False

    def record_io(self, call, **layouts):
        """Remember a layer's role layouts; later calls must match the first."""
        io = self.io.get(id(call.op))
        if io is None:
            self.io[id(call.op)] = LayerIO(dict(layouts))
            for layout in layouts.values():
                self.groups.touch(layout, call.path)
            return True
        for role, layout in layouts.items():
            if layout == io.layouts.get(role):
                continue  # the same inner groups, or the same tensor layout
            if not self.unify(io.layouts.get(role), layout, call.path):
                reason = f"shared layer {call.path!r} is called on tensors with different channel layouts"
                self.groups.freeze_layout(io.layouts.get(role), reason)
                self.groups.freeze_layout(layout, reason)
        return True


class Rule:
    """Base rule: a layer that the toolkit grows."""

    # Config key holding the output width, for producers.
    width_key = None
    # {weight name or index: [(axis, role, COPY | DIVIDE | QUERY_DIMS)]}
    weights = {}
    # {config key: role} of widths inside the layer (`Context.inner`): the
    # student's config gets each role's new width.
    inner_keys = {}
    # True for a layer that writes its output group through weights of its
    # own without producing it (keras_hub's PositionEmbedding adds a table of
    # the width it reads): its columns make the output's pad kind.
    writes = False

    def propagate(self, ctx, call):
        raise NotImplementedError

    def edit_config(self, config, io, plan):
        if self.width_key is not None:
            config[self.width_key] = plan.width(io.layouts[OUT])
        for key, role in self.inner_keys.items():
            if io.layouts.get(role) is not None:
                config[key] = plan.width(io.layouts[role])
        return config

    def weight_axes(self, layer, io):
        return self.weights


def activation_name(fn):
    """Serialised name of a Keras activation function (or None)."""
    if fn is None:
        return "linear"
    name = getattr(fn, "__name__", None)
    return name


def input_layout(ctx, call):
    return ctx.layout(call.inputs[0]) if call.inputs else None


def require_axis(ctx, call, layout, axis, role="channel"):
    """True if `layout` is on `axis`; else freeze it, since the layer treats
    that axis as something other than channels."""
    if layout is None:
        return False
    if layout.axis == axis:
        return True
    ctx.groups.freeze_layout(
        layout, f"{type(call.op).__name__} {call.path!r} reads axis {layout.axis} "
        f"as a non-{role} axis (its channels are on axis {axis})")
    return False
