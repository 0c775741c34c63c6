"""Net2WiderNet on every supported layer kind: outputs preserved, hidden
layers wider, teacher untouched."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from tests import factories
from tests.growth import assert_keras_round_trip
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import float32_twin
from tests.growth import outputs
from tests.growth import probe
from tests.growth import relative_error
from tests.growth import snapshot


def _build(factory):
    return factories.randomize_state(factory())


@pytest.mark.parametrize("factory", factories.ALL, ids=lambda f: f.__name__)
@pytest.mark.parametrize("widen", [1.5, 2.0])
def test_widen_preserves_outputs(factory, widen):
    teacher = _build(factory)
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert_unchanged(teacher, snap)
    assert report.max_relative_error <= 1e-5
    grown = [r for r in report.layers if r["new_width"] > r["old_width"]]
    frozen = {g["name"] for g in report.groups if g["frozen"]}
    for row in report.layers:
        group = next(g for g in report.groups if any(
            p == row["layer"] or p.startswith(row["layer"] + "[") for p in g["producers"]))
        if group["frozen"]:
            assert row["new_width"] == row["old_width"] and group["reasons"]
        elif group["new_width"] == group["old_width"]:
            assert any(row["layer"] == s["request"] or group["name"] == s["request"]
                       for s in report.skipped), row
        else:
            assert row["new_width"] >= int(np.ceil(row["old_width"] * widen))
    assert grown, f"nothing grew; frozen: {frozen}"
    assert student.count_params() > teacher.count_params()


# Layers that must grow (not tied to a barrier) and those that must not.
EXPECTED = {
    "cnn_flatten": ({"conv1", "conv2", "fc1"}, {"logits"}),
    "residual": ({"stem", "b1_conv1", "b1_conv2", "b2_proj", "b2_conv1"}, {"logits"}),
    "inception": ({"br1", "br2a", "br2b", "br3", "post"}, {"logits"}),
    "squeeze_excite": ({"conv", "se_reduce", "se_expand"}, {"logits"}),
    "nested_and_shared": ({"pre", "block/inner_fc", "block/inner_out", "seq/seq_fc", "shared"},
                          {"logits"}),
    "multi_io": ({"fa", "cb", "hidden"}, {"out1", "out2"}),
    "barriers": ({"free"}, {"before_lambda", "logits"}),
    "grouped_conv": ({"c3"}, {"c1", "grouped"}),
    "activations_and_merges": ({"a", "b", "d"}, {"c", "logits"}),
    "norms": ({"conv_gn", "conv_ln", "conv_free"}, set()),
    "add_to_concat": ({"branch_a", "branch_b", "up", "head"}, {"logits"}),
}


def test_split_group_per_layer_width():
    teacher = _build(factories.add_to_concat)
    student, report = n2n.expand_model(teacher, widen={"up": 16}, return_report=True)
    assert student.get_layer("up").filters == 16
    assert student.get_layer("branch_a").filters == 6
    assert student.get_layer("branch_b").filters == 10
    assert_preserved(teacher, student, probe(teacher))
    producers = {p for g in report.groups for p in g["producers"]}
    assert {"up[0:3]", "up[3:8]"} <= producers


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_which_layers_grow(name):
    teacher = _build(getattr(factories, name))
    _, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    widths = {r["layer"]: (r["old_width"], r["new_width"]) for r in report.layers}
    grow, keep = EXPECTED[name]
    for layer in grow:
        assert widths[layer][1] == 2 * widths[layer][0], (layer, widths[layer])
    for layer in keep:
        assert widths[layer][1] == widths[layer][0], (layer, widths[layer])


def test_groupnorm_needs_integer_factor_layernorm_pads():
    teacher = _build(factories.norms)
    student, report = n2n.expand_model(teacher, widen=1.5, seed=0, return_report=True)
    widths = {r["layer"]: (r["old_width"], r["new_width"]) for r in report.layers}
    assert widths["conv_gn"] == (8, 8)
    assert widths["conv_ln"] == (6, 9)  # one copy of each channel and 3 pads (padding.py)
    assert widths["conv_free"] == (4, 6)
    reasons = " ".join(s["reason"] for s in report.skipped)
    assert "GroupNormalization 'gn'" in reasons and "LayerNormalization" not in reasons
    assert_preserved(teacher, student, probe(teacher))


def test_flatten_channels_last_interleaves_rows():
    """A Dense after Flatten reads each spatial position's channels in turn."""
    inp = keras.Input((2, 2, 2))
    x = keras.layers.Conv2D(2, 1, name="conv")(inp)
    x = keras.layers.Flatten()(x)
    teacher = keras.Model(inp, keras.layers.Dense(1, name="out")(x))
    student = n2n.expand_model(teacher, widen={"conv": 3}, mapping="round_robin")
    old = teacher.get_layer("out").kernel.numpy()[:, 0]
    new = student.get_layer("out").kernel.numpy()[:, 0]
    # position p: channels (0, 1, copy of 0); the copy and the original halve.
    expected = np.concatenate([[old[2 * p] / 2, old[2 * p + 1], old[2 * p] / 2] for p in range(4)])
    np.testing.assert_allclose(new, expected, rtol=1e-6)


