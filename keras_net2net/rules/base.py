"""What a rule is, and the analysis context rules write into.

A rule knows one kind of layer: how its call maps input channel layouts to
output layouts (`propagate`), which config fields hold widths (`edit_config`),
and along which axes each of its weights follows which layout
(`weight_axes`). The generic weight rewrite in `keras_net2net.ops` does the
rest, so most rules are a few declarative lines.
"""

import dataclasses
import enum
import math

import numpy as np

from keras_net2net import activations
from keras_net2net import channels
from keras_net2net.channels import Layout
from keras_net2net.channels import Segment

# Roles of a weight axis: follow a layout's mapping; `mix` also divides by the
# number of copies (a consumer summing over that axis).
IN, OUT, MID = "in", "out", "mid"

# How a weight axis follows its role's mapping g (factors of `Mode`).
FAN_IN, FAN_OUT, QUERY = "fan_in", "fan_out", "query"
NORM = "norm"


class Mode(enum.Enum):
    """How a weight axis follows its role's mapping g (third entry of a
    weight spec), with every fact both the weight rewrite
    (`keras_net2net.rebuild`) and the optimizer state
    (`keras_net2net.optimizer_state`) read:

    - COPY: new[j] = old[g(j)] (fan-in weights of the copies: kernel columns,
      biases, per-channel parameters); with `Plan.keep_epsilon` a writer's
      columns (role OUT) are also scaled by `Plan.write_scale`.
    - DIVIDE: copied, then divided by the copy count of g(j) (a consumer
      summing over that axis).
    - QUERY_DIMS: the query side of attention scores q.k / sqrt(d): each old
      position is kept once (its first copy), scaled by sqrt(d'/d), and its
      other copies are zero, so that with the key side copied
      q'.k' / sqrt(d') == q.k / sqrt(d) at any width d' (copying both sides
      would count copied dims twice).
    - NORM_SCALE: a norm's scale over channels that may carry pads
      (keras_net2net.padding): copied, then multiplied by sqrt(s), s the
      fraction of copies (not pads).
    - NORM_SCALE_DIVIDED, NORM_SHIFT_DIVIDED: a norm's scale or shift read by
      a tied reverse embedding (the embedding's columns are copied, not
      divided): copied, divided by the copy counts, and for the scale also
      multiplied by sqrt(s) as NORM_SCALE is; both undo the 1 / sqrt(s) a
      plan that keeps epsilons puts on the embedding's columns
      (`Plan.write_scale`).
    - NORM_SCALE_ONE_PLUS, NORM_SCALE_DIVIDED_ONE_PLUS: the two scale modes
      for a norm that multiplies by (1 + scale) (Gemma's RMSNormalization):
      applied to 1 + scale (`offset`), then 1 subtracted again.

    Each entry carries:

    - `label`: the name weight specs once spelled it with (`Mode.of`);
    - `divides`: the copies are divided by their copy counts;
    - `tied`: also divided by `Plan.write_scale` (a tied embedding's columns);
    - `scale`: QUERY (first copies times sqrt(d'/d)), NORM (times sqrt(s)) or None;
    - `noise`: takes balanced symmetry-breaking noise (its copies are summed
      by what reads them, so noise that sums to zero over them is exact);
    - `offset`: the weight is rewritten as offset + weight (1 + scale);
    - `gradient`: how the gradient of a copy relates to the teacher unit's
      at the Net2Net point: FAN_IN (g / copies: a copy's activation is read
      by rows divided by the copies), FAN_OUT (g: the rows of a consumer, or
      a norm whose output the copied columns of a tied embedding read), or
      QUERY (g * sqrt(d/d')).

    `weight_factor` and `gradient_factor` turn these into per-position
    factors of one axis; optimizer slots follow them.
    """

    #                              label                   divides tied   scale  noise  offset gradient
    COPY = ("copy", False, False, None, False, 0.0, FAN_IN)
    DIVIDE = ("divide", True, False, None, True, 0.0, FAN_OUT)
    QUERY_DIMS = ("query_dims", False, False, QUERY, True, 0.0, QUERY)
    NORM_SCALE = ("norm_scale", False, False, NORM, False, 0.0, FAN_IN)
    NORM_SCALE_DIVIDED = ("norm_scale_divided", True, True, NORM, False, 0.0, FAN_OUT)
    NORM_SHIFT_DIVIDED = ("norm_shift_divided", True, True, None, True, 0.0, FAN_OUT)
    NORM_SCALE_ONE_PLUS = ("norm_scale+1", False, False, NORM, False, 1.0, FAN_IN)
    NORM_SCALE_DIVIDED_ONE_PLUS = ("norm_scale_divided+1", True, True, NORM, False, 1.0,
                                   FAN_OUT)

    def __init__(self, label, divides, tied, scale, noise, offset, gradient):
        self.label, self.divides, self.tied, self.scale = label, divides, tied, scale
        self.noise, self.offset, self.gradient = noise, offset, gradient

    def __repr__(self):
        return f"Mode.{self.name}"

    def __bool__(self):
        # Modes were once booleans (DIVIDE = True): a truth test now is a bug.
        raise TypeError(f"Mode.{self.name} has no truth value; read its facts "
                        "(divides, noise, ...) instead")

    @classmethod
    def of(cls, value):
        """The `Mode` of a weight spec's third entry: a `Mode`, or what specs
        once wrote (False for COPY, True for DIVIDE, or a label)."""
        if isinstance(value, cls):
            return value
        if value is True or value is False:
            return cls.DIVIDE if value else cls.COPY
        mode = _MODES_BY_LABEL.get(value) if isinstance(value, str) else None
        if mode is None:
            raise ValueError(f"Expected a weight mode ({', '.join(m.name for m in cls)}). "
                             f"Received: mode={value!r}.")
        return mode

    @property
    def base(self):
        """The mode without its offset (NORM_SCALE_ONE_PLUS -> NORM_SCALE)."""
        return _WITHOUT_OFFSET.get(self, self)

    def weight_factor(self, src, counts):
        """Per-position factor of the weight along one axis, relative to the
        teacher value it copies: what a slot in weight units (SGD velocity)
        follows. `src` maps new positions to old ones (negative: pads, whose
        factor the caller sets); `counts` are the old positions' copy counts.
        A tied mode's `Plan.write_scale` is 1 unless the plan keeps epsilons."""
        safe = np.where(src < 0, 0, src)
        factor = 1.0 / counts[safe] if self.divides else np.ones(len(src))
        if self.scale == QUERY:
            factor = factor * first_copy_mask(src) * math.sqrt(len(src) / len(counts))
        elif self.scale == NORM:  # copies of a norm's scale next to pads
            factor = factor * np.full(len(src), math.sqrt(np.mean(src >= 0)))
        return factor

    def gradient_factor(self, src, counts):
        """Per-position factor of the gradient along one axis at the Net2Net
        point, relative to the teacher unit's (see `gradient`)."""
        if self.gradient == FAN_OUT:
            return np.ones(len(src))
        if self.gradient == QUERY:
            return np.full(len(src), math.sqrt(len(counts) / len(src)))
        return 1.0 / counts[np.where(src < 0, 0, src)]


