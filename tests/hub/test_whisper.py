"""keras_hub Whisper (a Conv1D audio front end and pre-LN encoder blocks; a
token-and-position embedding and pre-LN decoder blocks with cross attention
over the encoder output) grows into a bigger WhisperBackbone: x2 and one
encoder block and one decoder block deeper, each stream read back through
its own mapping. x1.5 is refused with the reason (the encoder stream is
written through GELU, which keeps no mean pad for its LayerNorms), the
teacher unchanged."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.seq2seq_helpers import DEEPEN
from tests.hub.seq2seq_helpers import grow_and_read_back
from tests.hub.seq2seq_helpers import inner_rows

TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            num_mels=8, max_encoder_sequence_length=32, max_decoder_sequence_length=16)
# Two streams, two mappings: the encoder's (the second convolution writes it)
# and the decoder's; the cross attention's key/value rows follow the first.
STREAMS = {"encoder_sequence_output": "encoder_token_embedding_conv_layer_2",
           "decoder_sequence_output": "decoder_token_and_position_embedding"}


def whisper():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.WhisperBackbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen={"hidden_dim": 32, "intermediate_dim": 48}, deepen=DEEPEN),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=48, num_layers=3)),
])
def test_whisper_grows_into_its_class(kwargs, expected, tmp_path):
    student, report, _ = grow_and_read_back(whisper(), tmp_path, expected, STREAMS, **kwargs)
    for width in ("num_heads", "intermediate_dim"):
        rows = inner_rows(report, width)
        assert len(rows) == 4 and all(r["new_width"] == expected[width] for r in rows), rows
    mappings = report.mappings()
    assert len(mappings["encoder_token_embedding_conv_layer_1"]) == 32  # the front end too
    key = student.get_layer("transformer_decoder_layer_1")._cross_attention_layer._key_dense
    assert tuple(key.kernel.shape) == (32, 4, 8)


def test_whisper_refuses_a_non_integer_model_width():
    message = refused(whisper(), errors.FrozenGroupError, widen=1.5)
    for fragment in ("WhisperBackbone", "widen=1.5", "integer", "widen=2.0"):
        assert fragment in message, message


def test_whisper_refuses_unbalanced_stacks():
    message = refused(whisper(), errors.PlanError, deepen=["transformer_decoder_layer_0"])
    assert "num_layers counts both stacks" in message, message
