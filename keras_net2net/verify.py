"""Compares teacher and student outputs: max |Δ| and max |Δ| / max |y| per
output, never a signed sum that could cancel.

A tolerance loose enough for rounding is also loose enough for a small change
of function: `Dense(activation=ops.gelu)` copied as exact GELU moved a
student's outputs by 9.5e-5 relative, under float32's 1e-4. So the tolerance
is not the judge alone: an error above what the compute dtype's rounding
explains (`ROUNDING`) gets a second look in float64, where rounding is some
1e-16 and a construction that preserves the function is exact to
`FLOAT64_TOLERANCE` (`float64_twin`, `max_relative`).
"""

import contextlib
import warnings

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import report
from keras_net2net.graph import pack_inputs

# Default relative tolerance per compute dtype.
TOLERANCES = {"float32": 1e-4, "float64": 1e-9, "float16": 2e-2, "bfloat16": 1e-1}
# Relative errors that rounding in the compute dtype explains on typical
# models (a few ulps, amplified a little by depth); above them, float64 decides.
ROUNDING = {"float32": 1e-6, "float64": 1e-12, "float16": 1e-3, "bfloat16": 1e-2}
# What a function-preserving growth reproduces in float64: float64 rounding,
# and constants some backends round to float32 (an attention scale 1/sqrt(d)).
FLOAT64_TOLERANCE = 1e-9


class CannotTwin(Exception):
    """Internal: why a float64 copy of a model could not be made."""


def max_relative(rows):
    """The largest `max_rel` over `rows`, NaN if any is NaN: Python's `max`
    skips a NaN that is not first (`max([0.0, nan]) == 0.0`), and a NaN in one
    output must fail the whole comparison."""
    return report.nan_max(r["max_rel"] for r in rows)


def float64_twin(model):
    """The same model computing in float64, with the same weights.

    Every layer is re-created from its config with dtype float64 (layers whose
    compute dtype is not floating, lookups say, keep theirs), weights are
    copied, and what configs do not hold is carried (`carry.carry_state`).

    Args:
        model: a Functional or Sequential `keras.Model`.

    Returns:
        The float64 `keras.Model`.

    Raises:
        CannotTwin: with the reason, where a layer cannot be re-created or the
            weights do not line up.

    Example:

    ```python
    twin = float64_twin(teacher)
    assert twin.get_layer("fc1").kernel.dtype == "float64"
    ```
    """
    def clone(layer):
        if not isinstance(layer, keras.layers.Layer) or isinstance(layer, keras.Model):
            return layer  # keras.ops calls compute in their inputs' dtype
        floating = "float" in str(getattr(layer, "compute_dtype", ""))
        try:
            return carry.recreate(layer, (lambda c: {**c, "dtype": "float64"}) if floating
                                  else None)
        except carry.CannotRecreate as e:
            raise CannotTwin(f"layer {layer.name!r} ({type(layer).__name__}): {e}") from e

    try:
        twin = keras.models.clone_model(model, clone_function=clone, recursive=True)
    except CannotTwin:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of user code
        raise CannotTwin(f"cloning raised {type(e).__name__}: {str(e)[:200]}") from e
    olds, news = list(model.weights), list(twin.weights)
    if [tuple(v.shape) for v in olds] != [tuple(v.shape) for v in news]:
        raise CannotTwin("its weights do not line up with the teacher's")
    for old, new in zip(olds, news):
        new.assign(np.asarray(old.numpy()).astype(new.dtype))
    layers = [l for l in _keras.sublayers(model)]
    copies = [l for l in _keras.sublayers(twin)]
    if len(layers) == len(copies):
        for old, new in zip(layers, copies):
            if type(old) is type(new) and not isinstance(old, keras.Model):
                carry.carry_state(old, new)
    return twin


def compute_dtype(model):
    for layer in model.layers:
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and policy.compute_dtype in ("float16", "bfloat16"):
            return policy.compute_dtype
    return "float32"


def check_probe(ctx):
    """Raises unless random inputs can be drawn for every model input."""
    for tensor, key in zip(ctx.graph.model.inputs, ctx.graph.inputs):
        dtype = ctx.graph.dtypes[key]
        if not any(kind in dtype for kind in ("float", "int", "bool")):
            raise errors.UnsupportedModelError(
                f"Expected numeric model inputs to verify the student on random data. "
                f"Received: input {tensor.name!r} of dtype {dtype}. Fix: pass "
                f"verify_data= (a batch of real inputs), or verify=False.")


def check_inputs(ctx, arrays, option):
    """Raises unless `arrays` hold one non-empty batch per model input, each
    of that input's shape."""
    specs = [tuple(ctx.graph.shapes[key]) for key in ctx.graph.inputs]
    shapes = [tuple(np.shape(a)) for a in arrays]
    fits = len(shapes) == len(specs) and all(
        len(shape) == len(spec) and shape[0] > 0 and
        all(d is None or d == e for d, e in zip(spec[1:], shape[1:]))
        for shape, spec in zip(shapes, specs))
    if not fits:
        raise errors.PlanError(
            f"Expected {option} to hold one non-empty batch per model input, of shape"
            f"{'s' if len(specs) > 1 else ''} {specs if len(specs) > 1 else specs[0]}. Received: {option} of shape"
            f"{'s' if len(shapes) != 1 else ''} {shapes if len(shapes) != 1 else shapes[0]}. "
            f"Fix: pass e.g. x_train[:256] (a list of arrays for several inputs).")


