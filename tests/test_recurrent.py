"""Recurrent layers grow exactly: LSTM, GRU (both reset_after), SimpleRNN,
RNN(cell), Bidirectional and TimeDistributed, with masks, return_sequences,
return_state, go_backwards and initial states; deepening after them adds a
zero-initialised residual block."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.factories import T
from tests.factories import VOCAB
from tests.factories import stacked_masked
from tests.growth import assert_preserved
from tests.growth import assert_refused
from tests.growth import assert_unchanged
from tests.growth import outputs
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers


def _randomized(model, seed=0):
    """Every bias and norm parameter redrawn: Keras starts them at constants
    (LSTM's at 0 and 1), and a rule that mis-indexes a gate block of a
    constant bias computes the same function as the right rule."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if v.path.rsplit("/", 1)[-1] in ("bias", "gamma", "beta", "moving_mean"):
            v.assign(rng.normal(0.0, 0.5, v.shape).astype(v.dtype))
        elif v.path.endswith("moving_variance"):
            v.assign(rng.uniform(0.5, 1.5, v.shape).astype(v.dtype))
    return model


def _tokens(model, seed=1):
    """A probe whose sequences end in padding (token 0), at varying lengths,
    so that masks matter."""
    x = probe(model, seed)
    for i, length in enumerate((T, T - 2, 2)):
        for a in x:
            if "int" in str(a.dtype):
                a[i, length:] = 0
                a[i, :length] = np.maximum(a[i, :length], 1)
    return x


# -- teachers ---------------------------------------------------------------
def bidirectional_masked():
    """Bidirectional layers in every merge mode, with masks."""
    tokens = keras.Input((T,), dtype="int32")
    x = L.Embedding(VOCAB, 4, mask_zero=True, name="emb")(tokens)
    x = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi_concat")(x)
    x = L.Bidirectional(L.GRU(4, return_sequences=True, reset_after=False),
                        merge_mode="sum", name="bi_sum")(x)
    x = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode="ave",
                        name="bi_ave")(x)
    a = L.Bidirectional(L.GRU(2), merge_mode="mul", name="bi_mul")(x)
    f, b = L.Bidirectional(L.LSTM(3), merge_mode=None, name="bi_none")(x)
    x = L.Concatenate(name="cat")([a, f, b])
    return keras.Model(tokens, L.Dense(2, name="logits")(x))


def sequence_gru():
    """A speech-style stack on a plain float sequence: Conv1D features, two
    GRUs (reset_after True and False), per-frame logits via TimeDistributed."""
    frames = keras.Input((T, 3))
    x = L.Conv1D(4, 3, padding="same", activation="relu", name="conv")(frames)
    x = L.GRU(5, return_sequences=True, name="gru_a")(x)
    x = L.GRU(4, return_sequences=True, reset_after=False, name="gru_b")(x)
    x = L.TimeDistributed(L.Dense(3, activation="relu"), name="td_fc")(x)
    return keras.Model(frames, L.TimeDistributed(L.Dense(2), name="td_logits")(x))


def encoder_decoder():
    """return_state and initial_state: a decoder LSTM starts from the encoder's
    (h, c); a Bidirectional GRU's states feed a Dense; SimpleRNN and
    RNN(LSTMCell) in between."""
    src = keras.Input((T, 3))
    tgt = keras.Input((T - 1, 2))
    _, h, c = L.LSTM(4, return_state=True, name="encoder")(src)
    y = L.LSTM(4, return_sequences=True, name="decoder")(
        L.Dense(3, name="tgt_fc")(tgt), initial_state=[h, c])
    y = L.RNN(L.LSTMCell(3), return_sequences=True, name="rnn_cell")(y)
    y, fh, bh = L.Bidirectional(L.GRU(3, return_sequences=True, return_state=True),
                                name="bi_state")(y)
    y = L.SimpleRNN(2, return_sequences=True, go_backwards=True, name="srnn")(y)
    state = L.Dense(2, name="state_head")(L.Concatenate(name="cat")([fh, bh]))
    return keras.Model([src, tgt], [L.Dense(2, name="seq_head")(y), state])


