"""Whole-block deepening: a span (first, last) repeated after itself, each
copy the student's weights with every residual branch zeroed at its last
writer, so the student computes the teacher's function."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_net2net as n2n
from keras_net2net.bin import flags as shared_flags
from keras_net2net.models import build_model
from tests import factories
from tests.growth import assert_keras_round_trip
from tests.growth import assert_preserved
from tests.growth import assert_refused
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers
BLOCK1 = ("block1_ln1", "block1_res2")
BLOCK2 = ("block2_ln1", "block2_res2")
# Per span layer of the GPT: the weights a copy zeroes (its branches' last writers).
ZEROED = {"mha": ("attention_output/kernel", "attention_output/bias"),
          "ffn_out": ("kernel", "bias")}


def gpt(length=64, vocab=256):
    return factories.randomize_state(build_model("gpt", (length,), vocab, width=32, depth=2))


def resnet():
    return factories.randomize_state(build_model("resnet_small", (8, 8, 1), 10, width=8,
                                                 depth=2))


def ops_residual():
    """A stream added with keras.ops (x + h), ending in a ReLU; Dropout after
    the branch's last writer."""
    inp = keras.Input((6,))
    x = L.Dense(8, name="stem")(inp)
    h = L.Dense(16, activation="relu", name="up")(x)
    h = L.Dropout(0.2, name="drop")(L.Dense(8, name="down")(h))
    x = L.ReLU(name="out")(x + h)
    return factories.randomize_state(keras.Model(inp, L.Dense(3, name="logits")(x)))


@pytest.fixture(scope="module")
def teacher():
    return gpt()


def _mha_names(model):
    return [l.name for l in model.layers if isinstance(l, L.MultiHeadAttention)]


def _short(variable):
    return variable.path.split("/", 1)[1]  # "block1_mha/query/kernel" -> "query/kernel"


def _assert_copies(student, count):
    """Every copy holds its source's weights, but its zeroed writers are zero."""
    for block in (1, 2):
        for part in ("ln1", "mha", "ln2", "ffn_in", "ffn_out"):
            source = student.get_layer(f"block{block}_{part}")
            for k in range(1, count + 1):
                copy = student.get_layer(f"block{block}_{part}_deepen_{k}")
                assert type(copy) is type(source)
                for a, b in zip(source.weights, copy.weights):
                    assert a.shape == b.shape
                    if _short(a) in ZEROED.get(part, ()):
                        assert not b.numpy().any(), b.path
                    else:
                        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _causal(model, x, position=40):
    """Whether outputs up to `position` ignore the tokens after it."""
    changed = x.copy()
    changed[:, position + 1:] = (changed[:, position + 1:] + 1) % 256
    y, z = np.asarray(model(x)), np.asarray(model(changed))
    return np.array_equal(y[:, :position + 1], z[:, :position + 1]) and not np.array_equal(y, z)


def test_gpt_two_blocks_grow_to_four_exactly(teacher):
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, deepen={BLOCK1: 1, BLOCK2: "block"},
                                       return_report=True)
    max_abs, rel = assert_preserved(teacher, student, probe(teacher))[0]
    assert rel <= 1e-5 and report.max_relative_error <= 1e-5
    assert _mha_names(student) == ["block1_mha", "block1_mha_deepen_1", "block2_mha",
                                   "block2_mha_deepen_1"]
    _assert_copies(student, 1)
    row = report.inserted[0]
    assert (row["anchor"], row["mode"], row["count"]) == ("block1_res2", "block", 1)
    assert "block1_mha" in row["note"] and "block1_ffn_out" in row["note"]
    assert "inserted after block2_res2 (block, exact)" in str(report)
    assert '"block1_ln1..block1_res2": 1' in report.to_json()
    assert "Channel groups" in str(n2n.explain_model(student))

    # Training moves the copy, first its zeroed writers (the only weights
    # with a gradient while the branch is zero), then the rest of it.
    x = probe(teacher)[0]
    optimizer = keras.optimizers.SGD(0.5)
    query = student.get_layer("block1_mha_deepen_1")._query_dense.kernel
    before = query.numpy()
    _step(student, optimizer, x)
    assert student.get_layer("block1_ffn_out_deepen_1").kernel.numpy().any()
    assert student.get_layer("block2_mha_deepen_1")._output_dense.kernel.numpy().any()
    np.testing.assert_array_equal(query.numpy(), before)
    _step(student, optimizer, x)
    assert not np.array_equal(query.numpy(), before)
    assert_unchanged(teacher, snap)
    # The copy's attention was called with the teacher's use_causal_mask=True.
    assert _causal(student, x)


@pytest.mark.parametrize("count", [1, 2])
def test_gpt_blocks_with_widen_in_the_same_call(teacher, count):
    student, report = n2n.expand_model(teacher, widen=2.0, deepen={BLOCK1: count, BLOCK2: count},
                                       seed=0, return_report=True)
    max_abs, rel = assert_preserved(teacher, student, probe(teacher))[0]
    assert rel <= 1e-5, rel
    assert len(_mha_names(student)) == 2 + 2 * count
    assert student.get_layer(f"block2_ffn_in_deepen_{count}").units == 256
    _assert_copies(student, count)


