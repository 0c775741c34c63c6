"""keras_hub T5 (pre-norm RMS blocks, flattened q/k/v heads, relative
position buckets shared by a stack, cross attention, gated or plain FFN)
grows into a bigger T5Backbone: x2, x1.5 (zero pads), one encoder block and
one decoder block deeper; a free `key_value_dim` is kept. Its
Seq2SeqLM, tied (through a hidden_dim ** -0.5 multiply) or not, grows with
its head and decodes the teacher's greedy tokens."""

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
from tests.hub.seq2seq_helpers import DEEPEN
from tests.hub.seq2seq_helpers import grow_and_read_back
from tests.hub.seq2seq_helpers import inner_rows

TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32)
STREAMS = {"encoder_sequence_output": "token_embedding",
           "decoder_sequence_output": "token_embedding"}
VARIANTS = {"gated": {}, "plain_gelu": dict(use_gated_activation=False, activation="gelu"),
            "untied": dict(tie_embedding_weights=False)}
CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen=1.5, deepen=DEEPEN),
     dict(hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=3)),
    (dict(deepen={"transformer_encoder_layer_0": 2, "transformer_decoder_layer_1": 2}),
     dict(hidden_dim=16, num_heads=2, num_layers=4)),
]


def t5(**kwargs):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.T5Backbone(**{**TINY, **kwargs}))


# Every case on the gated T5; the other variants (their FFN and embedding
# differ, not their blocks' layout) on the case that widens and deepens.
@pytest.mark.parametrize("variant,kwargs,expected", [
    ("gated", *case) for case in CASES] + [
    (variant, *CASES[1]) for variant in sorted(VARIANTS) if variant != "gated"])
def test_t5_grows_into_its_class(variant, kwargs, expected, tmp_path):
    student, report, _ = grow_and_read_back(t5(**VARIANTS[variant]), tmp_path, expected,
                                            STREAMS, **kwargs)
    if "widen" in kwargs:
        for width in ("num_heads", "intermediate_dim"):
            rows = inner_rows(report, width)
            assert len(rows) == 4 and all(r["new_width"] == expected[width] for r in rows), rows
        # Each stack's first block holds the buckets of the grown heads.
        bias = student.get_layer("transformer_decoder_layer_0").self_attention
        assert tuple(bias.relative_attention_bias.shape) == (32, expected["num_heads"])
    # Only a stack's first block holds the buckets, inserted blocks included.
    for i in range(1, expected["num_layers"]):
        layer = student.get_layer(f"transformer_encoder_layer_{i}").self_attention
        assert not layer.use_relative_attention_bias


def test_t5_keeps_a_free_key_value_dim(tmp_path):
    teacher = t5(key_value_dim=4)  # not hidden_dim // num_heads (8)
    student, report, _ = grow_and_read_back(
        teacher, tmp_path, dict(hidden_dim=32, num_heads=4, key_value_dim=4), STREAMS,
        widen=2.0)


def test_t5_refuses_unbalanced_stacks():
    message = refused(t5(), errors.PlanError, deepen=["transformer_encoder_layer_1"])
    for fragment in ("num_layers counts both stacks", "transformer_decoder_layer_1"):
        assert fragment in message, message


def _prompt():
    ones = np.ones((1, 8), "int32")
    return {"encoder_token_ids": np.array([[5, 7, 9, 11, 13, 1, 0, 0]], "int32"),
            "encoder_padding_mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]], "int32"),
            "decoder_token_ids": np.array([[0, 3, 0, 0, 0, 0, 0, 0]], "int32"),
            "decoder_padding_mask": np.where(np.arange(8) < 2, ones, 0).astype("int32")}


@pytest.mark.parametrize("tied", [True, False])
def test_t5_seq2seq_lm_grows_with_its_head(tied, tmp_path):
    """Tied (T5's default): the reverse embedding reads the decoder's final
    norm through a dropout and a hidden_dim ** -0.5 multiply; the norm is
    divided by the copy counts and takes sqrt(D' / D) back for the student's
    own multiplier. Untied: the reverse matrix's rows are divided."""
    teacher = perturb(keras_hub.models.T5Seq2SeqLM(
        backbone=t5(tie_embedding_weights=tied), preprocessor=None), seed=1, scale=1.0)
    cases = [(dict(widen=2.0), dict(hidden_dim=32, num_heads=4)),
             (dict(deepen=DEEPEN), dict(num_layers=3))]
    if tied:
        cases.append((dict(widen=1.5), dict(hidden_dim=24, num_heads=3)))  # zero pads
    # The teacher decodes once (each generate compiles): growth never changes it.
    expected_tokens = greedy_decoder_tokens(teacher, _prompt())
    assert len(np.unique(expected_tokens[:, 2:])) > 1, expected_tokens
    for kwargs, expected in cases:
        student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
        assert len(y) == 1 and relative(y[0], z[0]) <= 1e-5
        np.testing.assert_array_equal(greedy_decoder_tokens(student, _prompt()), expected_tokens)