def probe_inputs(ctx, batch=4, seed=0):
    """Random inputs matching the model's input specs (ints for Embeddings)."""
    check_probe(ctx)
    rng = np.random.default_rng(seed)
    graph = ctx.graph
    out = []
    for key in graph.inputs:
        # A static batch size (stateful RNNs) is the only one the model takes.
        shape = tuple((d or batch) if i == 0 else (d or 6)
                      for i, d in enumerate(graph.shapes[key]))
        dtype = graph.dtypes[key]
        if "int" in dtype:
            high = min([c.op.input_dim for c in graph.consumers.get(key, [])
                        if isinstance(c.op, keras.layers.Embedding)] or [2])
            out.append(rng.integers(0, high, size=shape).astype(dtype))
        else:
            out.append(rng.normal(size=shape).astype(dtype))
    return out


@contextlib.contextmanager
def preserved_state(*models):
    """Restores the state a call may update: BatchNorm moving statistics (in
    training mode) and the carried states of stateful RNNs, which Keras keeps
    in variables outside the model's weights."""
    saved = [[(v, v.numpy()) for v in list(m.non_trainable_variables) + _rnn_states(m)]
             for m in models]
    try:
        yield
    finally:
        for pairs in saved:
            for v, value in pairs:
                v.assign(value)


def _rnn_states(model):
    layers = _keras.sublayers(model)
    return [v for layer in layers if getattr(layer, "stateful", False)
            for v in keras.tree.flatten(getattr(layer, "states", None) or [])
            if isinstance(v, keras.Variable)]


def _as_list(x):
    return [np.asarray(t) for t in keras.tree.flatten(x)]


def call_model(model, inputs, training=False):
    """The default readout: `model` called on `inputs` (a list of arrays,
    one per model input, packed into the structure it was built with)."""
    return model(pack_inputs(model, inputs), training=training)


def compare(teacher, student, inputs, names, training=False, readout=None):
    """Per-output error figures of the student against the teacher, for
    every output: a NaN or inf the teacher does not have counts as an
    infinite error (see `max_relative`).

    A student whose outputs nest differently (one missing, one more, other
    keys) gets a first row with an infinite error: zipping the two would
    otherwise compare only the outputs they share.

    Args:
        teacher: the teacher model.
        student: the student model.
        inputs: the probe: a list of arrays for the default readout, or
            whatever `readout` takes.
        names: the output names, in flattened order.
        training: call both models in training mode.
        readout: None, or a function `(model, inputs, training)` returning
            the model's outputs on the probe in the teacher's layout (a
            keras_hub model takes its dict inputs as they are, and a grown
            backbone's outputs are read back through the plan's mapping).

    Returns:
        [{"output", "max_abs", "max_rel"}], one row per output.

    Example:

    ```python
    rows = compare(teacher, student, probe_inputs(ctx), ctx.graph.output_names)
    assert max_relative(rows) < 1e-5
    ```
    """
    readout = readout or call_model
    with preserved_state(teacher, student):
        y_tree = readout(teacher, inputs, training)
        z_tree = readout(student, inputs, training)
    ys, zs = _as_list(y_tree), _as_list(z_tree)
    rows = []
    if not _same_structure(y_tree, z_tree):
        rows.append({"output": "(all)", "max_abs": float("inf"), "max_rel": float("inf"),
                     "note": f"the student returns {len(zs)} output(s) nested as "
                             f"{_describe(z_tree)}; the teacher {len(ys)}, as {_describe(y_tree)}"})
    for name, y, z in zip(names, ys, zs):
        y, z = y.astype(np.float64), z.astype(np.float64)
        if y.shape != z.shape:
            rows.append({"output": name, "max_abs": float("inf"), "max_rel": float("inf"),
                         "note": f"shape {z.shape} != {y.shape}"})
            continue
        max_abs, scale = _max_abs_difference(y, z), _max_abs(y)
        rows.append({"output": name, "max_abs": max_abs,
                     "max_rel": max_abs / scale if scale > 0 else max_abs})
    return rows


def _same_structure(y, z):
    """Same number of outputs under the same keys; a list and a tuple match
    (`assert_same_paths`, where this Keras has it)."""
    if len(keras.tree.flatten(y)) != len(keras.tree.flatten(z)):
        return False
    check = getattr(keras.tree, "assert_same_paths", keras.tree.assert_same_structure)
    try:
        check(y, z)
    except (ValueError, TypeError):
        return False
    return True


def _describe(tree):
    return repr(keras.tree.map_structure(lambda t: "x", tree))