def video_time_distributed():
    """TimeDistributed convs, pooling and flatten before an LSTM."""
    clips = keras.Input((4, 6, 6, 2))
    x = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"), name="td_conv")(clips)
    x = L.TimeDistributed(L.BatchNormalization(), name="td_bn")(x)
    x = L.TimeDistributed(L.MaxPooling2D(2), name="td_pool")(x)
    x = L.TimeDistributed(L.Flatten(), name="td_flat")(x)
    x = L.LSTM(4, name="lstm")(x)
    return keras.Model(clips, L.Dense(2, name="logits")(x))


FACTORIES = [stacked_masked, bidirectional_masked, sequence_gru, encoder_decoder,
             video_time_distributed]
# Producers that read or write a model output and so keep their width.
KEPT = {"logits", "seq_head", "state_head", "td_logits"}


def _data(model):
    return _tokens(model) if any("int" in str(i.dtype) for i in model.inputs) else probe(model)


def _assert_round_trip(student, x, tmp_path):
    """Saved to .keras and loaded with no custom objects: same outputs (any
    number of inputs)."""
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(outputs(student, x), outputs(loaded, x)):
        np.testing.assert_array_equal(a, b)


def _assert_every_hidden_group_grew(report, widen):
    """No barrier, no skip, and every group some hidden layer produces grew by
    `widen` (the kept ones: the model outputs and its inputs alone)."""
    assert not report.barriers, report.barriers
    assert not report.skipped, report.skipped
    for group in report.groups:
        producers = {p.split("[")[0] for p in group["producers"]}
        if not producers or producers <= {p for p in producers if p.startswith("input:")}:
            continue
        if producers & KEPT:
            assert group["frozen"] and group["new_width"] == group["old_width"], group
            continue
        assert not group["frozen"], group
        assert group["new_width"] == int(np.ceil(group["old_width"] * widen - 1e-9)), group


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("widen", [2.0, 1.5])
def test_widen_preserves_outputs(factory, widen, tmp_path):
    teacher = _randomized(factory())
    snap = snapshot(teacher)
    x = _data(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, verify_data=x,
                                       return_report=True)
    figures = assert_preserved(teacher, student, x, rtol=1e-5)
    assert max(rel for _, rel in figures) <= 1e-5
    assert_unchanged(teacher, snap)
    _assert_every_hidden_group_grew(report, widen)
    grown = [r for r in report.layers if r["new_width"] > r["old_width"]]
    assert len(grown) == len(report.layers) - len(KEPT & {r["layer"] for r in report.layers})
    _assert_round_trip(student, x, tmp_path)


def _float64(factory):
    # Layers read the global dtype policy, inputs read floatx: set both.
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        return _randomized(factory())
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


@pytest.mark.parametrize("factory", FACTORIES, ids=lambda f: f.__name__)
def test_float64_exact(factory):
    teacher = _float64(factory)
    assert all(v.dtype == "float64" for v in teacher.weights if "float" in str(v.dtype)), [
        (v.path, v.dtype) for v in teacher.weights]
    x = _data(teacher)
    student = n2n.expand_model(teacher, widen=1.5, seed=3, verify_data=x)
    assert all(v.dtype == "float64" for v in student.weights if "float" in str(v.dtype))
    assert_preserved(teacher, student, x, rtol=1e-9)


def test_units_copied_inside_every_gate_block():
    """The weights themselves: unit j of the student is unit g(j) in each of
    LSTM's four gate blocks; recurrent rows of the copies are divided."""
    teacher = _randomized(stacked_masked())
    student, report = n2n.expand_model(teacher, widen={"lstm": 8}, mapping="round_robin",
                                       return_report=True)
    g = np.arange(8) % 5
    counts = np.bincount(g)[g]
    kernel, recurrent, bias = (w.numpy() for w in teacher.get_layer("lstm").weights)
    kernel2, recurrent2, bias2 = (w.numpy() for w in student.get_layer("lstm").weights)
    cols = np.concatenate([b * 5 + g for b in range(4)])
    np.testing.assert_array_equal(kernel2, kernel[:, cols])
    np.testing.assert_allclose(recurrent2, recurrent[g][:, cols] / counts[:, None], rtol=1e-6)
    np.testing.assert_array_equal(bias2, bias[cols])
    gru = teacher.get_layer("gru_v1").weights[0].numpy()
    np.testing.assert_allclose(student.get_layer("gru_v1").weights[0].numpy(),
                               gru[g] / counts[:, None], rtol=1e-6)
    assert student.get_layer("lstm").units == 8
    assert {"layer": "lstm", "class": "LSTM", "old_width": 5, "new_width": 8} in report.layers


