"""Symmetry breaking reaches every copy: after a few steps of Adam no copy
pair of a grown model is identical when noise > 0, in ordinary layers and
inside inserted layers and block copies (whose zeroed last writers take
zero-sum noise), while the student stays exact; with noise = 0 every pair
stays identical (so the check can fail). Also stacked spans (G_stack)."""

import re

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import optimizer_state
from keras_net2net.bin import flags as shared_flags
from keras_net2net.models import build_model
from keras_net2net.rules.base import Mode
from tests import factories
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers
BLOCK1 = ("block1_ln1", "block1_res2")
BLOCK2 = ("block2_ln1", "block2_res2")
# A copy pair counts as identical when its updates point the same way to
# within float32 rounding; Adam turns any real difference into far more.
IDENTICAL = 1 - 1e-7
STEPS = 10


def gpt():
    return build_model("gpt", (16,), 32, width=32, depth=2)


def resnet():
    return factories.randomize_state(build_model("resnet_small", (8, 8, 1), 10, width=8,
                                                 depth=2))


def mlp():
    inp = keras.Input((12,))
    x = L.Dense(16, activation="relu", name="fc1")(inp)
    x = L.Dense(16, activation="relu", name="fc2")(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def cnn():
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inp)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(4, name="logits")(x))


def writers():
    """Residual branches ending in EinsumDense, Dense (after Dropout) and a
    LayerNormalization (a norm writer: zeroed, takes no noise)."""
    inp = keras.Input((4, 6))
    x = L.Dense(8, name="stem")(inp)
    h = L.EinsumDense("btc,cd->btd", (4, 8), bias_axes="d", name="ein")(
        L.Dense(16, activation="relu", name="up1")(x))
    x = L.Add(name="add1")([x, h])
    h = L.Dropout(0.1, name="drop")(L.Dense(8, name="down")(
        L.Dense(16, activation="gelu", name="up2")(x)))
    x = x + h
    x = L.Add(name="add3")([x, L.LayerNormalization(name="ln")(L.Dense(8, name="fc")(x))])
    return factories.randomize_state(keras.Model(inp, L.Dense(3, name="logits")(x)))


def recurrent():
    inp = keras.Input((5, 4))
    x = L.LSTM(6, return_sequences=True, name="lstm")(inp)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


# (factory, widen, deepen, {inserted layer: anchor whose output copies it writes})
GROWN = {
    "gpt": (gpt, 2.0, {BLOCK1: 1, BLOCK2: 1}, {}),
    # Residual blocks: the first layer draws fresh units (no copies); the
    # zero-initialised last Dense writes the anchor's copies.
    "mlp": (mlp, 2.0, {"fc1": 1, "fc2": "residual"}, {"fc2_deepen_1_b": "fc2"}),
    "cnn": (cnn, 2.0, {"c1": 1, "c2": "residual"}, {}),
    "resnet": (resnet, 2.0, {("block1_conv1", "block1_out"): 1}, {}),
}


def _source_transforms(student):
    """{id(student variable): transforms} of every weight grown from the
    teacher's (`Rebuilder.weight_map`)."""
    return {id(new): t for _, new, t in optimizer_state.weight_map(student)}


def _copy_axes(variable, transforms):
    """[(axis, src)] along which `variable` holds copies of units."""
    return [(axis % len(variable.shape), src) for axis, src, _, divide in transforms
            if divide is Mode.COPY and len(variable.shape) >= 2 and
            np.bincount(src[src >= 0]).max() > 1]


def copy_slices(student, inserted):
    """[(label, variable, axis, src)]: every weight of >= 2 dims holding
    copies of units: grown weights, layers named `name_deepen_k` (block
    copies, and identity layers: the copy axes of `name`'s weights), and the
    inserted layers named in `inserted` (last axis, as the output of their
    anchor)."""
    transforms = _source_transforms(student)
    out = []
    for layer in student.layers:
        for v in layer.weights:
            out.extend((v.path, v, axis, src) for axis, src in
                       _copy_axes(v, transforms.get(id(v), ())))
        source_name, _, k = layer.name.rpartition("_deepen_")
        if k.isdigit() and source_name in {l.name for l in student.layers}:  # a block copy
            source = student.get_layer(source_name)
            for a, b in zip(source.weights, layer.weights):
                out.extend((b.path, b, axis, src) for axis, src in
                           _copy_axes(a, transforms.get(id(a), ())))
    for name, anchor in inserted.items():
        kernel = student.get_layer(name).kernel
        source = student.get_layer(anchor).kernel
        last = len(source.shape) - 1
        src = next(src for axis, src in _copy_axes(source, transforms[id(source)])
                   if axis == last)
        out.append((kernel.path, kernel, len(kernel.shape) - 1, src))
    return out


