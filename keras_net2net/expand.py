"""The public pipeline: graph -> channel groups -> plan -> rebuild -> verify."""

import math
import warnings

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import analysis
from keras_net2net import deepen as deepen_lib
from keras_net2net import errors
from keras_net2net import graph as graph_lib
from keras_net2net import inline as inline_lib
from keras_net2net import optimizer_state
from keras_net2net import options as options_lib
from keras_net2net import padding
from keras_net2net import plan as plan_lib
from keras_net2net import rebuild
from keras_net2net import rules
from keras_net2net import spans
from keras_net2net import verify as verify_lib
from keras_net2net import report as report_lib

_MAPPINGS = ("random", "round_robin")
_NOISE_MODES = ("balanced", "additive")


def expand_model(model, widen=None, deepen=None, *, noise=0.0, noise_mode="balanced",
                 mapping="random", seed=None, data=None, verify=True, verify_data=None,
                 tolerance=None, strict=False, mappings=None, return_report=False,
                 inline_custom_layers=True):
    """Grows a Keras model without changing what it computes (Net2Net).

    Widening copies units of each channel group and divides the weights that
    read the copies by the copy count (Net2WiderNet); deepening inserts
    layers initialised to the identity, or residual blocks whose last scale
    is zero (Net2DeeperNet). Layers that must grow together (residual Adds,
    Concatenates, BatchNorms, Flatten heads, ...) are found from the graph.
    The teacher is never modified.

    Args:
        model: a Functional or built Sequential `keras.Model`.
        widen: None; a factor >= 1 applied to every group that can grow (widths
            rounded up); or {layer name: new width (int) or factor (float)}.
        deepen: None; a list of Dense/Conv/DepthwiseConv/SeparableConv layer
            names (one identity layer after each); or {name: count | "identity"
            | "residual"}; a key (first, last) names a span of residual blocks,
            repeated count times (or "block": once) after `last`, each copy
            starting as the identity (`keras_net2net.spans`), or "stack":
            one copy with the span's trained weights (G_stack), which is
            not function-preserving (the report says `exact: False`).
        noise: std of symmetry-breaking noise relative to each rewritten weight
            tensor's std. 0 gives the exact Net2Net transform. It also
            reaches the zeroed last writers of block copies: zero-sum over
            the copies of each unit they read, so the copies start exact and
            get different gradients.
        noise_mode: "balanced" (zero-sum over the copies of each unit: the
            function stays exact) or "additive" (the paper's: not exact).
        mapping: "random" (extra units copy random units) or "round_robin".
        seed: seed of the mapping and noise.
        data: optional input batch (array or list of arrays) to estimate the
            statistics of inserted BatchNormalization layers.
        verify: compare teacher and student on a probe batch and raise
            `VerificationError` if they differ by more than `tolerance`, or
            by more than rounding explains and the same growth of a float64
            copy of the teacher is not exact to 1e-9 (a change of function).
        verify_data: inputs for the verification (default: random inputs of
            the model's input specs).
        tolerance: max relative error max |d| / max |y| that rounding in the
            compute dtype may cause (default 1e-4 for float32, 2e-2 for
            float16, 1e-1 for bfloat16). It does not excuse a change of
            function: errors above `keras_net2net.verify.ROUNDING` are
            rechecked in float64 whatever it is.
        strict: raise `FrozenGroupError` when a width asked for cannot be
            applied exactly, instead of skipping it with a note.
        mappings: {group name: mapping} from `ExpansionReport.mappings()` to
            replay an earlier growth exactly.
        return_report: also return the `ExpansionReport`.
        inline_custom_layers: replace each custom `Layer` subclass whose
            `call` is built from Keras layers and `keras.ops` by the plain
            Keras subgraph traced from it (a nested functional model of the
            same name holding its sublayers, `keras_net2net.inline`), so that
            its channels grow. The student's layer classes then differ from
            the teacher's. Custom layers that cannot be traced are carried as
            they are, with the reason in the report. False carries them all.

    Returns:
        The student `keras.Model`, or `(student, report)` if `return_report`.

    Raises:
        UnsupportedModelError: subclassed or unbuilt models.
        PlanError: invalid widen/deepen requests (with the layer named).
        FrozenGroupError: `strict=True` and a requested width is not exact.
        VerificationError: the student differs from the teacher.

    Example:

    ```python
    import keras, keras_net2net as n2n
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Flatten()(x)
    teacher = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    student, report = n2n.expand_model(teacher, widen=2.0, deepen=["conv1"],
                                       seed=0, return_report=True)
    assert report.max_relative_error < 1e-5
    ```
    """
    _check_options(mapping, noise, noise_mode, tolerance, seed)
    hub = _hub()
    if hub is not None and hub.handles(model):
        if data is not None or mappings:
            raise errors.PlanError(
                f"Expected no data= or mappings= for a keras_hub model (its blocks insert no "
                f"BatchNorm, and replays are for plain models). Received: "
                f"{'data=' if data is not None else 'mappings='} for "
                f"{type(model).__name__}. Fix: drop it.")
        return hub.grow(model, widen, deepen, noise=noise, noise_mode=noise_mode,
                        mapping=mapping, seed=seed, verify=verify, verify_data=verify_data,
                        tolerance=tolerance, return_report=return_report)
    ctx = analysis.analyze(model)
    if data is not None:
        verify_lib.check_inputs(ctx, _as_inputs(data), "data")
    if verify_data is not None:
        verify_lib.check_inputs(ctx, _as_inputs(verify_data), "verify_data")
    elif verify:
        verify_lib.check_probe(ctx)
    chosen = verify_data if verify_data is not None else data
    ctx, inlining = _inline(model, ctx, inline_custom_layers,
                            None if chosen is None else _as_inputs(chosen))
    widths, skipped = plan_lib.resolve_widths(ctx, widen, strict)
    insertions = deepen_lib.plan_insertions(ctx, deepen, spans.plan_span)
    options = (widen, deepen)
    if any(map(_empty, options)) and all(o is None or _empty(o) for o in options) \
            and not mappings:
        raise errors.PlanError(
            f"Expected at least one layer to widen or deepen. Received: widen={widen!r} "
            f"and deepen={deepen!r}. Fix: name layers, e.g. widen={{'conv1': 32}}.")
    replay = _replay_mappings(ctx, mappings)
    if replay:
        widths.update({root: len(g) for root, g in replay.items()})
    the_plan = plan_lib.Plan(ctx, widths, mapping, seed, replay)
    builder = rebuild.Rebuilder(ctx, the_plan, insertions, noise, noise_mode, seed)
    student = builder.build()
    # Kept beside the student, not on it, for expand_optimizer.
    optimizer_state.record(student, builder.weight_map, insertions)
    if data is not None:
        _bn_statistics(student, insertions, data)
    report = report_lib.assemble(ctx, the_plan, insertions, skipped, model, student,
                     dict(widen=widen, deepen=options_lib.jsonable(deepen), noise=noise,
                          noise_mode=noise_mode, mapping=mapping, seed=seed, strict=strict,
                          inline_custom_layers=inline_custom_layers))
    report.verification = _exactness(noise, noise_mode, insertions)
    report.inlined = inlining.inlined
    _check_student_runs(ctx, student, verify_data, data)
    if verify:
        def regrow(twin):  # the same growth of a float64 copy of the teacher
            return expand_model(twin, widen, deepen, noise=noise, noise_mode=noise_mode,
                                mapping=mapping, seed=seed, data=data, verify=False,
                                strict=strict, mappings=report.mappings() or mappings,
                                inline_custom_layers=inline_custom_layers)

        _verify(ctx, model, student, report, verify_data, data, tolerance, regrow)
    return (student, report) if return_report else student


