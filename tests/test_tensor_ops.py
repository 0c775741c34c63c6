"""keras.ops that move, cut or contract the channel axis, and Reshapes that
fold or unfold it: growth follows the channels exactly, or keeps the width
where a contraction over channels would count copies twice."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers


def csp_split():
    """CSPNet: half the channels skip the block, the halves are joined again."""
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    skip, work = ops.split(x, 2, axis=-1)
    work = L.Conv2D(4, 3, padding="same", activation="relu", name="block")(work)
    x = ops.concatenate([skip, work], axis=-1)
    x = L.Conv2D(6, 1, name="transition")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def uneven_split():
    inp = keras.Input((9,))
    x = L.Dense(7, activation="relu", name="fc")(inp)
    a, b = ops.split(x, [3], axis=-1)
    x = L.Add()([L.Dense(5, name="from_a")(a), L.Dense(5, name="from_b")(b)])
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def first_token_head():
    """BERT's shape: token + position embeddings, a per-token MLP, and the
    first token's vector as the sentence's."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    positions = keras.Input((6,), dtype="int32", name="positions")
    x = L.Add()([L.Embedding(20, 8, name="token_embed")(tokens),
                 L.Embedding(6, 8, name="position_embed")(positions)])
    x = L.Dense(12, activation="gelu", name="ffn_in")(x)
    x = L.Dense(8, name="ffn_out")(x)
    x = x[:, 0, :]
    x = L.Dense(5, activation="tanh", name="pooler")(x)
    return keras.Model([tokens, positions], L.Dense(2, name="logits")(x))


def moved_axes():
    inp = keras.Input((7, 3))
    x = L.Conv1D(5, 3, padding="same", name="conv")(inp)
    x = ops.transpose(x, (0, 2, 1))  # (B, C, T)
    x = ops.relu(x)
    x = ops.swapaxes(x, 1, 2)  # (B, T, C)
    x = L.Dense(4, name="fc1")(x)
    x = ops.moveaxis(x, 2, 1)  # (B, C, T)
    x = ops.moveaxis(x, 1, -1)
    x = ops.pad(x, ((0, 0), (2, 1), (0, 0)))  # the time axis only
    x = ops.expand_dims(x, 1)
    x = L.Conv2D(3, (1, 3), name="conv2d")(x)
    x = ops.squeeze(x, axis=1)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def stacked():
    inp = keras.Input((5,))
    a = L.Dense(6, activation="relu", name="a")(inp)
    b = L.Dense(6, activation="tanh", name="b")(inp)
    x = ops.stack([a, b], axis=1)  # (B, 2, 6)
    x = L.Dense(4, name="fc")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def hand_written_attention(kind):
    """Scores contract the query/key channels (kept at their width); the
    values' channels pass through the weighted sum and grow."""
    inp = keras.Input((5, 4))
    q = L.Dense(6, name="q")(inp)
    k = L.Dense(6, name="k")(inp)
    v = L.Dense(7, name="v")(inp)
    if kind == "matmul":
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1)))
        x = ops.matmul(ops.softmax(scores, axis=-1), v)
    elif kind == "einsum":
        scores = ops.einsum("btd,bsd->bts", q, k)
        x = ops.einsum("...ts,...sd->...td", ops.softmax(scores, axis=-1), v)
    else:
        scores = L.Dot(axes=(2, 2), name="scores")([q, k])
        x = L.Dot(axes=(2, 1), name="mix")([L.Softmax(name="attn")(scores), v])
    x = L.Dense(5, activation="relu", name="out_proj")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def dcgan_generator():
    z = keras.Input((6,))
    x = L.Dense(4 * 4 * 5, name="project")(z)
    x = L.Reshape((4, 4, 5), name="unflatten")(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU()(x)
    x = L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu", name="up1")(x)
    return keras.Model(z, L.Conv2D(1, 3, padding="same", name="image")(x))


def conv_reshape_gru():
    """Speech models: a conv front end, frequencies folded into channels, a GRU."""
    inp = keras.Input((10, 6, 1))
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inp)
    x = L.Reshape((10, 6 * 4), name="fold")(x)
    x = L.GRU(7, return_sequences=True, name="gru")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def ops_reshape():
    inp = keras.Input((8,))
    x = L.Dense(12, name="fc")(inp)
    x = ops.reshape(x, (-1, 3, 4))
    x = L.Dense(5, name="fc2")(x)
    x = ops.reshape(x, (-1, 15))
    return keras.Model(inp, L.Dense(2, name="logits")(x))


# factory -> layers that must grow (every hidden producer), and must not.
CASES = {
    csp_split: ({"stem", "block", "transition"}, {"logits"}),
    uneven_split: ({"fc", "from_a"}, {"logits"}),
    first_token_head: ({"token_embed", "position_embed", "ffn_in", "ffn_out", "pooler"},
                       {"logits"}),
    moved_axes: ({"conv", "fc1", "conv2d"}, {"logits"}),
    stacked: ({"a", "b", "fc"}, {"logits"}),
    lambda: hand_written_attention("matmul"): ({"v", "out_proj"}, {"q", "k"}),
    lambda: hand_written_attention("einsum"): ({"v", "out_proj"}, {"q", "k"}),
    lambda: hand_written_attention("dot"): ({"v", "out_proj"}, {"q", "k"}),
    dcgan_generator: ({"project", "up1"}, {"image"}),
    conv_reshape_gru: ({"conv", "gru"}, {"logits"}),
    ops_reshape: ({"fc", "fc2"}, {"logits"}),
}
UNFLATTENED = {"project": 16}
IDS = ["csp_split", "uneven_split", "first_token_head", "moved_axes", "stack",
       "attention_matmul", "attention_einsum", "attention_dot", "dcgan_generator",
       "conv_reshape_gru", "ops_reshape"]


