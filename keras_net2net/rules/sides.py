"""Channel groups on more than one axis of one tensor (issue 25).

An MLP-Mixer's token mixer transposes its stream `(B, P, C) -> (B, C, P)` so
that a Dense acts on the patch axis: the Dense's units are a group on the last
axis while the stream's channels, untouched, sit on axis 1 of the same tensor.
Each tensor therefore has its *primary* layout (`Context.layouts`, what every
rule reads) and possibly *side* layouts on other axes (`Context.sides`).

A side layout is exact to carry through a call that acts on each position of
its axis alone and keeps that axis where it is: a Dense (it mixes the last
axis only), an activation, a norm over other axes. `before` shows such a rule
the layout on the axis it reads as the primary (the stream's channels, moved
aside, are not frozen as "read as a non-channel axis"), `after` hands the
others on to the output. Any other rule that reads a tensor with sides keeps
their groups at their width, with the reason. Rules that move axes
(transpose, swapaxes, moveaxis, Permute, expand_dims, squeeze) and merges
(element-wise, Concatenate) handle sides themselves (`handles_sides`).

Groups that travel as a side cannot take pads (`keras_net2net.padding` reads
the primary layouts only), so `forbid_pads` keeps them at whole multiples.
"""

from keras_net2net.rules import channelwise
from keras_net2net.rules import mixing
from keras_net2net.rules.base import NOT_ELEMENTWISE
from keras_net2net.rules.base import activation_name


def of(ctx, key):
    """Side layouts of tensor `key` (a tuple, maybe empty)."""
    return ctx.sides.get(key, ())


def layouts(ctx, key):
    """Every layout of tensor `key`: the primary (if any) and its sides."""
    primary = ctx.layouts.get(key)
    return ([primary] if primary is not None else []) + list(of(ctx, key))


def _live(ctx, layout):
    return not all(ctx.groups.is_frozen(s.atom) for s in layout.segments)


def settle(ctx, key, candidates):
    """Stores `candidates` (layouts on distinct axes) as tensor `key`'s
    layouts: the one on the last axis is the primary (channels_last, what
    Dense and norms read), else the first; sides kept at their width are
    dropped (an axis with no layout keeps its size, which is the same)."""
    candidates = [c for c in candidates if c is not None]
    rank = ctx.rank(key)
    primary = next((c for c in candidates if c.axis == rank - 1), None)
    if primary is None and candidates:
        primary = next((c for c in candidates if _live(ctx, c)), candidates[0])
    ctx.layouts[key] = primary
    rest = tuple(c for c in candidates if c is not primary and _live(ctx, c))
    if rest:
        ctx.sides[key] = rest
    else:
        ctx.sides.pop(key, None)


def freeze(ctx, call, layouts_, why):
    name = type(call.op).__name__
    for layout in layouts_:
        ctx.groups.freeze_layout(layout, f"{name} {call.path!r} {why.format(axis=layout.axis)}")


_NOT_ALONE = ("reads a tensor whose axis {axis} also carries channels, and does not act on "
              "each position of that axis alone")


def _reads(ctx, call, rule):
    """Axes a per-position rule reads (set), or None for any other rule."""
    if len(call.inputs) != 1 or len(call.outputs) != 1:
        return None
    rank = ctx.rank(call.inputs[0])
    if isinstance(rule, mixing.DenseRule):
        return {rank - 1}
    if isinstance(rule, channelwise.PassThroughRule):
        name = activation_name(getattr(call.op, "activation", None))
        return {rank - 1} if name in NOT_ELEMENTWISE else set()
    if isinstance(rule, (channelwise.LayerNormRule, channelwise.BatchNormRule,
                         channelwise.AcrossAxisRule)):
        # keras_hub's RMS norms (LlamaLayerNorm, T5LayerNorm, ...) have no
        # `axis`: they normalise over the last one.
        return set(channelwise.normalize_axes(getattr(call.op, "axis", -1), rank))
    return None


def before(ctx, call, rule):
    """Shows `rule` the layout on the axis it reads; returns what `after`
    needs (None when no input has sides and nothing is moved aside)."""
    if getattr(rule, "handles_sides", False):
        return None
    reads = _reads(ctx, call, rule) if rule is not None else None
    held = []
    for key in dict.fromkeys(call.inputs):
        primary, extra = ctx.layouts.get(key), list(of(ctx, key))
        if reads is None:
            if extra:
                held.append((key, primary, extra, None))
            continue
        shown = primary
        if primary is not None and reads and primary.axis not in reads:
            extra, shown = [primary] + extra, None
        if shown is None and len(reads) == 1:
            shown = next((l for l in extra if l.axis in reads), None)
            extra = [l for l in extra if l is not shown]
        if extra or shown is not primary:
            ctx.layouts[key] = shown
            held.append((key, primary, extra, reads))
    return held or None


def after(ctx, call, held, barriers_before):
    """Restores the inputs' primaries and hands the moved-aside layouts to the
    output where the rule let them pass; freezes them elsewhere."""
    if not held:
        return
    failed = len(ctx.barriers) > barriers_before
    for key, primary, extra, reads in held:
        ctx.layouts[key] = primary
        if reads is None or failed:
            freeze(ctx, call, extra, _NOT_ALONE)
            continue
        out = call.outputs[0]
        in_shape, out_shape = ctx.shape(key), ctx.shape(out)
        current = ctx.layouts.get(out)
        passed = []
        for layout in extra:
            a = layout.axis
            if len(in_shape) != len(out_shape) or in_shape[a] != out_shape[a] or \
                    a in reads or (current is not None and current.axis == a):
                freeze(ctx, call, [layout], _NOT_ALONE)
                continue
            passed.append(layout)
        settle(ctx, out, [current] + passed + list(of(ctx, out)))


def moved(ctx, call, axis_map, why="removes axis {axis}, which carries channels"):
    """Moves every layout of the first input by `axis_map(axis) -> new axis
    or None` onto the first output. A layout whose axis goes away keeps its
    width; with nothing left to follow, the call is a barrier (as before
    sides existed)."""
    key, out = call.inputs[0], call.outputs[0]
    found = layouts(ctx, key)
    kept = [layout.moved(axis_map(layout.axis)) for layout in found
            if axis_map(layout.axis) is not None]
    if found and not kept:
        ctx.barrier(call, "it removes the channel axis")
        freeze(ctx, call, of(ctx, key), why)
        return
    freeze(ctx, call, [l for l in found if axis_map(l.axis) is None], why)
    settle(ctx, out, kept)


def forbid_pads(ctx):
    """Groups seen as a side anywhere keep whole multiples (no pads)."""
    roots = {ctx.groups.find(leaf) for extra in ctx.sides.values() for layout in extra
             for s in layout.segments for leaf in ctx.groups.leaves(s.atom)}
    for root in roots & set(ctx.pad_kinds):
        del ctx.pad_kinds[root]
        ctx.pad_reasons[root] = ("its channels also travel on another axis of a tensor "
                                 "(transposed), where pads are not followed")