def explain_model(model, inline_custom_layers=True):
    """Explains how a model would grow, without growing it.

    Returns an `ExpansionReport` with no growth applied: its `groups` list
    which layers each channel group couples, whether it can widen and, if
    not, why; `barriers` lists layers growth cannot pass through; `inlined`
    the custom layers that would grow as plain Keras subgraphs.

    Args:
        model: a Functional or Sequential `keras.Model`.
        inline_custom_layers: as for `expand_model`.

    Example:

    ```python
    print(n2n.explain_model(model))
    ```
    """
    hub = _hub()
    # A keras_hub backbone grows its outputs (same class out); a task keeps them.
    handled = hub is not None and hub.handles(model)
    # Read-only: a nested subclassed model is listed as a barrier, not refused.
    ctx = analysis.analyze(model, grow_outputs=handled and not hasattr(model, "backbone"),
                           opaque_subclassed=True)
    inlining = inline_lib.Inlining(model)
    if not handled:
        ctx, inlining = _inline(model, ctx, inline_custom_layers, None,
                                opaque_subclassed=True)
    the_plan = plan_lib.Plan(ctx, {}, "round_robin", 0)
    report = report_lib.assemble(ctx, the_plan, [], [], model, None, {})
    report.inlined = inlining.inlined
    report.params_after = report.params_before
    report.explained = True
    return report