@pytest.mark.parametrize("span", [("block1_conv1", "block1_out"),
                                  ("block1_conv1", "block1_add"),
                                  ("block2_conv1", "block2_out")])
def test_resnet_blocks(span):
    """block*_out (ReLU) may end a span: a copy reads its output, which ReLU
    leaves unchanged; BatchNorm branches are zeroed at gamma and beta."""
    teacher = resnet()
    student = n2n.expand_model(teacher, widen=1.5, deepen={span: 2}, seed=0)
    assert_preserved(teacher, student, probe(teacher))
    prefix = span[0].split("_")[0]
    for k in (1, 2):
        bn = student.get_layer(f"{prefix}_bn2_deepen_{k}")
        assert bn.gamma.shape == (12,)
        assert not bn.gamma.numpy().any() and not bn.beta.numpy().any()
        np.testing.assert_array_equal(student.get_layer(f"{prefix}_conv1_deepen_{k}").kernel,
                                      student.get_layer(f"{prefix}_conv1").kernel)


def test_ops_stream_and_other_insertions_compose(tmp_path):
    teacher = ops_residual()
    student, report = n2n.expand_model(
        teacher, widen=2.0, deepen={("up", "out"): 2, "stem": 1, "down": "residual"},
        seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert {r["mode"] for r in report.inserted} == {"block", "identity", "residual"}
    assert not student.get_layer("down_deepen_2").kernel.numpy().any()  # 2nd copy of down
    assert student.get_layer("drop_deepen_2").rate == 0.2
    assert_keras_round_trip(student, probe(teacher), tmp_path)
    add, = [op.name for op in teacher.operations if type(op).__name__ == "Add"]
    student = n2n.expand_model(teacher, deepen={("up", add): 2})  # ends at x + h
    assert_preserved(teacher, student, probe(teacher))


def norm_writers():
    """Branches ending in EinsumDense, RMSNormalization, GroupNormalization and
    LayerNormalization(center=False) behind a PReLU and a Reshape."""
    inp = keras.Input((4, 8))
    x = L.Dense(8, name="stem")(inp)
    h = L.EinsumDense("btc,cd->btd", (4, 8), bias_axes="d", name="ein")(x)
    x = L.Add(name="add1")([x, h])
    x = L.Add(name="add2")([x, L.RMSNormalization(name="rms")(L.Dense(8, name="fc1")(x))])
    x = L.Add(name="add3")([x, L.GroupNormalization(2, name="gn")(L.Dense(8, name="fc2")(x))])
    h = L.LayerNormalization(center=False, name="ln")(L.Dense(8, name="fc3")(x))
    h = L.Reshape((4, 8), name="unfold")(L.Reshape((8, 4), name="fold")(L.PReLU()(h)))
    x = L.Add(name="add4")([x, h])
    return factories.randomize_state(keras.Model(inp, L.Dense(3, name="logits")(x)))


def test_norm_and_einsum_writers():
    teacher = norm_writers()
    student, report = n2n.expand_model(teacher, deepen={("ein", "add4"): 1},
                                       return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    for name in ("ein", "rms", "gn", "ln"):
        copy = student.get_layer(f"{name}_deepen_1")
        assert copy.weights and not any(w.numpy().any() for w in copy.weights), name
        assert name in report.inserted[0]["note"]


def test_expand_optimizer_after_block_deepening():
    """Copied variables are inserted variables anchored at what they copy:
    first moments zero, "warm" second moments at the mean of the source's,
    "fresh" ones zero."""
    teacher = gpt(length=16, vocab=32)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(teacher.trainable_variables)
    rng = np.random.default_rng(0)
    for slot in optimizer._momentums + optimizer._velocities:  # some history
        slot.assign(rng.uniform(0.1, 1.0, slot.shape).astype("float32"))
    optimizer.iterations.assign(7)
    student = n2n.expand_model(teacher, widen=2.0, deepen={BLOCK1: 1}, seed=0)
    for new_variables in ("fresh", "warm"):
        new = n2n.expand_optimizer(optimizer, student, new_variables=new_variables)
        assert int(new.iterations) == 7
        checked = 0
        for part in ("ln1", "mha", "ffn_out"):
            source = student.get_layer(f"block1_{part}")
            copy = student.get_layer(f"block1_{part}_deepen_1")
            for a, b in zip(source.trainable_variables, copy.trainable_variables):
                i, j = new._get_variable_index(a), new._get_variable_index(b)
                np.testing.assert_array_equal(new._momentums[j].numpy(), 0.0)
                expected = np.mean(new._velocities[i].numpy()) if new_variables == "warm" else 0
                np.testing.assert_allclose(new._velocities[j].numpy(), expected, rtol=1e-6)
                checked += 1
        assert checked == 2 + 8 + 2
    _step(student, new, probe(teacher)[0])
    assert int(new.iterations) == 8
    assert student.get_layer("block1_ffn_out_deepen_1").kernel.numpy().any()


def _step(model, optimizer, x):
    """One training step of next-token-style cross-entropy on x."""
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            x, model(x, training=True), from_logits=True))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    assert np.isfinite(float(loss))


