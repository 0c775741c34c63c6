"""Verification that catches small changes of function.

A float32 tolerance of 1e-4 let a student whose GELU had turned exact (from
tanh-approximate) pass with 9.5e-5. An error above float32 rounding now gets a
second look in float64, where only a change of function survives; and a NaN
in any output fails, whichever output it is in.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import rebuild
from keras_net2net import verify as verify_lib
from keras_net2net.report import ExpansionReport
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import probe

L = keras.layers


def gelu_mlp(scale):
    """tanh-approximate GELU on pre-activations of about `scale`: the exact
    GELU differs by up to ~4e-4 at |x| ~ 2, so `scale` sets how far a swap
    moves the outputs."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before in this worker
    inp = keras.Input((6,))
    x = L.Dense(8, activation=ops.gelu, name="mlp1")(inp)
    x = L.Dense(8, name="mlp2")(x)
    model = keras.Model(inp, L.Dense(3, name="logits")(x))
    model = randomize_state(model)
    mlp1 = model.get_layer("mlp1")
    mlp1.kernel.assign(mlp1.kernel.numpy() * scale)
    return model


def _swap_gelu(monkeypatch):
    """Forces the old bug: the student's GELU is the exact one."""
    build = rebuild.Rebuilder.build

    def build_with_exact_gelu(self):
        student = build(self)
        for layer in student._flatten_layers(include_self=False):
            if getattr(layer, "activation", None) is ops.gelu:
                layer.activation = keras.activations.gelu
        return student

    monkeypatch.setattr(rebuild.Rebuilder, "build", build_with_exact_gelu)


def test_a_change_of_function_under_the_tolerance_raises(monkeypatch):
    teacher = gelu_mlp(0.3)
    _swap_gelu(monkeypatch)
    with pytest.raises(errors.VerificationError) as info:
        n2n.expand_model(teacher, widen=2.0, seed=0)
    message = str(info.value)
    assert message.startswith("Expected the student to compute the teacher's function"), message
    report = info.value.report
    error = report.max_relative_error
    # The case the old check let pass: above rounding, under the tolerance.
    assert verify_lib.ROUNDING["float32"] < error < verify_lib.TOLERANCES["float32"], error
    error64 = verify_lib.max_relative(report.verification["float64"])
    assert error64 > 1e-6, error64  # the change itself, not rounding
    print(f"float32 error {error:.3g}, float64 error {error64:.3g}")


def test_the_same_swap_without_verify_is_returned_unchecked(monkeypatch):
    teacher = gelu_mlp(0.5)
    _swap_gelu(monkeypatch)
    student = n2n.expand_model(teacher, widen=2.0, seed=0, verify=False)
    assert student.get_layer("mlp1").activation is keras.activations.gelu


