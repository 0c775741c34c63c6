"""The public pipeline: graph -> channel groups -> plan -> make the student ->
write weights -> report -> verify, one for every model; how the student is
made is the one step that differs (`keras_net2net.makers`)."""

import math

import numpy as np

from keras_net2net import errors
from keras_net2net import makers
from keras_net2net import plan as plan_lib
from keras_net2net import report as report_lib
from keras_net2net import verify as verify_lib

_MAPPINGS = ("random", "round_robin")
_NOISE_MODES = ("balanced", "additive")


def expand_model(model, widen=None, deepen=None, *, noise=0.0, noise_mode="balanced",
                 mapping="random", seed=None, data=None, verify=True, verify_data=None,
                 tolerance=None, strict=False, mappings=None, return_report=False,
                 inline_custom_layers=True, new_units="copy", split="equal"):
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
        new_units: "copy" (Net2WiderNet: a new unit copies a unit's incoming
            weights, and the copies share its outgoing weights) or "fresh":
            in groups whose units are read only by weights (Dense, Conv and
            EinsumDense kernels, attention's output over heads: an FFN's
            hidden units, attention heads), new units get freshly drawn
            incoming weights (normal, at the RMS of the teacher's weight;
            biases zero) and zero outgoing weights, while each old unit keeps
            its outgoing weights whole: exact, and no unit is a duplicate.
            Groups under a norm (a residual stream under LayerNorm), padded
            ones and ones with other readers keep copies. No
            symmetry-breaking noise is added on fresh axes.
        split: how the outgoing weights of a unit's copies share the
            teacher's: "equal" (1/k each, Net2WiderNet) or "random"
            (LEMON-like: proportions drawn per unit and per weight, uniform on
            the simplex, e.g. alpha, 1 - alpha for two copies): exact, and
            the copies' outgoing rows differ from the start. Plain divided
            axes only (not a tied embedding's, not a norm's).

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
    _check_choice("new_units", new_units, NEW_UNITS)
    _check_choice("split", split, SPLITS)
    request = makers.Request(widen, deepen, noise, noise_mode, mapping, seed, data, verify,
                             verify_data, tolerance, strict, mappings, inline_custom_layers,
                             new_units=new_units, split=split)
    maker = makers.maker_for(model)  # clone-based, or a registered one (keras_hub)
    growth = maker.plan(model, request)  # analyse -> channel groups -> plan
    growth.student = maker.make(growth)  # make the student, write its weights
    report = maker.report(growth)
    report.verification = verify_lib.exactness(noise, noise_mode, growth.insertions)
    if verify:
        checks = maker.verification(growth)
        twin = checks.pop("twin")
        second_look = None if twin is None else (twin, _regrow(request, report))
        verify_lib.check(model, growth.student, report, tolerance=tolerance,
                         second_look=second_look, **checks)
    return (growth.student, report) if return_report else growth.student


def _regrow(request, report):
    """The same growth of a float64 copy of the teacher (the second look)."""
    r = request

    def regrow(twin):
        return expand_model(twin, r.widen, r.deepen, noise=r.noise, noise_mode=r.noise_mode,
                            mapping=r.mapping, seed=r.seed, data=r.data, verify=False,
                            strict=r.strict, mappings=report.mappings() or r.mappings,
                            inline_custom_layers=r.inline_custom_layers,
                            new_units=r.new_units, split=r.split)
    return regrow


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
    ctx, inlining = makers.maker_for(model).explain(model, inline_custom_layers)
    the_plan = plan_lib.Plan(ctx, {}, "round_robin", 0)
    report = report_lib.assemble(ctx, the_plan, [], [], model, None, {})
    report.inlined = inlining.inlined
    report.params_after = report.params_before
    report.explained = True
    return report


NEW_UNITS = ("copy", "fresh")
SPLITS = ("equal", "random")


def _check_choice(name, value, allowed):
    """A typed error naming the option, the value and the choices."""
    if not isinstance(value, str) or value not in allowed:
        raise errors.PlanError(
            f"Expected {name} in {allowed}. Received: {name}={value!r}. Pass one of "
            f"{', '.join(repr(a) for a in allowed)}.")


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