def _inline(model, ctx, enabled, inputs, opaque_subclassed=False):
    """The analysis of the model the pipeline reads: `model` with its custom
    layers inlined where they can be (`keras_net2net.inline`), or `ctx` as it
    is. Custom layers that stay are barriers whose reason says why."""
    if not enabled or not any(inline_lib.is_custom_layer(c.op) for c in ctx.graph.calls):
        return ctx, inline_lib.Inlining(model)
    inlining = inline_lib.inline_custom_layers(model, inputs)
    reasons = {layer_id: f"a custom layer that was not inlined: {why}; it keeps the width of "
                         f"what it reads (or register a rule with keras_net2net.register_rule)"
               for layer_id, why in inlining.kept.items()}
    return (analysis.analyze(inlining.model, reasons=reasons,
                             opaque_subclassed=opaque_subclassed), inlining)


def _hub():
    """keras_net2net.hub's backbone module once keras_hub is imported (its
    layer rules registered), else None: the core never imports keras_hub."""
    from keras_net2net import hub

    return hub.activate()


def _empty(option):
    return isinstance(option, (dict, list, tuple)) and not option


def _number(x):
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
        and math.isfinite(x)


def _check_options(mapping, noise, noise_mode, tolerance, seed):
    if mapping not in _MAPPINGS:
        raise errors.PlanError(f"Expected mapping in {_MAPPINGS}. Received: mapping={mapping!r}.")
    if noise_mode not in _NOISE_MODES:
        raise errors.PlanError(
            f"Expected noise_mode in {_NOISE_MODES}. Received: noise_mode={noise_mode!r}.")
    # NaN compares False with everything: it would pass `noise < 0` and turn
    # every rewritten weight into NaN, which a NaN error then fails to flag.
    if not _number(noise) or noise < 0:
        raise errors.PlanError(f"Expected noise >= 0. Received: noise={noise!r}.")
    if tolerance is not None and not (_number(tolerance) and tolerance > 0):
        raise errors.PlanError(f"Expected tolerance > 0. Received: tolerance={tolerance!r}.")
    if seed is not None and (isinstance(seed, bool) or
                             not isinstance(seed, (int, np.integer)) or seed < 0):
        raise errors.PlanError(
            f"Expected seed to be None or an integer >= 0. Received: seed={seed!r}.")


def _replay_mappings(ctx, mappings):
    if mappings is None or _empty(mappings):
        return {}
    if not isinstance(mappings, dict):
        raise errors.PlanError(
            f"Expected mappings to be a dict {{group name: list of unit indices}}, as "
            f"ExpansionReport.mappings() returns. Received: mappings={mappings!r:.80} "
            f"({type(mappings).__name__}).")
    groups = ctx.groups
    names = {p: groups.find(a) for a, paths in groups.producers.items()
             if a not in groups.parts for p in paths}
    out = {}
    for name, g in mappings.items():
        if name not in names:
            raise errors.PlanError(
                f"Expected mappings keyed by group names of this model. Received: a mapping "
                f"for {name!r}, which produces no group here. Fix: replay on the same teacher.")
        root, g = names[name], _unit_indices(name, g)
        old = ctx.groups.widths[root]
        # Pads (-1, keras_net2net.padding) only where the group can take them.
        low = padding.PAD if root in ctx.pad_kinds else 0
        if ctx.groups.is_frozen(root) or g.min() < low or g.max() >= old or \
                not np.array_equal(np.unique(g[g >= 0]), np.arange(old)):
            raise errors.PlanError(
                f"Expected a mapping onto all {old} units of group {name!r} that can grow. "
                f"Received: a mapping of length {len(g)} with values in "
                f"[{g.min()}, {g.max()}]. Fix: replay on the same teacher.")
        out[root] = g
    return out