def test_per_layer_widths_and_factors():
    teacher = _build(factories.cnn_flatten)
    student, report = n2n.expand_model(teacher, widen={"conv1": 10, "fc1": 1.5},
                                       return_report=True)
    assert student.get_layer("conv1").filters == 10
    assert student.get_layer("conv2").filters == 5
    assert student.get_layer("fc1").units == 14
    assert_preserved(teacher, student, probe(teacher))


def test_noise_modes():
    teacher = _build(factories.residual)
    x = probe(teacher)
    student = n2n.expand_model(teacher, widen=2.0, noise=0.1, seed=3)
    assert_preserved(teacher, student, x)  # balanced noise stays exact
    plain = n2n.expand_model(teacher, widen=2.0, seed=3)
    diff = [np.abs(a - b).max() for a, b in zip(student.get_weights(), plain.get_weights())
            if a.shape == b.shape]
    assert max(diff) > 1e-3  # ... and did break the symmetry
    _, report = n2n.expand_model(teacher, widen=2.0, noise=0.1, noise_mode="additive",
                                 seed=3, return_report=True)
    assert report.max_relative_error > 1e-4  # the paper's noise is not exact


def test_mappings_replay_exactly():
    teacher = _build(factories.inception)
    student, report = n2n.expand_model(teacher, widen=1.7, seed=5, return_report=True)
    again = n2n.ExpansionReport.from_json(report.to_json())
    replay = n2n.expand_model(teacher, mappings=again.mappings())
    for a, b in zip(student.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keras_round_trip(tmp_path):
    teacher = _build(factories.residual)
    student = n2n.expand_model(teacher, widen=1.5, deepen={"b1_conv1": "residual"}, seed=0)
    assert_keras_round_trip(student, probe(teacher), tmp_path)


def test_sequential_stays_sequential():
    teacher = _build(factories.sequential)
    student = n2n.expand_model(teacher, widen=2.0, deepen=["conv2"])
    assert isinstance(student, keras.Sequential)
    assert_preserved(teacher, student, probe(teacher))


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_stays_mixed(policy):
    keras.mixed_precision.set_global_policy(policy)
    try:
        teacher = _build(factories.cnn_flatten)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert student.get_layer("conv1").dtype_policy.name == policy
    assert report.verification["dtype"] == policy.split("_")[1]
    assert report.max_relative_error <= report.verification["tolerance"]
    # Graded against a float32 twin of the teacher, not the library's report:
    # the student is as close to it as the teacher's own rounding allows.
    x = probe(teacher)
    reference = outputs(float32_twin(teacher), x)
    rounding = relative_error(outputs(teacher, x), reference)
    slack = {"mixed_float16": 1e-3, "mixed_bfloat16": 1e-2}[policy]
    assert relative_error(outputs(student, x), reference) <= 2 * rounding + slack


def test_explain_model_lists_groups_and_reasons():
    report = n2n.explain_model(_build(factories.barriers))
    text = str(report)
    assert "Lambda" in text and "model output 'logits'" in text
    lam = [b for b in report.barriers if b["layer"] == "lam"]
    assert lam and "Lambda" in lam[0]["reason"]
    group = next(g for g in report.groups if "before_lambda" in g["producers"])
    assert group["frozen"] and "lam" in group["reasons"][0]