def test_gru_reset_after_bias_rows():
    """GRU(reset_after=True) keeps its bias (2, 3 units): both rows follow."""
    teacher = _randomized(stacked_masked())
    student = n2n.expand_model(teacher, widen={"gru_v3": 5}, mapping="round_robin",
                               verify_data=_tokens(teacher))
    g = np.arange(5) % 3
    cols = np.concatenate([b * 3 + g for b in range(3)])
    bias = teacher.get_layer("gru_v3").weights[2].numpy()
    assert bias.shape == (2, 9)
    np.testing.assert_array_equal(student.get_layer("gru_v3").weights[2].numpy(), bias[:, cols])


def test_bidirectional_per_layer_width_grows_both_directions():
    teacher = _randomized(bidirectional_masked())
    x = _tokens(teacher)
    student = n2n.expand_model(teacher, widen={"bi_concat": 5}, seed=2, verify_data=x)
    layer = student.get_layer("bi_concat")
    assert layer.forward_layer.units == layer.backward_layer.units == 5
    assert layer.output.shape[-1] == 10
    assert student.get_layer("bi_sum").forward_layer.units == 4
    assert_preserved(teacher, student, x)


def test_shared_recurrent_layer_grows_once():
    """One LSTM called on two sequences: one mapping for both calls."""
    a, b = keras.Input((T, 3)), keras.Input((T, 3))
    fc = L.Dense(4, name="fc")
    lstm = L.LSTM(3, name="shared_lstm")
    x = L.Concatenate()([lstm(fc(a)), lstm(fc(b))])
    teacher = _randomized(keras.Model([a, b], L.Dense(2, name="logits")(x)))
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify_data=x,
                                       return_report=True)
    assert student.get_layer("shared_lstm").units == 6
    assert_preserved(teacher, student, x)


def _frozen_reasons(report):
    return " | ".join(r for g in report.groups for r in g["reasons"])


def test_initial_state_from_model_input_keeps_units():
    """States that come from outside the model fix the decoder's width."""
    seq, h = keras.Input((T, 3)), keras.Input((4,))
    y = L.GRU(4, name="gru")(L.Dense(5, name="fc")(seq), initial_state=h)
    teacher = _randomized(keras.Model([seq, h], L.Dense(2, name="logits")(y)))
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify_data=x,
                                       return_report=True)
    assert student.get_layer("gru").units == 4
    assert student.get_layer("fc").units == 10
    assert_preserved(teacher, student, x)
    assert_refused(teacher, dict(widen={"gru": 8}, strict=True), errors.FrozenGroupError,
                   ["'gru'", "model input"])


def test_stateful_rnn_is_a_barrier_with_reason():
    seq = keras.Input((T, 3), batch_size=3)
    y = L.LSTM(4, stateful=True, name="lstm")(L.Dense(5, name="fc")(seq))
    teacher = keras.Model(seq, L.Dense(2, name="logits")(y))
    # verify=False: calling a stateful teacher would advance its state.
    x = np.zeros((3, T, 3), "float32")  # its static batch size
    student, report = n2n.expand_model(teacher, widen=2.0, verify=False, verify_data=x,
                                       return_report=True)
    assert student.get_layer("lstm").units == 4
    assert student.get_layer("fc").units == 5
    barrier = next(b for b in report.barriers if b["layer"] == "lstm")
    assert "stateful" in barrier["reason"]


def test_unknown_cell_is_a_barrier_with_reason():
    cells = L.StackedRNNCells([L.GRUCell(3), L.GRUCell(3)])
    seq = keras.Input((T, 3))
    y = L.RNN(cells, name="stacked")(L.Dense(4, name="fc")(seq))
    teacher = _randomized(keras.Model(seq, L.Dense(2, name="logits")(y)))
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, verify_data=x, return_report=True)
    barrier = next(b for b in report.barriers if b["layer"] == "stacked")
    assert "StackedRNNCells" in barrier["reason"]
    assert student.get_layer("fc").units == 4
    assert_preserved(teacher, student, x)


def test_time_distributed_of_unknown_layer_is_a_barrier():
    seq = keras.Input((T, 3))
    x = L.Dense(4, name="fc")(seq)
    x = L.TimeDistributed(L.Lambda(lambda t: t * 2.0), name="td_lambda")(x)
    teacher = _randomized(keras.Model(seq, L.LSTM(2, name="lstm")(x)))
    student, report = n2n.expand_model(teacher, widen=2.0, return_report=True)
    barrier = next(b for b in report.barriers if b["layer"] == "td_lambda")
    assert "Lambda" in barrier["reason"]
    assert student.get_layer("fc").units == 4


