"""The residual-stream rotation (issue 23): exact, and it parts the copies.

Net2WiderNet's stream copies get the same Adam step forever; after the
rotation they are no longer coordinate pairs, so Adam moves them apart."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import models
from keras_net2net.training import stream_rotation

VOCAB, LENGTH, WIDTH = 40, 12, 16


def _teacher(depth=2, seed=1):
    keras.utils.set_random_seed(seed)
    teacher = models.build_model("gpt", (LENGTH,), VOCAB, width=WIDTH, depth=depth)
    rng = np.random.default_rng(seed)
    for variable in teacher.weights:  # off every initial constant (ones, zeros)
        variable.assign(variable.numpy() + 0.2 * rng.normal(size=variable.shape))
    return teacher


def _tokens(seed=0, batch=8):
    return np.random.default_rng(seed).integers(0, VOCAB, (batch, LENGTH)).astype("int32")


def test_rotation_is_orthogonal_keeps_the_ones_direction_and_its_angle():
    rng = np.random.default_rng(3)
    # Two channels: the only rotation keeping (1, 1) is the identity.
    np.testing.assert_allclose(stream_rotation.rotation(2, angle=1.0, rng=rng), np.eye(2),
                               atol=1e-12)
    # Three channels: a rotation by the angle about the (1, 1, 1) axis.
    q = stream_rotation.rotation(3, angle=0.7, rng=rng)
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(q @ np.ones(3), np.ones(3), atol=1e-12)
    assert np.trace(q) == pytest.approx(1 + 2 * np.cos(0.7), abs=1e-12)
    q = stream_rotation.rotation(32, angle=1.0, rng=rng)
    np.testing.assert_allclose(q @ q.T, np.eye(32), atol=1e-12)
    np.testing.assert_allclose(q.sum(axis=1), np.ones(32), atol=1e-12)
    assert np.max(np.abs(np.angle(np.linalg.eigvals(q)))) == pytest.approx(1.0, abs=1e-9)


def test_rotated_student_computes_what_the_teacher_did():
    teacher = _teacher()
    blocks = {(f"block{i}_ln1", f"block{i}_res2"): 1 for i in (1, 2)}
    student = n2n.expand_model(teacher, widen=2.0, deepen=blocks, noise=0.5, seed=0)
    x = _tokens()
    y_teacher, y_grown = teacher(x).numpy(), student(x).numpy()
    embedding = student.get_layer("token_embedding").embeddings.numpy()
    result = stream_rotation.rotate_stream(student, angle=1.0, seed=0)
    y = student(x).numpy()
    (q,) = result.rotations
    assert q.shape == (2 * WIDTH, 2 * WIDTH)
    # The weights did change: the embedding is the old one in the new basis.
    rotated = student.get_layer("token_embedding").embeddings.numpy()
    assert np.max(np.abs(rotated - embedding)) > 0.1
    np.testing.assert_allclose(rotated @ q, embedding, atol=1e-5)
    for reference in (y_grown, y_teacher):
        max_abs = np.max(np.abs(y - reference))
        assert max_abs / np.max(np.abs(reference)) < 1e-5, max_abs
    assert result.max_relative_error < 1e-5


def _train(model, steps=4):
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    for step in range(steps):
        x = _tokens(seed=10 + step)
        model.train_on_batch(x, np.roll(x, -1, axis=1))


def _copy_pairs(embedding):
    """(teacher column, copy column) pairs of a grown stream, found by value."""
    width = embedding.shape[1]
    return [(next(i for i in range(width) if np.array_equal(embedding[:, i],
                                                             embedding[:, j])), j)
            for j in range(WIDTH, width)]


@pytest.mark.parametrize("rotate", [False, True])
def test_adam_parts_the_stream_copies_only_after_the_rotation(rotate):
    student = n2n.expand_model(_teacher(depth=1), widen=2.0, noise=0.0, seed=0)
    embeddings = student.get_layer("token_embedding").embeddings
    pairs = _copy_pairs(embeddings.numpy())
    q = np.eye(2 * WIDTH)
    if rotate:
        (q,) = stream_rotation.rotate_stream(student, angle=1.0, seed=0).rotations
    _train(student)
    stream = embeddings.numpy() @ q  # back in the grown basis
    gaps = [np.max(np.abs(stream[:, i] - stream[:, j])) for i, j in pairs]
    if rotate:
        assert min(gaps) > 1e-3, gaps
    else:
        assert max(gaps) < 1e-6, gaps


def _no_stream_model():
    inputs = keras.Input((4,))
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Dense(5)(inputs)))


def _post_ln_model():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(6, name="embed")(inputs)
    h = keras.layers.LayerNormalization(name="ln")(x)
    x = keras.layers.Add(name="res")([x, keras.layers.Dense(6, name="ffn")(h)])
    return keras.Model(inputs, keras.layers.Dense(2, name="head")(x))


@pytest.mark.parametrize("make, words", [
    (_no_stream_model, "Expected a residual stream"),
    (_post_ln_model, r"read only by Add and LayerNormalization.*layer 'head' \(Dense\)"),
])
def test_unsupported_models_are_named_and_left_as_they_were(make, words):
    model = make()
    before = [v.numpy().copy() for v in model.weights]
    with pytest.raises(errors.UnsupportedModelError, match=words) as caught:
        stream_rotation.rotate_stream(model, seed=0)
    assert "Fix:" in str(caught.value)
    for variable, value in zip(model.weights, before):
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.mark.parametrize("angle", [0, -1.0, 4.0, "wide"])
def test_bad_angles_are_named(angle):
    with pytest.raises(ValueError, match=r"angle in \(0, pi\].*Received: angle="):
        stream_rotation.rotate_stream(_no_stream_model(), angle=angle)
