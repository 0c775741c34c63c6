"""Width initialisation options of `expand_model` (issue 23): `new_units=
"fresh"` (new units freshly drawn, zero outgoing weights, where only weights
read them) and `split="random"` (LEMON-like unequal splits of the copies'
outgoing weights). Both stay exact."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import rebuild
from keras_net2net.models import build_model

L = keras.layers


def _mlp():
    keras.utils.set_random_seed(0)
    x = keras.Input((3,))
    h = L.Dense(2, activation="tanh", name="hidden", bias_initializer="ones")(x)
    return keras.Model(x, L.Dense(2, name="out")(h))


def _probe(model, n=16):
    return np.random.default_rng(1).normal(size=(n,) + tuple(model.input_shape[1:]))


def test_fresh_units_get_new_incoming_and_zero_outgoing_weights():
    teacher = _mlp()
    mapping = {"hidden": [0, 1, 0, 0]}  # units 2 and 3 are new (copies of 0)
    student, report = n2n.expand_model(teacher, mappings=mapping, seed=0,
                                       new_units="fresh", return_report=True)
    k_in, b_in = teacher.get_layer("hidden").get_weights()
    k_out, b_out = teacher.get_layer("out").get_weights()
    s_in, s_b = student.get_layer("hidden").get_weights()
    s_out, _ = student.get_layer("out").get_weights()
    # Old units: their weights, outgoing rows whole (not divided by 3).
    np.testing.assert_array_equal(s_in[:, :2], k_in)
    np.testing.assert_array_equal(s_b[:2], b_in)
    np.testing.assert_array_equal(s_out[:2], k_out)
    # New units: zero outgoing rows, zero biases, drawn incoming columns
    # (no copy of unit 0), at the RMS of the teacher's kernel.
    np.testing.assert_array_equal(s_out[2:], 0.0)
    np.testing.assert_array_equal(s_b[2:], 0.0)
    assert not np.allclose(s_in[:, 2], k_in[:, 0])
    assert not np.allclose(s_in[:, 2], s_in[:, 3])
    assert report.options["new_units"] == "fresh"
    assert report.verification["exact"] is True
    np.testing.assert_allclose(student(_probe(teacher)), teacher(_probe(teacher)), atol=1e-6)


def test_fresh_values_hand_values():
    rng = np.random.default_rng(0)
    teacher = np.array([[3.0, -4.0], [0.0, 0.0]])  # RMS sqrt(25 / 4) = 2.5
    draws = rebuild.fresh_values((20000, 2), teacher, "kernel", rng)
    assert abs(np.std(draws) - 2.5) < 0.05
    np.testing.assert_array_equal(rebuild.fresh_values((3,), teacher, "bias", rng), 0.0)


def test_fresh_keeps_copies_in_a_stream_under_layer_norm():
    """The GPT's residual stream is read by LayerNorms: its new channels stay
    copies; the FFN's hidden units and the attention heads start fresh."""
    keras.utils.set_random_seed(0)
    teacher = build_model("gpt", (8,), 20, width=16, depth=1)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, new_units="fresh",
                                       return_report=True)
    assert report.verification["exact"] is True
    emb = student.get_layer("token_embedding").get_weights()[0]
    assert len(np.unique(emb.round(7).T, axis=0)) == 16  # 32 columns: copies of 16
    ffn_in = student.get_layer("block1_ffn_in").get_weights()[0]
    assert len(np.unique(ffn_in.round(7).T, axis=0)) == 128  # no duplicated unit
    ffn_out = student.get_layer("block1_ffn_out").get_weights()[0]
    assert np.sum(np.all(ffn_out == 0, axis=1)) == 64  # the new half reads nothing
    heads = student.get_layer("block1_mha").get_weights()[6]  # output (heads, dim, out)
    assert [bool(np.all(heads[h] == 0)) for h in range(4)] == [False, False, True, True]
    tokens = np.random.default_rng(0).integers(0, 20, size=(4, 8))
    np.testing.assert_allclose(student(tokens), teacher(tokens), atol=1e-5)


def test_random_split_hand_values():
    src, counts = np.array([0, 1, 0, 0, -1]), np.array([3, 1])
    f = rebuild.random_split(src, counts, np.random.default_rng(0))
    # Each unit's factors over its copies sum to its copy count (after the
    # 1 / counts of replicate: proportions summing to one); pads keep 1.
    assert np.isclose(f[0] + f[2] + f[3], 3.0)
    assert f[1] == 1.0 and f[4] == 1.0
    assert len({round(v, 6) for v in (f[0], f[2], f[3])}) == 3


def test_random_split_outgoing_rows_share_unequally_and_stay_exact():
    teacher = _mlp()
    student, report = n2n.expand_model(teacher, mappings={"hidden": [0, 1, 0, 1]}, seed=0,
                                       split="random", return_report=True)
    k_out = teacher.get_layer("out").get_weights()[0]
    s_out = student.get_layer("out").get_weights()[0]
    np.testing.assert_allclose(s_out[0] + s_out[2], k_out[0], rtol=1e-6)
    np.testing.assert_allclose(s_out[1] + s_out[3], k_out[1], rtol=1e-6)
    alpha = s_out[0] / k_out[0]  # one proportion per unit, across its row
    np.testing.assert_allclose(alpha, alpha[0], rtol=1e-5)
    assert not np.isclose(alpha[0], 0.5)
    assert report.options["split"] == "random" and report.verification["exact"] is True
    np.testing.assert_allclose(student(_probe(teacher)), teacher(_probe(teacher)), atol=1e-6)


@pytest.mark.parametrize("option, value", [("new_units", "new"), ("new_units", None),
                                           ("split", "lemon"), ("split", 0.5)])
def test_bad_values_name_the_option_the_value_and_the_choices(option, value):
    with pytest.raises(errors.PlanError, match=rf"{option}={value!r}.*Pass one of"):
        n2n.expand_model(_mlp(), widen=2.0, **{option: value})
