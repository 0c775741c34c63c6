"""keras_hub's layers in a user's functional graph: TransformerEncoder /
TransformerDecoder grow what can grow when the model width cannot (the block's
output is the model's output): the feed-forward width, and heads only where
the head dim (width // heads, derived by keras_hub) is kept."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from tests.growth import assert_keras_round_trip
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot
from tests.hub.helpers import keras_hub


def _perturbed(model):
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    return model


def encoder_out(hidden=16, heads=4, block="encoder", normalize_first=False):
    """Token and position embedding, then one block: its output is the model's."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((8,), dtype="int32")
    x = keras_hub.layers.TokenAndPositionEmbedding(50, 8, hidden, name="embed")(tokens)
    if block == "encoder":
        layer = keras_hub.layers.TransformerEncoder(32, heads, normalize_first=normalize_first,
                                                    name="block")
    else:
        layer = keras_hub.layers.TransformerDecoder(32, heads, normalize_first=normalize_first,
                                                    name="block")
    return _perturbed(keras.Model(tokens, layer(x)))


def encoder_head(hidden=12, heads=3):
    """The block feeds a Dense head: the model width can grow."""
    keras.utils.set_random_seed(0)
    tokens = keras.Input((8,), dtype="int32")
    x = keras_hub.layers.TokenAndPositionEmbedding(50, 8, hidden, name="embed")(tokens)
    x = keras_hub.layers.TransformerEncoder(24, heads, normalize_first=True, name="block")(x)
    return _perturbed(keras.Model(tokens, keras.layers.Dense(5, name="head")(x)))


def _inner(report, key):
    return next(r["new_width"] for r in report.inner if r["width"] == key)


@pytest.mark.parametrize("block", ["encoder", "decoder"])
@pytest.mark.parametrize("normalize_first", [False, True])
def test_a_block_writing_the_output_grows_its_ffn_and_keeps_its_heads(
        block, normalize_first, tmp_path):
    teacher = encoder_out(block=block, normalize_first=normalize_first)
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert_unchanged(teacher, snap)
    assert _inner(report, "intermediate_dim") == 64
    assert _inner(report, "num_heads") == 4 and _inner(report, "head_dim") == 4
    assert any(s["request"] == "block:num_heads" and "head dim" in s["reason"]
               for s in report.skipped), report.skipped
    x = probe(teacher)
    assert_preserved(teacher, student, x)
    assert_keras_round_trip(student, x, tmp_path)


@pytest.mark.parametrize("widen,hidden,heads", [(2.0, 24, 6), (1.5, 18, 4)])
def test_a_block_before_a_head_grows_heads_with_the_width(widen, hidden, heads, tmp_path):
    """x1.5 asks for 18 wide and ceil(4.5) = 5 heads, whose head dim would be
    18 // 5 = 3: 4 heads keep the head dim 4."""
    teacher = encoder_head()
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, return_report=True)
    assert student.get_layer("block").num_heads == heads
    assert student.get_layer("embed").embedding_dim == hidden
    assert _inner(report, "head_dim") == 4
    x = probe(teacher)
    assert_preserved(teacher, student, x)
    assert_keras_round_trip(student, x, tmp_path)


def test_heads_asked_for_a_kept_width_are_refused_when_strict():
    from keras_net2net import errors

    teacher = encoder_out()
    snap = snapshot(teacher)
    with pytest.raises(errors.FrozenGroupError) as info:
        n2n.expand_model(teacher, widen={"block": {"num_heads": 8}}, strict=True)
    assert_unchanged(teacher, snap)
    message = str(info.value)
    assert message.startswith("Expected") and "head dim" in message and "Fix:" in message