def _unit_indices(name, g):
    try:
        array = np.asarray(g)
    except (TypeError, ValueError):  # ragged or odd objects
        array = np.zeros((0, 0))
    if array.ndim != 1 or not array.size or not np.issubdtype(array.dtype, np.integer):
        raise errors.PlanError(
            f"Expected the mapping of group {name!r} to be a list of unit indices. "
            f"Received: mappings={{{name!r}: {g!r:.80}}}. Fix: pass report.mappings() of "
            f"an earlier growth of the same teacher.")
    return array.astype(np.int64)


def _as_inputs(data):
    if isinstance(data, dict):  # dict inputs: flattened in key order, as Keras does
        return [np.asarray(d) for d in keras.tree.flatten(data)]
    return [np.asarray(d) for d in data] if isinstance(data, (list, tuple)) else [np.asarray(data)]


def _bn_statistics(student, insertions, data):
    """Sets inserted identity BatchNorms to the population statistics of what
    they will see in training, so that training mode is close to the identity
    too. Inference mode is exact either way, up to rounding of order
    eps * |mean|: where the inference-mode values are far smaller than the
    training-mode mean (BatchNorms whose moving statistics were never
    trained), the inference-mode statistics are used instead, with a note."""
    inputs = _as_inputs(data)
    top_level = {id(l) for l in student.layers}
    for ins in insertions:
        bns = [b for b in ins.identity_bns if id(b) in top_level]
        if not bns:
            continue
        probe = keras.Model(_keras.inputs_struct(student), bns[0].input)
        feed = graph_lib.pack_inputs(probe, inputs)
        axis = bns[0].axis
        train = _channel_stats(probe, feed, axis, training=True)
        infer = _channel_stats(probe, feed, axis, training=False)
        stats = train
        if np.max(np.abs(train[0])) > 1e3 * (np.max(np.abs(infer[0])) + np.sqrt(np.max(infer[1]))):
            stats = infer
            ins.note = (ins.note + "; " if ins.note else "") + (
                "BatchNorm statistics from data in inference mode: the teacher's training-mode "
                "values are far larger, and using them would lose precision")
        for bn in bns:
            deepen_lib.set_identity(bn, stats)


def _channel_stats(probe, feed, axis, training):
    with verify_lib.preserved_state(probe):
        x = np.asarray(probe(feed, training=training), dtype=np.float64)
    reduce = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return x.mean(axis=reduce), x.var(axis=reduce)


def _check_student_runs(ctx, student, verify_data, data):
    """Calls the student once, so that a student that cannot run (a carried
    layer whose code fails on the student's tensors) fails here, typed, and
    not on the user's first call, whatever `verify` says."""
    chosen = verify_data if verify_data is not None else data
    if chosen is not None:
        inputs = _as_inputs(chosen)
    else:
        try:
            inputs = verify_lib.probe_inputs(ctx)
        except errors.UnsupportedModelError:
            return  # Inputs we cannot draw (strings): nothing to call it on.
    try:
        with verify_lib.preserved_state(student):
            student(graph_lib.pack_inputs(student, inputs), training=False)
    except Exception as e:  # noqa: BLE001 - any failure of user code, reported typed
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise errors.UnsupportedModelError(
            f"Expected the student to run on the teacher's inputs. Received: "
            f"{type(e).__name__} when calling it: {lines[0][:300] if lines else ''}. A layer "
            f"carried over from the teacher fails on the student's tensors. Fix: make that "
            f"layer serialisable (get_config) or register a rule for it with "
            f"keras_net2net.register_rule. The teacher is unchanged.") from e


