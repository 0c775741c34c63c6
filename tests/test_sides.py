"""Channel groups on two axes of one tensor (`keras_net2net.rules.sides`,
issue 25): an MLP-Mixer's token mixer transposes its stream so that a Dense
acts on the patch axis, and Concatenate joins a feature or a class token beside
embeddings. The stream grows through the transposes exactly; parts whose
channels sit on different axes keep their width, with a reason naming the
Concatenate."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from keras_net2net import verify as verify_lib
from keras_net2net import errors
from tests.factories import randomize_state
from tests.growth import assert_keras_round_trip
from tests.growth import assert_preserved
from tests.growth import assert_refused
from tests.growth import probe

L = keras.layers

PATCHES, CHANNELS = 6, 8


def _swap(how, name):
    """(B, P, C) <-> (B, C, P), written the ways keras-io code writes it."""
    if how == "permute":
        return L.Permute((2, 1), name=name)
    if how == "transpose":
        return lambda x: ops.transpose(x, axes=(0, 2, 1))
    if how == "swapaxes":
        return lambda x: ops.swapaxes(x, 1, 2)
    return lambda x: ops.moveaxis(x, -1, 1)


def mixer(how="permute", blocks=2):
    """MLP-Mixer: Dense patch embedding, then blocks of token mixing (LayerNorm,
    transpose, Dense over the patches, transpose back, residual add) and
    channel mixing (LayerNorm, Dense MLP, residual add), pooled, a head."""
    inputs = keras.Input((PATCHES, 5))
    x = L.Dense(CHANNELS, name="embed")(inputs)
    for i in range(blocks):
        y = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}a")(x)
        y = _swap(how, f"to_tokens{i}")(y)
        y = L.Dense(12, activation="gelu", name=f"token_fc{i}")(y)
        y = L.Dense(PATCHES, name=f"token_out{i}")(y)
        y = _swap(how, f"to_channels{i}")(y)
        x = L.Add(name=f"add{i}a")([x, y])
        y = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}b")(x)
        y = L.Dense(16, activation="gelu", name=f"channel_fc{i}")(y)
        y = L.Dense(CHANNELS, name=f"channel_out{i}")(y)
        x = L.Add(name=f"add{i}b")([x, y])
    x = L.LayerNormalization(epsilon=1e-6, name="ln_final")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def _hidden(report):
    return [g for g in report.groups
            if not any(r.startswith(("model input", "model output")) for r in g["reasons"])]


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.mark.parametrize("how", ["permute", "transpose", "swapaxes", "moveaxis"])
@pytest.mark.parametrize("verify", [True, False])
def test_mixer_stream_grows_through_transposes(how, verify, tmp_path):
    teacher = randomize_state(mixer(how))
    before = _weights(teacher)
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    (max_abs, rel), = assert_preserved(teacher, student, x)
    if rel > 1e-6:  # above float32 rounding: the same growth in float64 must be exact
        twin = verify_lib.float64_twin(teacher)
        student64 = n2n.expand_model(twin, widen=2.0, seed=0, verify=False)
        assert_preserved(twin, student64, x, rtol=1e-9)
    assert max_abs < 1e-5, max_abs
    assert student.get_layer("embed").units == 2 * CHANNELS  # the stream
    for i in range(2):
        assert student.get_layer(f"token_fc{i}").units == 24
        assert student.get_layer(f"channel_fc{i}").units == 32
        assert student.get_layer(f"channel_out{i}").units == 2 * CHANNELS
        # The token mixer's output is the patch axis: its size is the input's.
        assert student.get_layer(f"token_out{i}").units == PATCHES
    kept = [g for g in _hidden(report) if g["frozen"]]
    assert len(kept) == 2 and all(
        "sit on different axes" in " ".join(g["reasons"]) for g in kept), kept
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)
    assert_keras_round_trip(student, x, tmp_path)


def test_mixer_grows_at_a_per_layer_width():
    """widen={"embed": 12}: 1.5x on a LayerNorm-fed stream that also travels
    transposed. Pads would not survive the token mixer's GELU, so the stream
    keeps whole multiples: the request is refused, with the reason."""
    teacher = randomize_state(mixer("transpose", blocks=1))
    assert_refused(teacher, dict(widen={"embed": 12}, strict=True), errors.FrozenGroupError,
                   ["widen={'embed': 12}", "another axis"])
    student = n2n.expand_model(teacher, widen={"embed": 16}, seed=0)
    assert_preserved(teacher, student, probe(teacher), rtol=1e-6)


def test_dense_on_a_channels_first_axis_passes_the_channels():
    """A Dense on the last axis of (B, C, T) carries the channels on axis 1."""
    inputs = keras.Input((7, 4))
    x = L.Dense(6, name="fc")(inputs)  # (B, 7, 6)
    x = L.Permute((2, 1))(x)  # (B, 6, 7): channels on axis 1
    x = L.Dense(5, activation="relu", name="time_fc")(x)  # (B, 6, 5)
    x = L.BatchNormalization(axis=-1, name="bn")(x)
    x = ops.squeeze(L.Dense(1, name="pool_time")(x), axis=-1)  # (B, 6)
    teacher = randomize_state(keras.Model(inputs, L.Dense(2, name="logits")(x)))
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    assert_preserved(teacher, student, probe(teacher), rtol=1e-6)
    assert student.get_layer("fc").units == 12
    assert student.get_layer("time_fc").units == 10


# -- Concatenate beside embeddings ---------------------------------------------

def class_token_on_sequence_axis():
    """A class token made from a numeric feature (Dense, expand_dims),
    concatenated with token embeddings on the sequence axis."""
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    number = keras.Input((3,), name="number")
    emb = L.Embedding(20, 8, name="emb")(tokens)  # (B, 5, 8)
    cls = ops.expand_dims(L.Dense(8, name="cls_fc")(number), axis=1)  # (B, 1, 8)
    x = L.Concatenate(axis=1, name="join")([cls, emb])  # sequence axis
    x = L.LayerNormalization(name="ln")(x)
    x = L.Dense(10, activation="relu", name="fc")(x)
    x = x[:, 0, :]
    return keras.Model([tokens, number], L.Dense(2, name="logits")(x))


def numeric_features_beside_embeddings():
    """TabTransformer: scalar features (rank-1 inputs, expand_dims'd and
    concatenated: no channel group) joined with flattened embeddings on the
    channel axis."""
    cats = [keras.Input((), dtype="int32", name=f"cat{i}") for i in range(2)]
    nums = [keras.Input((), name=f"num{i}") for i in range(3)]
    embs = [L.Embedding(7, 4, name=f"emb{i}")(c) for i, c in enumerate(cats)]
    x = ops.stack(embs, axis=1)  # (B, 2, 4)
    x = L.Dense(4, activation="relu", name="mix")(x)
    x = L.Flatten()(x)
    numeric = L.Concatenate(axis=-1)([ops.expand_dims(n, -1) for n in nums])  # (B, 3)
    x = L.Concatenate(axis=-1, name="join")([x, numeric])
    x = L.Dense(6, activation="relu", name="fc")(x)
    return keras.Model(cats + nums, L.Dense(1, name="out")(x))


def numeric_feature_on_channel_axis():
    """A per-token scalar (expand_dims of a (B, T) input) beside embeddings on
    the channel axis: its run keeps its size, the embeddings grow."""
    tokens = keras.Input((5,), dtype="int32", name="tokens")
    values = keras.Input((5,), name="values")
    emb = L.Embedding(20, 8, name="emb")(tokens)
    x = L.Concatenate(axis=-1, name="join")([emb, ops.expand_dims(values, -1)])  # (B, 5, 9)
    x = L.Dense(6, activation="relu", name="fc")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model([tokens, values], L.Dense(2, name="logits")(x))


@pytest.mark.parametrize("factory,grown", [
    (class_token_on_sequence_axis, {"emb": 16, "cls_fc": 16, "fc": 20}),
    (numeric_features_beside_embeddings, {"emb0": 8, "emb1": 8, "mix": 8, "fc": 12}),
    (numeric_feature_on_channel_axis, {"emb": 16, "fc": 12}),
], ids=["class_token", "tabtransformer", "per_token_scalar"])
@pytest.mark.parametrize("verify", [True, False])
def test_concatenate_beside_embeddings_grows(factory, grown, verify):
    teacher = randomize_state(factory())
    before = _weights(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert_preserved(teacher, student, probe(teacher), rtol=1e-6)
    sizes = {name: getattr(student.get_layer(name), "units", None) or
             student.get_layer(name).output_dim for name in grown}
    assert sizes == grown, sizes
    assert not [g for g in report.groups if g["frozen"] and set(g["producers"]) & set(grown)]
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


def channels_on_different_axes():
    """Token embeddings (channels on axis 2) and a part whose channels sit on
    axis 1 (a Dense over a transposed input), joined on axis 1."""
    tokens = keras.Input((4, 3), name="tokens")
    other = keras.Input((8, 5), name="other")
    emb = L.Dense(8, name="emb")(tokens)  # (B, 4, 8)
    part = L.Permute((2, 1))(L.Dense(2, name="part")(other))  # (B, 2, 8)
    x = L.Concatenate(axis=1, name="join")([emb, part])  # (B, 6, 8)
    x = L.Dense(6, activation="relu", name="fc")(x)
    x = L.Flatten()(x)
    return keras.Model([tokens, other], L.Dense(2, name="logits")(x))


def test_concatenate_of_channels_on_different_axes_is_refused_by_name():
    teacher = randomize_state(channels_on_different_axes())
    assert_refused(teacher, dict(widen={"emb": 16}, strict=True), errors.FrozenGroupError,
                   ["widen={'emb': 16}", "Concatenate 'join'", "different axes"])
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher), rtol=1e-6)
    assert student.get_layer("emb").units == 8 and student.get_layer("fc").units == 12
    kept = {g["name"] if "name" in g else "": g for g in _hidden(report) if g["frozen"]}
    assert any("Concatenate 'join'" in r for g in kept.values() for r in g["reasons"]), kept
