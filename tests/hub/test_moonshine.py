"""keras_hub Moonshine (a Conv1D/GroupNorm audio front end, pre-LN encoder
blocks with partial rotary attention; a token embedding into pre-LN decoder
blocks with rotary self attention, cross attention and SwiGLU) grows into a
bigger MoonshineBackbone: x2, and deeper in either stack on its own, each
stream read back through its own mapping. x1.5 is refused with the reason
(the group norm needs every filter copied equally), the teacher unchanged.
MoonshineAudioToText (its head the tied token embedding) grows x2 with it."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, filter_dim=16, encoder_num_layers=1, decoder_num_layers=1,
            hidden_dim=16, intermediate_dim=8, encoder_num_heads=2, decoder_num_heads=2,
            feedforward_expansion_factor=2, max_position_embeddings=64)
# keras.tree order of the outputs, and the layer whose mapping each stream has.
STREAMS = {"decoder_sequence_output": "token_embedding", "encoder_attention_mask": None,
           "encoder_sequence_output": "conv3"}


@pytest.fixture(scope="module")
def moonshine():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.MoonshineBackbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, filter_dim=32, encoder_num_heads=4,
                           decoder_num_heads=4, intermediate_dim=16)),
    (dict(widen={"hidden_dim": 32}, deepen=["encoder_block_0", "decoder_block_0"]),
     dict(hidden_dim=32, encoder_num_heads=4, decoder_num_heads=4, encoder_num_layers=2,
          decoder_num_layers=2)),
])
def test_moonshine_grows_into_its_class(moonshine, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(moonshine, tmp_path, expected, **kwargs)
    mappings = report.mappings()
    found = {}
    for (name, producer), a, b in zip(STREAMS.items(), y, z):
        if producer is None:  # the mask: no channels
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            continue
        g = mappings[producer]
        assert len(g) == expected["hidden_dim"]
        found[name] = relative(a, readout(b, g, tied=False))
        assert found[name] <= 1e-5, (name, found[name])
    print(f"MoonshineBackbone {kwargs}: {found}, report {max(errs):.2e}")
    # The SwiGLU's [value | gate] halves each grew: (2, 64) columns.
    assert tuple(student.get_layer("decoder_block_0").ff.dense_1.kernel.shape) == (32, 128)
    if "deepen" in kwargs:  # the new decoder block's writers are zero
        block = student.get_layer("decoder_block_1")
        assert not np.any(block.ff.dense_2.kernel.numpy())
        assert not np.any(block.cross_attention._output_dense.kernel.numpy())


def test_moonshine_refuses_a_non_integer_factor(moonshine):
    message = refused(moonshine, errors.FrozenGroupError, widen=1.5)
    for fragment in ("MoonshineBackbone", "widen=1.5", "group_norm", "integer"):
        assert fragment in message, message


def test_moonshine_refuses_a_free_head_dim(moonshine):
    message = refused(moonshine, errors.PlanError, widen={"hidden_dim": 24,
                                                          "decoder_num_heads": 2})
    assert "decoder" in message and "rotary" in message, message


def test_moonshine_audio_to_text_grows_with_its_tied_head(moonshine, tmp_path):
    task = keras_hub.models.MoonshineAudioToText(backbone=moonshine, preprocessor=None)
    student, _, errs, (y, z) = grow_and_check(task, tmp_path, dict(hidden_dim=32), widen=2.0)
    assert type(student) is keras_hub.models.MoonshineAudioToText
    assert relative(y[0], z[0]) <= 1e-5  # the logits themselves