def _exactness(noise, noise_mode, insertions):
    """{"exact": whether the student is meant to compute the teacher's
    function} and, where not, {"not_exact": why}."""
    why = []
    if noise and noise_mode == "additive":
        why.append(f"additive noise {noise:g}")
    stacked = [i.anchor.name for i in insertions if getattr(i, "stack", False)]
    if stacked:
        why.append(f"stacked spans after {', '.join(stacked)} (G_stack: copies of trained "
                   f"blocks)")
    return {"exact": not why, **({"not_exact": "; ".join(why)} if why else {})}


def _verify(ctx, teacher, student, report, verify_data, data, tolerance, regrow):
    dtype = verify_lib.compute_dtype(teacher)
    tol = tolerance or verify_lib.TOLERANCES.get(dtype, 1e-4)
    inputs = _as_inputs(verify_data) if verify_data is not None else verify_lib.probe_inputs(ctx)
    names = ctx.graph.output_names
    report.verification.update(dtype=dtype, tolerance=tol,
                               inference=verify_lib.compare(teacher, student, inputs, names))
    if data is not None:
        batch = _as_inputs(data)
        report.verification["training"] = verify_lib.compare(
            teacher, student, batch, names, training=True)
    # Additive noise and stacked spans (G_stack) change the function by
    # design: their difference is measured and reported, never held to `tol`.
    if not report.verification["exact"]:
        return
    error = report.max_relative_error
    if not error <= tol:  # NaN fails too
        raise errors.VerificationError(
            f"Expected the student to reproduce the teacher within relative error {tol:g} "
            f"({dtype}). Received: max |d|/max |y| = {error:.3g}. If the "
            f"teacher amplifies rounding (untrained BatchNorms, very deep nets), check in "
            f"float64 or pass a larger tolerance=; otherwise this is a bug in keras-net2net: "
            f"please report it with the model. The teacher is unchanged; verify=False "
            f"returns the student anyway.", report)
    if error > verify_lib.ROUNDING.get(dtype, 1e-6):
        # The model the pipeline read: with custom layers inlined, its float64
        # twin is made of plain layers, which a twin of the teacher's custom
        # layers (sublayers made in __init__ at the default dtype) is not.
        _second_look(ctx.graph.model, report, inputs, names, dtype, error, regrow)


def _second_look(teacher, report, inputs, names, dtype, error, regrow):
    """Within tolerance, but above what rounding explains: a change of
    function as small as 1e-4 hides there. The same growth, run on a float64
    copy of the teacher, must reproduce it to float64 precision."""
    try:
        twin = verify_lib.float64_twin(teacher)
        student64 = regrow(twin)
    except (verify_lib.CannotTwin, errors.Net2NetError) as e:
        note = (f"the {dtype} error {error:.3g} is above what rounding explains "
                f"({verify_lib.ROUNDING.get(dtype, 1e-6):g}), and a float64 copy to check it "
                f"could not be made: {e}")
        report.verification["float64_note"] = note
        warnings.warn(f"keras-net2net: {note}. Check the student on your data.", stacklevel=3)
        return
    rows = verify_lib.compare(twin, student64, inputs, names)
    report.verification["float64"] = rows
    error64 = verify_lib.max_relative(rows)
    if not error64 <= verify_lib.FLOAT64_TOLERANCE:  # NaN fails too
        raise errors.VerificationError(
            f"Expected the student to compute the teacher's function: an error above "
            f"{dtype} rounding ({verify_lib.ROUNDING.get(dtype, 1e-6):g}) must vanish in "
            f"float64. Received: max |d|/max |y| = {error:.3g} in {dtype}, and "
            f"{error64:.3g} (> {verify_lib.FLOAT64_TOLERANCE:g}) for the same growth of a float64 "
            f"copy of the teacher: the student computes another function, which tolerance= "
            f"does not excuse. This is a bug in keras-net2net (or a layer it copies wrongly): "
            f"please report it with the model. The teacher is unchanged; verify=False "
            f"returns the student anyway.", report)