def pair_cosines(slices, before):
    """{label: [cosine of the updates of each copy pair]}: the first copy of
    each unit against each other copy, updates since `before` (values by
    variable path). Equal updates mean the pair still evolves as one unit
    (identity kernels start as e_j and e_j', not equal, so the update, not
    the weight, is what is compared). Pairs with no update at all (units
    that ReLU kept at zero on every example) are left out: no noise can
    move them."""
    out = {}
    for label, v, axis, src in slices:
        delta = np.asarray(v.numpy(), np.float64) - before[v.path]
        rows = np.moveaxis(delta, axis, 0).reshape(delta.shape[axis], -1)
        first = {}
        for j, unit in enumerate(src):
            if unit < 0:
                continue
            if unit not in first:
                first[unit] = j
                continue
            a, b = rows[first[unit]], rows[j]
            if a.any() or b.any():
                norm = np.linalg.norm(a) * np.linalg.norm(b)
                out.setdefault(label, []).append(float(a @ b / norm) if norm else 0.0)
    return out


def _data(model, seed=0):
    """A random batch of the model's inputs and integer labels."""
    x = probe(model, seed=seed)[0]
    shape = tuple(model.output.shape[1:-1])
    rng = np.random.default_rng(seed)
    return x, rng.integers(0, model.output.shape[-1], (len(x),) + shape)


def _train(model, steps, seed=0):
    model.compile(keras.optimizers.Adam(1e-3),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for step in range(steps):
        x, y = _data(model, seed + step)
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)


def _grow_and_train(name, noise):
    factory, widen, deepen, inserted = GROWN[name]
    keras.utils.set_random_seed(0)
    teacher = factory()
    student, report = n2n.expand_model(teacher, widen=widen, deepen=deepen, noise=noise,
                                       seed=0, return_report=True)
    max_abs, rel = assert_preserved(teacher, student, probe(teacher))[0]
    assert report.exact and report.max_relative_error <= 1e-5, (max_abs, rel)
    slices = copy_slices(student, inserted)
    before = {v.path: np.asarray(v.numpy(), np.float64) for _, v, _, _ in slices}
    _train(student, STEPS)
    return pair_cosines(slices, before)


@pytest.mark.parametrize("name", sorted(GROWN))
def test_no_copy_pair_stays_identical_with_noise(name):
    cosines = _grow_and_train(name, noise=0.05)
    inside = [label for label in cosines if "_deepen_" in label]
    assert inside, sorted(cosines)  # copies inside inserted layers are checked
    identical = {label: max(c) for label, c in cosines.items() if max(c) >= IDENTICAL}
    assert not identical, identical


@pytest.mark.parametrize("name", ["gpt", "resnet"])
def test_without_noise_every_copy_pair_stays_identical(name):
    """The check above can fail: Net2Net's copies (noise=0) never separate.
    (Not so where a single-layer residual block is inserted: its first layer
    starts from a fresh random draw, whose rows differ between copies.)"""
    cosines = _grow_and_train(name, noise=0.0)
    apart = {label: min(c) for label, c in cosines.items() if min(c) < IDENTICAL}
    assert not apart, apart


def test_gpt_block_copies_were_identical_before_zero_sum_noise(monkeypatch):
    """Without noise on the zeroed writers, the block copies' heads and FFN
    units stay exact copies even with noise elsewhere: what issue 23 saw."""
    from keras_net2net import rebuild

    monkeypatch.setattr(rebuild.Rebuilder, "zero_sum_noise", lambda self, source: None)
    cosines = _grow_and_train("gpt", noise=0.05)
    for part in ("query", "key", "value"):
        assert min(cosines[f"block1_mha_deepen_1/{part}/kernel"]) >= IDENTICAL, part
    assert min(cosines["block2_ffn_in_deepen_1/kernel"]) >= IDENTICAL
    assert max(cosines["block2_ffn_in/kernel"]) < IDENTICAL  # the source block separates


# -- exactness of every insertion kind under noise ---------------------------------
EXACT = [
    (gpt, 2.0, {BLOCK1: 1, BLOCK2: 2}),
    (gpt, 1.5, {BLOCK1: 1}),  # mean-padded stream: pads take no noise
    (resnet, 2.0, {("block1_conv1", "block1_out"): 2}),  # BatchNorm writers
    (mlp, 2.0, {"fc1": 2, "fc2": "residual"}),
    (cnn, 2.0, {"c1": 1, "c2": "residual"}),
    (writers, 2.0, {("up1", "add3"): 2, "stem": 1}),
    (recurrent, 2.0, {"lstm": "residual"}),
]


@pytest.mark.parametrize("factory,widen,deepen", EXACT,
                         ids=[f"{f.__name__}-{w}-{i}" for i, (f, w, _) in enumerate(EXACT)])
@pytest.mark.parametrize("noise", [0.05, 0.5])
def test_exact_under_noise(factory, widen, deepen, noise):
    keras.utils.set_random_seed(0)
    teacher = factory()
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, deepen=deepen, noise=noise,
                                       seed=3, return_report=True)
    max_abs, rel = assert_preserved(teacher, student, probe(teacher))[0]
    assert rel <= 1e-5 and report.exact, (max_abs, rel)
    assert_unchanged(teacher, snap)