_MODES_BY_LABEL = {m.label: m for m in Mode}
_WITHOUT_OFFSET = {Mode.NORM_SCALE_ONE_PLUS: Mode.NORM_SCALE,
                   Mode.NORM_SCALE_DIVIDED_ONE_PLUS: Mode.NORM_SCALE_DIVIDED}

# The names weight specs use (hub families import them from here).
COPY, DIVIDE, QUERY_DIMS = Mode.COPY, Mode.DIVIDE, Mode.QUERY_DIMS
NORM_SCALE = Mode.NORM_SCALE
NORM_SCALE_DIVIDED, NORM_SHIFT_DIVIDED = Mode.NORM_SCALE_DIVIDED, Mode.NORM_SHIFT_DIVIDED
NORM_SCALE_ONE_PLUS = Mode.NORM_SCALE_ONE_PLUS
NORM_SCALE_DIVIDED_ONE_PLUS = Mode.NORM_SCALE_DIVIDED_ONE_PLUS
# Fill of a weight axis's pad positions (keras_net2net.padding), as an
# optional fourth entry of a weight spec: MEAN_FILL for the columns of a
# writer into a mean-padded stream, ZERO_FILL for shifts. They are also the
# two pad kinds of a tensor (what its pad units hold: the per-token mean of
# the old channels, or zero).
MEAN_FILL, ZERO_FILL = "mean", "zero"
# How pad units pass through a layer (`Rule.pads`): SAME_PADS, the output's
# pads are its input's (a move, an inference identity); ZERO_PADS, only zero
# pads stay pads (per-channel parameters, max pooling: they map 0 to 0 per
# channel but not a per-token mean).
SAME_PADS, ZERO_PADS = "same", "zero"
# Re-exported: the facts live in keras_net2net.activations.
NOT_ELEMENTWISE, IDEMPOTENT = activations.NOT_ELEMENTWISE, activations.IDEMPOTENT


