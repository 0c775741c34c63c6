"""keras_hub T5Gemma 2 (T5Gemma's stacks with QK-norm, per-block rotary
wavelengths, and a merged self + cross attention that reads both streams
with one kernel: one group) grows into a bigger T5Gemma2Backbone: x2, x1.5
and deeper in either stack; its Seq2SeqLM decodes the teacher's greedy
tokens; a vision encoder and parted stream widths are refused, typed."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import greedy_decoder_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_t5gemma import TINY as T5GEMMA
from tests.hub.test_t5gemma import grow_and_read_back
from tests.hub.test_t5gemma import prompt

TINY = {**T5GEMMA, "decoder_hidden_dim": 12}  # the merged attention: one width
CASES = [
    (dict(widen=2.0), dict(encoder_hidden_dim=24, decoder_hidden_dim=24,
                           decoder_num_key_value_heads=4, decoder_intermediate_dim=32)),
    (dict(widen=1.5, deepen=["encoder_layer_0", "decoder_layer_1"]),
     dict(encoder_hidden_dim=18, decoder_hidden_dim=18, encoder_num_layers=3,
          decoder_num_layers=3, encoder_layer_types=["sliding_attention"] * 2 +
          ["full_attention"])),
]


def t5gemma2(**kwargs):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.T5Gemma2Backbone(**{**TINY, **kwargs}))


@pytest.mark.parametrize("kwargs,expected", CASES)
def test_t5gemma2_grows_into_its_class(kwargs, expected, tmp_path):
    # One group: both streams take one mapping (named by its first producer).
    one = dict.fromkeys(("decoder_sequence_output", "encoder_sequence_output"),
                        "encoder_token_embedding")
    grow_and_read_back(t5gemma2(), tmp_path, expected, producers=one, **kwargs)


def test_t5gemma2_refuses_parted_stream_widths():
    message = refused(t5gemma2(), errors.PlanError, widen={"encoder_hidden_dim": 24})
    assert "merged attention" in message, message


def test_t5gemma2_seq2seq_lm_decodes_the_same_tokens(tmp_path):
    teacher = perturb(keras_hub.models.T5Gemma2Seq2SeqLM(backbone=t5gemma2(),
                                                         preprocessor=None), seed=3, scale=0.7)
    student, report, errs, (y, z) = grow_and_check(
        teacher, tmp_path, dict(decoder_hidden_dim=24, decoder_num_layers=3),
        widen=2.0, deepen=["decoder_layer_0"])
    error = relative(y[0], z[0])
    print(f"T5Gemma2Seq2SeqLM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    tokens = [greedy_decoder_tokens(model, prompt()) for model in (teacher, student)]
    np.testing.assert_array_equal(tokens[0], tokens[1])
    assert len(np.unique(tokens[0][:, 2:])) > 1, tokens[0]