@pytest.mark.parametrize("factory", list(CASES), ids=IDS)
@pytest.mark.parametrize("widen", [2.0, 1.5])
def test_growth_follows_the_channels(factory, widen):
    teacher = randomize_state(factory())
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert_unchanged(teacher, snap)
    widths = {r["layer"]: (r["old_width"], r["new_width"]) for r in report.layers}
    grow, keep = CASES[factory]
    for name in grow:
        old, new = widths[name]
        tiles = UNFLATTENED.get(name, 1)  # a writer of `tiles` positions of C channels
        assert new == tiles * int(np.ceil(old // tiles * widen - 1e-9)), (name, old, new)
    for name in keep:
        assert widths[name][0] == widths[name][1], name
    assert not report.skipped, report.skipped


def test_uneven_split_points_move_with_the_pieces():
    teacher = randomize_state(uneven_split())
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    split = next(op for op in _ops(student) if type(op).__name__ == "Split")
    assert list(split.indices_or_sections) == [6]
    assert student.get_layer("from_a").kernel.shape[0] == 6
    assert student.get_layer("from_b").kernel.shape[0] == 8


def test_unflatten_grows_the_writer_interleaved():
    """Dense(h*w*C) -> Reshape((h, w, C)): unit p*C + c of the Dense is channel
    c at position p, so the copies of channel c sit at p*C' + j for every p."""
    teacher = randomize_state(dcgan_generator())
    student = n2n.expand_model(teacher, widen={"project": 160}, mapping="round_robin")
    assert student.get_layer("unflatten").target_shape == (4, 4, 10)
    old = teacher.get_layer("project").kernel.numpy().reshape(6, 16, 5)
    new = student.get_layer("project").kernel.numpy().reshape(6, 16, 10)
    np.testing.assert_array_equal(new, np.concatenate([old, old], axis=-1))


def test_contracted_channels_are_kept_with_the_reason():
    teacher = randomize_state(hand_written_attention("einsum"))
    report = n2n.explain_model(teacher)
    q = next(g for g in report.groups if "q" in g["producers"])
    assert q["frozen"] and "contracts the channel axis" in " ".join(q["reasons"])


def test_indexing_into_channels_is_a_barrier():
    inp = keras.Input((6,))
    x = L.Dense(8, name="fc")(inp)
    x = L.Dense(4, name="fc2")(x[:, :5])
    teacher = randomize_state(keras.Model(inp, L.Dense(2, name="logits")(x)))
    student, report = n2n.expand_model(teacher, widen=2.0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    fc = next(g for g in report.groups if "fc" in g["producers"])
    assert fc["frozen"] and "indexes into the channel axis" in fc["reasons"][0]
    assert student.get_layer("fc2").units == 8


def test_float64_growth_is_exact_to_1e9(float64):
    teachers = [randomize_state(f()) for f in (csp_split, moved_axes, first_token_head,
                                               dcgan_generator, ops_reshape)]
    assert all(t.get_layer("logits" if "logits" in [l.name for l in t.layers] else "image")
               .compute_dtype == "float64" for t in teachers)
    for teacher in teachers:
        student = n2n.expand_model(teacher, widen=1.5, seed=0)
        assert_preserved(teacher, student, probe(teacher), rtol=1e-9)


def test_students_round_trip_through_keras_files(tmp_path):
    for i, factory in enumerate((csp_split, moved_axes, first_token_head, dcgan_generator)):
        teacher = randomize_state(factory())
        student = n2n.expand_model(teacher, widen=2.0, seed=0)
        path = tmp_path / f"student{i}.keras"
        student.save(path)
        loaded = keras.models.load_model(path)
        x = probe(teacher)
        feed = x if len(x) > 1 else x[0]
        np.testing.assert_array_equal(np.asarray(student(feed)), np.asarray(loaded(feed)))


def _ops(model):
    return [node.operation for nodes in model._nodes_by_depth.values() for node in nodes]


def test_channels_first_squeeze_excite_reshape_keeps_the_channel_axis():
    """(B, C) -> Reshape((C, 1, 1)) keeps the channels on axis 1 (found by
    fuzzing: it was read as an unfold onto the last axis, and the student
    could not be built)."""
    inp = keras.Input((2, 6, 6))
    x = L.Conv2D(4, 3, padding="same", data_format="channels_first", use_bias=False,
                 name="conv")(inp)
    s = L.GlobalAveragePooling2D(data_format="channels_first")(x)
    s = L.Dense(2, activation="relu", name="se_reduce")(s)
    s = L.Dense(4, activation="sigmoid", name="se_expand")(s)
    x = x * L.Reshape((4, 1, 1), name="se_reshape")(s)
    x = L.GlobalAveragePooling2D(data_format="channels_first")(x)
    teacher = randomize_state(keras.Model(inp, L.Dense(2, name="logits")(x)))
    student = n2n.expand_model(teacher, widen=1.5, seed=0)
    assert_preserved(teacher, student, probe(teacher))
    assert student.get_layer("se_expand").units == 6
    assert student.get_layer("se_reshape").target_shape == (6, 1, 1)