def _writer_kernels(student):
    """Kernels of zeroed last writers in the GPT's block copies."""
    return {name: (student.get_layer(name)._output_dense.kernel if "mha" in name
                   else student.get_layer(name).kernel)
            for name in ("block1_mha_deepen_1", "block1_ffn_out_deepen_1",
                         "block2_mha_deepen_1", "block2_ffn_out_deepen_1")}


def test_writer_noise_is_zero_sum_seeded_and_off_at_zero():
    teacher = gpt()
    grow = lambda noise, seed: n2n.expand_model(  # noqa: E731
        teacher, widen=2.0, deepen={BLOCK1: 1, BLOCK2: 1}, noise=noise, seed=seed)
    noisy = _writer_kernels(grow(0.1, 0))
    again = _writer_kernels(grow(0.1, 0))
    other = _writer_kernels(grow(0.1, 1))
    plain = _writer_kernels(grow(0.0, 0))
    ffn = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)[1]
    g = np.asarray(next(r["mapping"] for r in ffn.groups if r["name"] == "block1_ffn_in"))
    for name, kernel in noisy.items():
        value = kernel.numpy()
        assert np.abs(value).max() > 0, name
        np.testing.assert_array_equal(value, again[name].numpy())  # seeded
        assert not np.array_equal(value, other[name].numpy())
        assert not plain[name].numpy().any(), name  # noise=0: zero, as before
    # Rows of the copies of each FFN unit sum to zero (float32 rounding).
    rows = noisy["block1_ffn_out_deepen_1"].numpy().astype(np.float64)
    sums = np.zeros((g.max() + 1, rows.shape[1]))
    np.add.at(sums, g, rows)
    assert np.abs(sums).max() <= 1e-6 * np.abs(rows).max()
    single = np.bincount(g) == 1  # a unit with one copy gets no noise
    assert not rows[np.isin(g, np.flatnonzero(single))].any()


# -- stacked spans (G_stack) ---------------------------------------------------------
@pytest.mark.parametrize("widen,noise", [(None, 0.0), (2.0, 0.05)])
def test_stacked_span_copies_trained_block_and_says_not_exact(widen, noise):
    teacher = gpt()
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, deepen={BLOCK1: "stack"},
                                       noise=noise, seed=0, tolerance=1e-6,
                                       return_report=True)  # no VerificationError
    for part in ("ln1", "mha", "ln2", "ffn_in", "ffn_out"):
        source = student.get_layer(f"block1_{part}")
        copy = student.get_layer(f"block1_{part}_deepen_1")
        assert len(source.weights) == len(copy.weights) > 0
        for a, b in zip(source.weights, copy.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    row, = report.inserted
    assert (row["mode"], row["exact"], row["count"]) == ("stack", False, 1)
    assert "G_stack" in row["note"]
    assert not report.exact and "stacked" in report.verification["not_exact"]
    # The difference is measured, not hidden: stacking changes the function.
    y = np.asarray(teacher(probe(teacher)[0]), np.float64)
    z = np.asarray(student(probe(teacher)[0]), np.float64)
    assert report.max_relative_error > 1e-3
    assert np.abs(y - z).max() / np.abs(y).max() > 1e-3
    text = str(report)
    assert "(stack, not exact)" in text and "not function-preserving" in text
    assert "verified in" not in text
    assert '"block1_ln1..block1_res2": "stack"' in report.to_json()
    assert_unchanged(teacher, snap)


def test_stack_takes_spans_that_cannot_start_as_the_identity():
    """Any span that keeps its input's shape can be stacked (nothing is
    zeroed); as a block copy it is refused."""
    inp = keras.Input((8,))
    x = L.Dense(8, activation="relu", name="fc1")(inp)
    x = L.Dense(8, activation="relu", name="fc2")(x)
    teacher = keras.Model(inp, L.Dense(2, name="logits")(x))
    with pytest.raises(n2n.errors.PlanError, match="not the identity at any weights"):
        n2n.expand_model(teacher, deepen={("fc1", "fc2"): 1})
    student, report = n2n.expand_model(teacher, deepen={("fc1", "fc2"): "stack"},
                                       return_report=True)
    np.testing.assert_array_equal(student.get_layer("fc1_deepen_1").kernel.numpy(),
                                  teacher.get_layer("fc1").kernel.numpy())
    assert not report.exact and report.verification["inference"]
    assert len(student.layers) == len(teacher.layers) + 2


def test_stack_is_a_span_option_only():
    with pytest.raises(n2n.errors.PlanError, match="'identity' or 'residual'"):
        n2n.expand_model(mlp(), deepen={"fc1": "stack"})


def test_flags_parse_stack():
    assert shared_flags.parse_deepen("block1_ln1..block1_res2:stack,fc1:2") == {
        ("block1_ln1", "block1_res2"): "stack", "fc1": 2}
    with pytest.raises(ValueError, match=re.escape("first..last:count|block|stack")):
        shared_flags.parse_deepen("fc1:stack")
