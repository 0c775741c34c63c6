"""Shared checks for keras_hub growth tests (tests/hub/test_*.py)."""

import keras
import numpy as np
import pytest

keras_hub = pytest.importorskip("keras_hub")

import keras_net2net as n2n  # noqa: E402
from keras_net2net.hub import backbone as hub_backbone  # noqa: E402
from tests.growth import assert_unchanged  # noqa: E402
from tests.growth import snapshot  # noqa: E402

TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
            intermediate_dim=32, max_sequence_length=16)
KEYS = ("hidden_dim", "num_heads", "intermediate_dim", "num_layers")


def perturb(model, seed=0, scale=0.2):
    """Every weight moved by N(0, scale): no weight stays 0 or 1 (biases,
    gammas); at scale 1 a tiny LM's greedy continuation varies."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0.0, scale, w.shape).astype(w.dtype))
    assert all(np.all((w.numpy() != 0) & (w.numpy() != 1)) for w in model.weights)
    return model


def weights_of(model):
    return [w.numpy().copy() for w in model.weights]


def refused(teacher, error, **kwargs):
    """expand_model(teacher, **kwargs) raises `error` in Keras' form, and the
    teacher is bit-identical after it (every weight and its config). Returns
    the message."""
    snap = snapshot(teacher)
    with pytest.raises(error) as info:
        n2n.expand_model(teacher, **kwargs)
    assert_unchanged(teacher, snap)
    message = str(info.value)
    assert message.startswith("Expected") and "Fix:" in message, message
    return message


def grow_and_check(teacher, tmp_path, expected, **kwargs):
    """Grows `teacher`, then checks: same class, config values, every
    requested width grown, the teacher unchanged, every output within 1e-5
    relative (backbone outputs read back through the mapping), and the
    `.keras` round trip exact. Returns (student, report, relative errors)."""
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    backbone = student.backbone if isinstance(student, keras_hub.models.Task) else student
    for key, value in expected.items():
        assert backbone.get_config()[key] == value, (key, backbone.get_config()[key], value)
    for row in report.inner:
        asked = {"num_heads": "num_heads", "intermediate_dim": "intermediate_dim"}
        if row["width"] in asked and expected.get(asked[row["width"]]) is not None:
            assert row["new_width"] == expected[asked[row["width"]]], row
    rows = report.verification["inference"]
    assert rows, "nothing was compared"
    errors = [row["max_rel"] for row in rows]
    assert max(errors) <= 1e-5, rows
    # Independent of the report: the outputs recomputed here.
    x = hub_backbone.probe(teacher, seed=1)
    y = keras.tree.flatten(teacher(x, training=False))
    z = keras.tree.flatten(student(x, training=False))
    assert len(y) == len(z)
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(student)
    for a, b in zip(z, keras.tree.flatten(loaded(x, training=False))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return student, report, errors, (y, z)


def readout(value, g, tied):
    """Independent of the library: teacher channel i is the first student
    channel j with g[j] == i; a tied norm divided it by the copy count c_i
    and the plan scaled the stream by 1 / sqrt(s), s = copies / width."""
    g = np.asarray(g)
    old = int(g.max()) + 1
    first = [int(np.flatnonzero(g == i)[0]) for i in range(old)]
    out = np.asarray(value, np.float64)[..., first]
    if tied:
        counts = np.bincount(g[g >= 0], minlength=old)
        out = out * counts * np.sqrt(len(g) / np.count_nonzero(g >= 0))
    return out


def relative(y, z):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    return float(np.max(np.abs(y - z)) / np.max(np.abs(y)))


ONE_PROMPT = {"token_ids": np.array([[5, 7, 9, 0, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}


def greedy_decoder_tokens(model, prompt):
    """A seq2seq LM's greedy decoder tokens for `prompt` (compiles generate)."""
    model.compile(sampler="greedy")
    return model.generate(prompt, max_length=8, stop_token_ids=None)["decoder_token_ids"]


def assert_same_greedy_tokens(teacher, student, prompt=ONE_PROMPT, **compile_kwargs):
    """Both causal LMs decode `prompt` greedily into the same, non-constant tokens."""
    tokens = []
    for model in (teacher, student):
        model.compile(sampler="greedy", **compile_kwargs)
        tokens.append(model.generate(prompt, max_length=8, stop_token_ids=None)["token_ids"])
    np.testing.assert_array_equal(tokens[0], tokens[1])
    assert len(np.unique(tokens[0][:, 3:])) > 1, "a constant continuation proves little"