def test_explain_lists_units_groups():
    report = n2n.explain_model(stacked_masked())
    widths = {r["layer"]: r["old_width"] for r in report.layers}
    assert widths == {"emb": 4, "lstm": 5, "gru_v1": 4, "gru_v3": 3, "srnn": 4, "logits": 2}
    lstm = next(g for g in report.groups if g["name"] == "lstm")
    assert {"lstm", "gru_v1"} <= set(lstm["members"]) and not lstm["frozen"]


# -- deepening --------------------------------------------------------------
@pytest.mark.parametrize("factory, deepen, added", [
    (stacked_masked, {"lstm": "residual", "srnn": 1}, 3 + 3),
    (bidirectional_masked, {"bi_concat": "residual", "bi_sum": 2}, 3 + 6),
    (sequence_gru, ["gru_a"], 3),
    (video_time_distributed, {"lstm": "residual"}, 3),
])
@pytest.mark.parametrize("widen", [None, 1.5])
def test_deepen_after_recurrent_layer(factory, deepen, added, widen, tmp_path):
    teacher = _randomized(factory())
    snap = snapshot(teacher)
    x = _data(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, deepen=deepen, seed=0,
                                       verify_data=x, return_report=True)
    assert len(student.layers) == len(teacher.layers) + added
    assert all(i["mode"] == "residual" and i["exact"] for i in report.inserted)
    assert_preserved(teacher, student, x)
    assert_unchanged(teacher, snap)
    _assert_round_trip(student, x, tmp_path)
    first = report.inserted[0]
    block = student.get_layer(first["layers"][0])
    anchor = teacher.get_layer(first["anchor"])
    if getattr(anchor, "return_sequences", False):  # a recurrent layer of the same kind
        kind = type(getattr(anchor, "forward_layer", anchor))
        assert type(block) is kind and block.return_sequences
    assert not np.any(student.get_layer(first["layers"][1]).kernel.numpy())


def test_deepen_refuses_recurrent_layer_with_several_outputs():
    teacher = encoder_decoder()
    assert_refused(teacher, dict(deepen=["encoder"]), errors.PlanError,
                   ["'encoder'", "return_state=True", "Fix:"])
    assert_refused(bidirectional_masked(), dict(deepen={"bi_none": "residual"}),
                   errors.PlanError, ["'bi_none'", "merge_mode=None", "Fix:"])


def test_time_distributed_sharing_its_layer_is_a_barrier():
    """Two wrappers of one Dense: the student would untie them, so both keep
    their width, with the reason."""
    seq = keras.Input((T, 3))
    fc = L.Dense(4, name="fc")
    a = L.TimeDistributed(fc, name="td_a")(L.Dense(3, name="pre")(seq))
    b = L.TimeDistributed(fc, name="td_b")(seq)
    y = L.GRU(2, name="gru")(L.Add()([a, b]))
    teacher = _randomized(keras.Model(seq, L.Dense(2, name="logits")(y)))
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, verify_data=x, return_report=True)
    barrier = next(b for b in report.barriers if b["layer"] == "td_b")
    assert "also called outside it" in barrier["reason"]
    assert student.get_layer("td_a").layer.units == student.get_layer("td_b").layer.units == 4
    assert student.get_layer("pre").units == 6 and student.get_layer("gru").units == 4
    assert_preserved(teacher, student, x)


def test_verification_leaves_a_stateful_teachers_state_as_it_was():
    seq = keras.Input((T, 3), batch_size=3)
    y = L.LSTM(4, stateful=True, name="lstm")(L.Dense(5, name="fc")(seq))
    teacher = keras.Model(seq, L.Dense(2, name="logits")(y))
    x = np.random.default_rng(0).normal(size=(3, T, 3)).astype("float32")
    teacher(x)  # the state is now non-zero
    before = [np.asarray(v.numpy()).copy() for v in teacher.get_layer("lstm").states]
    assert any(np.abs(b).max() > 0 for b in before)
    n2n.expand_model(teacher, widen=2.0, verify_data=x)  # compares and probes: 2 calls
    after = [np.asarray(v.numpy()) for v in teacher.get_layer("lstm").states]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