def _max_abs_difference(y, z):
    """max |y - z|, with a NaN or inf the teacher does not have counted as an
    infinite difference: NaN compares False with any tolerance and would
    otherwise pass for a perfect match."""
    if not y.size:
        return 0.0
    with np.errstate(invalid="ignore"):  # inf - inf
        same = (y == z) | (np.isnan(y) & np.isnan(z))
        diff = np.where(same, 0.0, np.abs(y - z))
    return float(np.max(np.where(np.isnan(diff), np.inf, diff)))


def _max_abs(y):
    finite = np.abs(y[np.isfinite(y)])
    return float(np.max(finite)) if finite.size else 0.0


def exactness(noise, noise_mode, insertions=()):
    """{"exact": whether the student is meant to compute the teacher's
    function} and, where not, {"not_exact": why}: additive noise and stacked
    spans (G_stack) change the function by design.

    Example:
    >>> exactness(0.1, "additive")
    {'exact': False, 'not_exact': 'additive noise 0.1'}
    """
    why = []
    if noise and noise_mode == "additive":
        why.append(f"additive noise {noise:g}")
    stacked = [i.anchor.name for i in insertions if getattr(i, "stack", False)]
    if stacked:
        why.append(f"stacked spans after {', '.join(stacked)} (G_stack: copies of trained "
                   f"blocks)")
    return {"exact": not why, **({"not_exact": "; ".join(why)} if why else {})}


def check(teacher, student, report, inputs, names, *, tolerance=None, training_inputs=None,
          readout=None, second_look=None):
    """Verifies a growth: compares teacher and student on every output and
    raises where the student does not compute the teacher's function.

    The rows go to `report.verification` ("inference", and "training" for
    `training_inputs`), beside its "exact" entry (`exactness`): a growth
    that is not meant to be exact is measured, never held to the tolerance.
    An error within tolerance but above what rounding explains gets a second
    look in float64 where `second_look` says how.

    Args:
        teacher: the teacher model.
        student: the student model.
        report: the growth's `ExpansionReport`; its `verification` holds
            "exact" already.
        inputs: the probe (see `compare`).
        names: the output names.
        tolerance: the relative tolerance, or None for the compute dtype's
            (`TOLERANCES`).
        training_inputs: None, or a batch to compare in training mode too.
        readout: as for `compare`.
        second_look: None, or `(model, regrow)`: the model to copy in
            float64 (`float64_twin`) and a function growing that copy the
            same way, returning the student.

    Raises:
        VerificationError: the student differs from the teacher, with the
            report.

    Example:

    ```python
    report.verification = exactness(0.0, "balanced")
    check(teacher, student, report, probe_inputs(ctx), ctx.graph.output_names)
    ```
    """
    dtype = compute_dtype(teacher)
    tol = tolerance or TOLERANCES.get(dtype, 1e-4)
    report.verification.update(dtype=dtype, tolerance=tol,
                               inference=compare(teacher, student, inputs, names,
                                                 readout=readout))
    if training_inputs is not None:
        report.verification["training"] = compare(
            teacher, student, training_inputs, names, training=True, readout=readout)
    # Additive noise and stacked spans (G_stack) change the function by
    # design: their difference is measured and reported, never held to `tol`.
    if not report.verification.get("exact", True):
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
    if second_look is not None and error > ROUNDING.get(dtype, 1e-6):
        _second_look(*second_look, report, inputs, names, dtype, error)


def _second_look(model, regrow, report, inputs, names, dtype, error):
    """Within tolerance, but above what rounding explains: a change of
    function as small as 1e-4 hides there. The same growth, run on a float64
    copy of the teacher, must reproduce it to float64 precision."""
    try:
        twin = float64_twin(model)
        student64 = regrow(twin)
    except (CannotTwin, errors.Net2NetError) as e:
        note = (f"the {dtype} error {error:.3g} is above what rounding explains "
                f"({ROUNDING.get(dtype, 1e-6):g}), and a float64 copy to check it "
                f"could not be made: {e}")
        report.verification["float64_note"] = note
        # As before the pipeline was shared: expand_model -> check -> here.
        warnings.warn(f"keras-net2net: {note}. Check the student on your data.", stacklevel=3)
        return
    rows = compare(twin, student64, inputs, names)
    report.verification["float64"] = rows
    error64 = max_relative(rows)
    if not error64 <= FLOAT64_TOLERANCE:  # NaN fails too
        raise errors.VerificationError(
            f"Expected the student to compute the teacher's function: an error above "
            f"{dtype} rounding ({ROUNDING.get(dtype, 1e-6):g}) must vanish in "
            f"float64. Received: max |d|/max |y| = {error:.3g} in {dtype}, and "
            f"{error64:.3g} (> {FLOAT64_TOLERANCE:g}) for the same growth of a float64 "
            f"copy of the teacher: the student computes another function, which tolerance= "
            f"does not excuse. This is a bug in keras-net2net (or a layer it copies wrongly): "
            f"please report it with the model. The teacher is unchanged; verify=False "
            f"returns the student anyway.", report)