def _model(build):
    """A keras.Model of build(x), x a Dense stem's output of shape (1, 8)."""
    inp = keras.Input((1, 8))
    return keras.Model(inp, build(L.Dense(8, name="stem")(inp)))


def _two_denses(x):
    return L.Dense(8, name="fc2")(L.Dense(8, name="fc1")(x))


def _gated(x):
    return L.Add(name="add")([x, L.Activation("sigmoid", name="gate")(L.Dense(8, name="fc")(x))])


def _sigmoid_writer(x):
    return L.Add(name="add")([x, L.Dense(8, activation="sigmoid", name="fc")(x)])


def _unscaled(x):
    return L.Add(name="add")([x, L.LayerNormalization(scale=False, name="ln")(
        L.Dense(8, name="fc")(x))])


def _lambda(x):
    return L.Add(name="add")([x, L.Lambda(lambda t: t * 2, name="lam")(L.Dense(8, name="fc")(x))])


def _no_writer(x):
    return L.Add(name="add")([x, L.Dropout(0.1, name="drop")(x)])


def _broadcast(x):
    return L.Add(name="add")([x, L.UpSampling1D(4, name="up")(L.Dense(8, name="fc")(x))])


def _shared(x):
    shared = L.Dense(8, name="shared")
    return shared(L.Add(name="add")([x, shared(x)]))


REFUSALS = [
    (gpt, {("block1_lnX", "block1_res2"): 1}, ["'block1_lnX'", "Did you mean"]),
    (gpt, {("block2_ln1", "block1_res2"): 1}, ["reachable", "'block1_res2'", "'block2_ln1'"]),
    (gpt, {BLOCK1: 0}, ["positive count, 'block' or 'stack'"]),
    (gpt, {("block1_ln1",): 1}, ["two layer names"]),
    (gpt, {("block1_ln1", "block1_mha"): 1}, ["not the identity at any weights",
                                               "'block1_mha'", "block1_ln1 (LayerNormalization)"]),
    (lambda: _model(_two_denses), {("fc1", "fc2"): 1},
     ["not the identity at any weights", "'fc2' (Dense)", "fc1 (Dense)"]),
    (resnet, {("block1_conv1", "block2_add"): 1}, ["end with that relu", "'block1_out'"]),
    (lambda: _model(_gated), {("fc", "add"): 1}, ["'gate' (Activation) maps 0 to 0.5"]),
    (lambda: _model(_lambda), {("fc", "add"): 1}, ["'lam' (Lambda) hides its computation"]),
    (lambda: _model(_sigmoid_writer), {("fc", "add"): 1},
     ["'fc' (Dense) applies activation 'sigmoid', which maps 0 to 0.5"]),
    (lambda: _model(_unscaled), {("fc", "add"): 1}, ["'ln' (LayerNormalization) has scale=False"]),
    (lambda: _model(_no_writer), {("drop", "add"): 1},
     ["branch into 'add'", "goes back to the stream"]),
    (lambda: _model(_broadcast), {("fc", "add"): 1}, ["keep the shape", "(None, 4, 8) of 'add'"]),
    (lambda: _model(_shared), {("shared", "add"): 1}, ["'shared' (Dense) is called 2 times"]),
]


@pytest.mark.parametrize("factory,deepen,fragments", REFUSALS,
                         ids=[f"refusal-{i}" for i in range(len(REFUSALS))])
def test_refusals_name_the_layer(factory, deepen, fragments):
    assert_refused(factory(), {"deepen": deepen}, n2n.errors.PlanError, fragments)


def test_keras_round_trip_with_trained_copies(teacher, tmp_path):
    """Saved and loaded with live copies (writers no longer zero): the same
    outputs, and the loaded copies still attend causally."""
    student = n2n.expand_model(teacher, widen=2.0, deepen={BLOCK1: 1, BLOCK2: 1}, seed=0)
    rng = np.random.default_rng(0)
    for name in ("block1_mha_deepen_1", "block2_ffn_out_deepen_1"):
        layer = student.get_layer(name)
        layer = getattr(layer, "_output_dense", layer)
        layer.kernel.assign(rng.normal(0, 0.1, layer.kernel.shape).astype("float32"))
    x = probe(teacher)
    assert_keras_round_trip(student, x, tmp_path)
    assert _causal(keras.models.load_model(tmp_path / "student.keras"), x[0])


def test_flags_parse_spans():
    parse = shared_flags.parse_deepen
    assert parse("block1_ln1..block1_res2:1,block2_ln1..block2_res2:block,fc1:2") == {
        BLOCK1: 1, BLOCK2: "block", "fc1": 2}
    assert parse("block1_ln1..block1_res2") == [BLOCK1]
    for bad in ("a..:1", "..b", "fc1:block", "a..b..c:1"):
        with pytest.raises(ValueError):
            parse(bad)
