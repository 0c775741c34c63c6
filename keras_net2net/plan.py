"""What grows and how: target widths per channel group, the mappings g, and
the old-position index (`src`) of every layout. Serialisable to JSON."""

import difflib
import math
import weakref

import numpy as np

from keras_net2net import errors
from keras_net2net import ops
from keras_net2net import padding
from keras_net2net.channels import Product


def resolve_layer(graph, name, option):
    """The layer called `name` (bare name, or "submodel/name" path)."""
    by_path = {graph.paths[i]: layer for i, layer in graph.layers.items()}
    if name in by_path:
        return by_path[name]
    matches = [layer for path, layer in by_path.items() if path.split("/")[-1] == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        paths = sorted(graph.paths[id(m)] for m in matches)
        raise errors.PlanError(
            f"Expected a layer name that is unique in the model. Received: "
            f"{option}={name!r}, which names {len(matches)} layers in nested models: "
            f"{paths}. Fix: use the full path, e.g. {paths[0]!r}.")
    close = difflib.get_close_matches(name, list(by_path), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise errors.PlanError(
        f"Expected a layer of the model. Received: {option}={name!r}, which is no "
        f"layer of model {graph.model.name!r}.{hint} Fix: use a name from "
        f"model.summary() (or n2n.explain_model(model)).")


class Plan:
    """Target width and mapping per group; old positions of any layout."""

    def __init__(self, ctx, widths, mapping_kind="random", seed=None, mappings=None):
        self.ctx = ctx
        self.groups = ctx.groups
        self.widths = widths  # root -> new width
        rng = np.random.default_rng(seed)
        self.mappings = {}
        for root in self.groups.roots():
            old, new = self.groups.widths[root], widths.get(root, self.groups.widths[root])
            if mappings is not None and root in mappings:
                self.mappings[root] = np.asarray(mappings[root], dtype=np.int64)
            elif new == old:
                self.mappings[root] = np.arange(old, dtype=np.int64)
            else:
                blocks, _ = self.groups.blocks(root)
                pads = new % old if blocks == 1 and root in ctx.pad_kinds else 0
                self.mappings[root] = np.concatenate([
                    ops.mapping(old, new - pads, mapping_kind, rng, blocks),
                    np.full(pads, padding.PAD, dtype=np.int64)])
        self.has_pads = any(len(g) and g.min() < 0 for g in self.mappings.values())
        self._cache = {}
        # Norm epsilons fixed by the model's class (keras_hub backbones hard-code
        # them): instead of epsilon' = s * epsilon, writers into mean-padded
        # streams scale their columns by 1 / sqrt(s), which every norm reading
        # them undoes exactly (see `write_scale`).
        self.keep_epsilon = False

    def write_scale(self, layout):
        """1 / sqrt(s) for the columns a writer puts into a padded stream when
        `keep_epsilon`: a norm reading x / sqrt(s) padded with means sees
        variance (1/s) * s * var = var, so with gamma' = sqrt(s) * gamma and
        epsilon unchanged it computes what the teacher's did; else 1."""
        if not self.keep_epsilon:
            return 1.0
        return 1.0 / np.sqrt(self.kept_fraction(layout))

    def mapping(self, atom):
        parts = self.groups.parts.get(atom)
        if parts is None:
            return self.mappings[self.groups.find(atom)]
        out, offset = [], 0
        for part in parts:
            out.append(self.mapping(part) + offset)
            offset += self.groups.widths[part]
        return np.concatenate(out)

    def width(self, layout):
        """New size of a layout's axis."""
        if isinstance(layout, Product):
            return self.width(layout.outer) * self.width(layout.inner)
        return sum(len(self.mapping(s.atom)) * s.inner for s in layout.segments)

    def src(self, layout):
        """(src, counts): old position of each new position, copies per old one."""
        if layout not in self._cache:
            if isinstance(layout, Product):  # (i, t) -> i * inner size + t
                outer, inner = self.src(layout.outer)[0], self.src(layout.inner)[0]
                src = (outer[:, None] * layout.inner.size + inner[None, :]).ravel()
                offset = layout.size
            else:
                parts, offset = [], 0
                for s in layout.segments:
                    parts.append(ops.segment_indices(self.mapping(s.atom), s.inner, offset))
                    offset += s.width * s.inner
                src = np.concatenate(parts) if parts else np.zeros(0, np.int64)
            counts = np.bincount(src[src >= 0], minlength=offset)
            identity = len(src) == offset and bool(np.all(counts == 1)) and bool(
                np.all(src == np.arange(offset)))
            self._cache[layout] = (src, counts, identity)
        return self._cache[layout]

    def kept_fraction(self, layout):
        """Copies (not pads) over all new positions of `layout`: the s of
        keras_net2net.padding, 1.0 where nothing is padded."""
        src = self.src(layout)[0]
        return float(np.count_nonzero(src >= 0) / len(src)) if len(src) else 1.0

    def pad_kind(self, key):
        """The pad kind of tensor `key` ("mean" or "zero"), or None."""
        for kinds in self.ctx.pad_kinds.values():
            if key in kinds:
                return kinds[key]
        return None

    def new_shape(self, key):
        shape = list(self.ctx.shape(key))
        for layout in [self.ctx.layout(key), *self.ctx.sides.get(key, ())]:
            if layout is not None:
                shape[layout.axis] = self.width(layout)
        return tuple(shape)


def producers(ctx):
    """{layer path: (layer, atom)} for every layer that produces a group."""
    graph = ctx.graph
    return {graph.paths[i]: (graph.layers[i], atom) for i, atom in ctx.producer_atoms.items()}


class Widths:
    """Resolved widths as a rule's width check sees them (`Context.width_checks`):
    the new width of a layout, and a group's width set again.

    Example:

    ```python
    def check(view):       # registered by a rule in propagate
        if view.width(stream) // view.width(heads) != view.width(head_dim):
            view.set(heads, heads.size)
        return []
    ```
    """

    def __init__(self, ctx, widths):
        self.groups, self.widths = ctx.groups, widths

    def width(self, layout):
        """New size of a layout's axis under the widths resolved so far."""
        return sum(self.widths.get(self.groups.find(leaf), self.groups.widths[leaf]) * s.inner
                   for s in layout.segments for leaf in self.groups.leaves(s.atom))

    def set(self, layout, new):
        """Sets the width of a one-group layout (an inner width)."""
        (segment,) = layout.segments
        root = self.groups.find(segment.atom)
        if new == self.groups.widths[root]:
            self.widths.pop(root, None)
        else:
            self.widths[root] = int(new)


def resolve_widths(ctx, widen, strict):
    """Target width per group root, plus notes on requests left unapplied.

    Every layer's width check (`Context.width_checks`) then sees the result:
    a keras_hub block whose model width is kept keeps its heads.

    Args:
        ctx: the analysis context.
        widen: as for `_resolve_widths`.
        strict: raise instead of skipping a request that cannot be applied.

    Returns:
        (widths, skipped): {root: new width}, [(what, reason)].

    Raises:
        FrozenGroupError: `strict` and a width named in `widen` was set back.
    """
    widths, skipped = _resolve_widths(ctx, widen, strict)
    view = Widths(ctx, widths)
    for check in ctx.width_checks.values():
        for what, why in check(view):
            if strict and isinstance(widen, dict):
                raise errors.FrozenGroupError(
                    f"Expected a layer whose widths can grow exactly. Received: widen="
                    f"{widen!r}, but {what!r} keeps its width because {why}. Fix: drop it "
                    f"from widen, or pass strict=False to skip it with a note in the report.")
            skipped.append((what, why))
    return widths, skipped


def _resolve_widths(ctx, widen, strict):
    """Target width per group root, plus notes on requests left unapplied.

    Args:
        ctx: the analysis context.
        widen: None, a factor >= 1, or {layer name: width (int) or factor
            (float)}; a layer with widths inside it (attention) also takes
            {key: width or factor}, e.g. {"mha": {"num_heads": 8}}.
        strict: raise instead of skipping a request that cannot be applied.

    Returns:
        (widths, skipped): {root: new width}, [(what, reason)].
    """
    groups = ctx.groups
    widths, skipped = {}, []
    if widen is None:
        return widths, skipped
    if isinstance(widen, bool) or not isinstance(widen, (int, float, dict)):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 (e.g. 1.5) or a dict "
            f"{{layer name: width}}. Received: widen={widen!r} "
            f"({type(widen).__name__}).")
    if isinstance(widen, dict):
        return _resolve_per_layer(ctx, widen, strict)
    if not math.isfinite(widen) or widen < 1:
        raise errors.PlanError(
            f"Expected widen >= 1: Net2WiderNet only adds units. Received: "
            f"widen={widen!r}. Fix: pass a factor such as 1.5 or 2.0.")
    for root in groups.roots():
        old = groups.widths[root]
        if groups.is_frozen(root) or root not in _grown_roots(ctx):
            continue
        new = math.ceil(old * widen - 1e-9)
        ok, reason = _fits_blocks(ctx, root, old, new)
        if not ok:
            name = _group_name(ctx, root)
            if strict:  # a group that can grow, only not by this factor
                raise errors.FrozenGroupError(
                    f"Expected every growable group to take widen={widen!r} exactly. "
                    f"Received: group {name!r} of width {old}, but {reason}. Fix: use an "
                    f"integer factor such as {math.ceil(widen):.1f}, or strict=False to "
                    f"keep this group's width with a note in the report.")
            skipped.append((name, reason))
            continue
        if new > old:
            widths[root] = new
    return widths, skipped


def _grown_roots(ctx):
    """Roots of groups that a global factor grows: those some layer produces
    (others are inputs etc.) and the inner widths not kept for requests."""
    if ctx not in _GROWN_ROOTS:  # once per analysis, kept off the Context
        inner = [a for atoms in ctx.inner_atoms.values() for a in atoms.values()
                 if a not in ctx.on_request]
        _GROWN_ROOTS[ctx] = {ctx.groups.find(leaf)
                             for a in list(ctx.producer_atoms.values()) + inner
                             for leaf in ctx.groups.leaves(a)}
    return _GROWN_ROOTS[ctx]


_GROWN_ROOTS = weakref.WeakKeyDictionary()  # Context -> roots (_grown_roots)


def _fits_blocks(ctx, root, old, new):
    blocks, reason = ctx.groups.blocks(root)
    if blocks is None or new % old == 0 or (blocks == 1 and root in ctx.pad_kinds):
        return True, None
    why = ctx.pad_reasons.get(root)
    return False, (f"{reason}: width {old} -> {new} is not a whole multiple of {old}" +
                   (f", and it cannot be padded: {why}" if why else ""))


def _group_name(ctx, root):
    names = [p for a, ps in ctx.groups.producers.items()
             if ctx.groups.find(a) == root for p in ps]
    return names[0] if names else f"group{root}"


def _resolve_per_layer(ctx, widen, strict):
    groups = ctx.groups
    requests = _requests(ctx, widen)
    atom_of = {label: atom for label, _, atom, _ in requests}
    shown = {label: text for label, text, _, _ in requests}
    widths, asked, skipped = {}, {}, []
    for name, text, atom, target in requests:
        old = groups.widths[atom]
        new = _target_width(name, text, target, old)
        # A split group grows run by run, each by the factor asked for.
        runs = [(groups.find(leaf), groups.widths[leaf],
                 math.ceil(groups.widths[leaf] * new / old - 1e-9))
                for leaf in groups.leaves(atom)]
        for root, run_old, run_new in runs:
            if root in asked and asked[root][1] != run_new:
                other = asked[root][0]
                via = groups.coupling_path(atom, atom_of[other])
                raise errors.PlanError(
                    f"Expected one width for layers that must grow together. Received: "
                    f"widen={{{shown[other]}, {text}}}, but {other!r} "
                    f"and {name!r} are coupled through "
                    f"{', '.join(repr(v) for v in via) or 'the graph'}. "
                    f"Fix: give them the same width, or name only one of them.")
            asked[root] = (name, run_new)
        if new == old:
            continue  # Nothing to apply, but layers coupled to it must agree.
        why = None
        for root, run_old, run_new in runs:
            reasons = groups.frozen_reasons(root)
            ok, block_reason = _fits_blocks(ctx, root, run_old, run_new)
            if reasons or not ok:
                why = reasons[0] if reasons else block_reason
                break
        if why is not None:
            if strict:
                raise errors.FrozenGroupError(
                    f"Expected a layer whose width can grow exactly. Received: "
                    f"widen={{{_shown(name, new)}}}, but the group of {name!r} is kept at "
                    f"width {old} because {why}. Fix: drop {name!r} from widen, or pass "
                    f"strict=False to skip it with a note in the report.")
            skipped.append((name, why))
            continue
        for root, _, run_new in runs:
            widths[root] = run_new
    return widths, skipped


def _requests(ctx, widen):
    """[(label, text as typed, atom, target)] of a per-layer request: a layer's
    name for the group it produces, "name:key" for a width inside it
    (`widen={name: {key: target}}`, see `Context.inner`)."""
    by_layer = {id(layer): atom for _, (layer, atom) in producers(ctx).items()}
    out = []
    for name, target in widen.items():
        layer = resolve_layer(ctx.graph, name, "widen")
        inner = ctx.inner_atoms.get(id(layer), {})
        keys = sorted(inner)
        if isinstance(target, dict):
            if not inner or not target:
                raise errors.PlanError(
                    f"Expected widen={{name: {{key: width}}}} to name widths inside a layer "
                    f"(attention heads, key_dim, ...). Received: widen={{{name!r}: {target!r}}} "
                    f"for layer {name!r} of class {type(layer).__name__}"
                    + (f", whose inner widths are {keys}" if inner else ", which has none")
                    + ". Fix: " + (f"e.g. widen={{{name!r}: {{{keys[0]!r}: ...}}}}." if inner
                                   else f"give its width alone, e.g. widen={{{name!r}: 2.0}}."))
            for key, value in target.items():
                if key not in inner:
                    raise errors.PlanError(
                        f"Expected the inner widths of layer {name!r} ({type(layer).__name__}) "
                        f"to be among {keys}. Received: widen={{{name!r}: {{{key!r}: "
                        f"{value!r}}}}}. Fix: use one of {keys}.")
                out.append((f"{name}:{key}", f"{name!r}: {{{key!r}: {value!r}}}",
                            inner[key], value))
            continue
        if id(layer) not in by_layer:
            can = sorted(producers(ctx))
            if inner:
                raise errors.PlanError(
                    f"Expected widen to name a layer that produces channels, or the widths "
                    f"inside one. Received: widen={{{name!r}: {target!r}}} for layer {name!r} "
                    f"of class {type(layer).__name__}, whose output follows its input's "
                    f"width and whose own widths are {keys}. Fix: e.g. "
                    f"widen={{{name!r}: {{{keys[0]!r}: {target!r}}}}}.")
            raise errors.PlanError(
                f"Expected widen to name a layer that produces channels (Dense, Conv*, "
                f"SeparableConv*, Embedding). Received: widen={{{name!r}: {target!r}}} for "
                f"layer {name!r} of class {type(layer).__name__}. Fix: name one of "
                f"{can[:12]}{' ...' if len(can) > 12 else ''}.")
        out.append((name, f"{name!r}: {target!r}", by_layer[id(layer)], target))
    return out


def _shown(label, value):
    """`label: value` as typed in widen= (inner widths as {name: {key: value}})."""
    name, _, key = label.rpartition(":")
    if name:
        return f"{name!r}: {{{key!r}: {value!r}}}"
    return f"{label!r}: {value!r}"


def _target_width(name, text, target, old):
    what = f"width {name.rpartition(':')[2]!r} of layer {name.rpartition(':')[0]!r}" \
        if ":" in name else f"layer {name!r}"
    if isinstance(target, bool) or not isinstance(target, (int, float)) or \
            not math.isfinite(target):
        raise errors.PlanError(
            f"Expected a width (int) or a finite factor (float) for {what}. "
            f"Received: widen={{{text}}}.")
    new = target if isinstance(target, int) else math.ceil(old * target - 1e-9)
    if new < old:
        raise errors.PlanError(
            f"Expected a width >= the current width {old} of {what}: Net2WiderNet "
            f"only adds units. Received: widen={{{text}}}. Fix: ask for "
            f"{old} or more.")
    return int(new)