def first_copy_mask(src):
    """1.0 at the first new position copying each old position, else 0.0."""
    keep = np.zeros(len(src))
    valid = np.flatnonzero(src >= 0)
    keep[valid[np.unique(src[valid], return_index=True)[1]]] = 1.0
    return keep


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
    """Base rule: a layer that the toolkit grows.

    A rule owns every fact about its layer kind that the pipeline asks:
    how channels flow through it (`propagate`), its widths (`width_key`,
    `inner_keys`, `edit_config`), its weights (`weights`, `weight_axes`, with
    a `Mode` per axis), how pad units pass it (`pads`, `pad_constraints`),
    whether layers can be inserted after it (`deepenable`), what it makes of
    a zero input (`value_at_zero`), whether a branch can end in it
    (`zeroable`, `zeroing_problem`) and which of its weights are attention's
    key-side key dims (`key_dim_axes`). A new layer kind is one rule class
    and one line in the registry (`keras_net2net.rules`).
    """

    # Config key holding the output width, for producers.
    width_key = None
    # {weight name or index: [(axis, role, Mode)]}, optionally with a fill
    # (MEAN_FILL or ZERO_FILL) as a fourth entry.
    weights = {}
    # {config key: role} of widths inside the layer (`Context.inner`): the
    # student's config gets each role's new width.
    inner_keys = {}
    # True for a layer that writes its output group through weights of its
    # own without producing it (keras_hub's PositionEmbedding adds a table of
    # the width it reads, attention its output projection): its columns make
    # the output's pad kind.
    writes = False
    # How pad units (keras_net2net.padding) pass through a layer that is not
    # a writer: SAME_PADS, ZERO_PADS, or None (they cannot; override
    # `pad_constraints` for anything else).
    pads = None
    # Whether padding asks `pad_constraints` of a call that only reads a
    # group (its outputs are another group): a masked-LM head normalises the
    # width it decodes from. Other readers take pads as their rule's weights do.
    constrains_reads = False
    # Net2DeeperNet (keras_net2net.deepen): an identity layer, or a
    # zero-initialised residual block, can be inserted after this layer.
    deepenable = False
    # A residual branch of a repeated span (keras_net2net.spans) can end in
    # this layer: with its weights zeroed, its output is zero (unless
    # `zeroing_problem` says why not).
    zeroable = False
    # A norm over channels whose scale and shift can take the division a tied
    # reverse embedding needs (io.extra["tied_divide"], rules.composite).
    divides_for_tied_embedding = False
    # A layer that only applies an activation (Activation, ReLU, ...): on a
    # residual stream, an idempotent one is kept by a copy of the span
    # (keras_net2net.spans).
    activation_layer = False

    def propagate(self, ctx, call):
        raise NotImplementedError

    def pad_constraints(self, pads, call, ins, outs, where):
        """Constrains the pad kinds of the group's tensors the call reads
        (`ins`) and writes (`outs`), through `pads.same(keys, where)` and
        `pads.require(key, MEAN_FILL | ZERO_FILL, where)`.

        Raises:
            ValueError: no pad kind passes the layer exactly (the message says
                why, naming `where`).
        """
        if self.pads == SAME_PADS:
            pads.same(ins + outs, where)
        elif self.pads == ZERO_PADS:
            for key in ins + outs:
                pads.require(key, ZERO_FILL, where)
        else:
            raise ValueError(f"{where} passes the group on, and padded channels through it "
                             "are not supported")

    def value_at_zero(self, op):
        """max |op(0)| for a layer that acts on each element alone (in
        training mode too), else None."""
        return None

    def zeroing_problem(self, op):
        """Why zeroing the weights of a `zeroable` layer does not zero its
        output, or None."""
        fn = getattr(op, "activation", None)
        if activations.maps_zero_to_zero(fn):
            return None
        value = activations.value_at_zero(fn)
        why = ("acts across channels" if not activations.elementwise(fn) else
               "is not known to map 0 to 0" if value is None else f"maps 0 to {value:g}")
        return f"applies activation {activations.name(fn)!r}, which {why}"

    def zeroed_weights(self, layer):
        """(layer, weight names) to zero so that a `zeroable` layer writes zero."""
        return layer, ("kernel", "bias")

    def key_dim_axes(self, layer):
        """{id(variable): axis} of the layer's weights along attention's
        key-side key dims: their gradient at the Net2Net point is the
        teacher's at the first copy of each dim and zero at the others
        (keras_net2net.optimizer_state)."""
        return {}

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