def amplifying_model():
    """Outputs that are the small difference of large values (a large bias,
    then a BatchNorm centred on it, as collapsed BatchNorms do): the rounding
    of the large values, ~1e-7 of them, is ~1e-5 of the outputs. float32
    errors above 1e-6 that the growth does not cause."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before in this worker
    inp = keras.Input((6,))
    x = L.Dense(9, activation="relu", name="fc1")(inp)
    x = L.Dense(7, name="fc2")(x)
    x = L.BatchNormalization(name="bn")(x)
    model = randomize_state(keras.Model(inp, L.Dense(3, name="logits")(x)))
    fc2 = model.get_layer("fc2")
    head = keras.Model(inp, fc2.output)
    y = np.asarray(head(probe(model)[0]))
    # An offset of ~500 times the spread: float32's rounding of it (6e-8
    # relative) is ~3e-5 of the spread, between 1e-6 and the 1e-4 tolerance.
    fc2.bias.assign(fc2.bias.numpy() + 500.0 * np.max(np.abs(y - y.mean(axis=0))))
    y = np.asarray(head(probe(model)[0]))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(y.mean(axis=0))
    bn.moving_variance.assign(y.var(axis=0))
    return model


def test_rounding_amplified_above_float32_level_passes_in_float64():
    teacher = amplifying_model()
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=3.0, seed=0, return_report=True)
    error = report.max_relative_error
    rows = report.verification.get("float64")
    print(f"float32 error {error:.3g}, float64 rows {rows}")
    assert error > verify_lib.ROUNDING["float32"], error  # the second look ran...
    assert verify_lib.max_relative(rows) <= verify_lib.FLOAT64_TOLERANCE  # ...and cleared it
    assert_preserved(teacher, student, x, rtol=verify_lib.TOLERANCES["float32"])


def test_max_relative_error_is_nan_when_any_output_is():
    rows = [{"output": "a", "max_abs": 0.0, "max_rel": 0.0},
            {"output": "b", "max_abs": float("nan"), "max_rel": float("nan")}]
    report = ExpansionReport(verification={"inference": rows})
    assert np.isnan(report.max_relative_error) and np.isnan(report.max_absolute_error)
    report = ExpansionReport(verification={"inference": rows[::-1]})
    assert np.isnan(report.max_relative_error)
    assert np.isnan(verify_lib.max_relative(rows))


def two_outputs():
    inp = keras.Input((5,))
    x = L.Dense(6, activation="relu", name="fc")(inp)
    return randomize_state(keras.Model(inp, [L.Dense(2, name="a")(x), L.Dense(3, name="b")(x)]))


def test_a_nan_in_the_second_output_fails_verification(monkeypatch):
    compare = verify_lib.compare

    def nan_in_second(*args, **kwargs):
        rows = compare(*args, **kwargs)
        rows[1] = {**rows[1], "max_abs": float("nan"), "max_rel": float("nan")}
        return rows

    monkeypatch.setattr(verify_lib, "compare", nan_in_second)
    with pytest.raises(errors.VerificationError) as info:
        n2n.expand_model(two_outputs(), widen=2.0, seed=0)
    assert "max |d|/max |y| = nan" in str(info.value), str(info.value)


def _nan_bias(layer):
    layer.bias.assign(np.full(layer.bias.shape, np.nan, layer.bias.dtype))


def test_compare_and_check_take_every_output():
    """Not the rows patched: a student whose second output really is NaN."""
    teacher = two_outputs()
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    _nan_bias(student.get_layer("b"))
    x = probe(teacher)
    rows = verify_lib.compare(teacher, student, x, ["a", "b"])
    assert [r["output"] for r in rows] == ["a", "b"]
    assert rows[0]["max_rel"] < 1e-5 and rows[1]["max_rel"] == float("inf"), rows
    report = ExpansionReport(verification=verify_lib.exactness(0.0, "balanced"))
    with pytest.raises(errors.VerificationError) as info:
        verify_lib.check(teacher, student, report, x, ["a", "b"])
    assert info.value.report is report
    assert report.max_relative_error == float("inf"), report.verification


def test_a_grown_nan_in_the_second_output_fails_the_pipeline(monkeypatch):
    write = rebuild.Rebuilder.write_weights

    def nan_in_b(self, student_of=None):
        write(self, student_of)
        for layer_id, layer in self.graph.layers.items():
            if layer.name == "b":
                _nan_bias(self.student_of[layer_id])

    monkeypatch.setattr(rebuild.Rebuilder, "write_weights", nan_in_b)
    with pytest.raises(errors.VerificationError) as info:
        n2n.expand_model(two_outputs(), widen=2.0, seed=0)
    assert "max |d|/max |y| = inf" in str(info.value), str(info.value)
    assert [r["output"] for r in info.value.report.verification["inference"]] == ["a", "b"]


def test_float64_twin_keeps_the_teachers_functions_and_weights():
    teacher = gelu_mlp(1.0)
    twin = verify_lib.float64_twin(teacher)
    assert twin.get_layer("mlp1").activation is ops.gelu
    assert twin.get_layer("mlp1").kernel.dtype == "float64"
    x = probe(teacher)[0]
    y, z = np.asarray(teacher(x), np.float64), np.asarray(twin(x), np.float64)
    assert np.max(np.abs(y - z)) / np.max(np.abs(y)) < verify_lib.ROUNDING["float32"]
