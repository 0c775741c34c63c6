"""keras_hub T5Gemma (two stacks of Gemma 2 style blocks, each stream with its
own embedding times sqrt(width), GQA with an explicit head_dim, rotary self
attention, cross attention, soft caps, sliding / full layer types) grows into
a bigger T5GemmaBackbone: x2, x1.5 (zero pads) and deeper in either stack;
its Seq2SeqLM, tied or not, grows with its head and decodes the teacher's
greedy tokens."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import greedy_decoder_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

# Two widths (12, 8): the streams are two groups, and the cross attention's
# keys and values read the encoder's.
TINY = dict(vocabulary_size=50, encoder_hidden_dim=12, encoder_intermediate_dim=16,
            encoder_num_layers=2, encoder_num_attention_heads=4, encoder_num_key_value_heads=2,
            encoder_head_dim=4, encoder_layer_types=["sliding_attention", "full_attention"],
            decoder_hidden_dim=8, decoder_intermediate_dim=16, decoder_num_layers=2,
            decoder_num_attention_heads=4, decoder_num_key_value_heads=2, decoder_head_dim=4,
            decoder_layer_types=["sliding_attention", "full_attention"], sliding_window=3,
            attn_logit_softcapping=50.0, final_logit_softcapping=30.0)
STREAMS = {"decoder_sequence_output": "decoder_token_embedding",
           "encoder_sequence_output": "encoder_token_embedding"}
DEEPEN = ["encoder_layer_1", "decoder_layer_0"]
CASES = [
    (dict(widen=2.0), dict(encoder_hidden_dim=24, decoder_hidden_dim=16,
                           encoder_num_key_value_heads=4, encoder_num_attention_heads=8,
                           decoder_intermediate_dim=32, encoder_head_dim=4,
                           cross_attention_hidden_size=24)),
    (dict(widen=1.5, deepen={"decoder_layer_1": 2}),
     dict(encoder_hidden_dim=18, decoder_hidden_dim=12, decoder_num_key_value_heads=3,
          decoder_num_attention_heads=6, encoder_num_layers=2, decoder_num_layers=4,
          decoder_layer_types=["sliding_attention", "full_attention", "full_attention",
                               "full_attention"])),
    (dict(deepen=DEEPEN), dict(encoder_num_layers=3, decoder_num_layers=3,
                               encoder_layer_types=["sliding_attention", "full_attention",
                                                    "full_attention"])),
]


def t5gemma(**kwargs):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.T5GemmaBackbone(**{**TINY, **kwargs}))


def grow_and_read_back(teacher, tmp_path, expected, producers=STREAMS, **kwargs):
    """grow_and_check, then each stream read back through its own mapping
    (its width the student's: the stacks differ), independently of the
    library. Returns (student, report, {output: max relative error}).

    Args:
        producers: {output: the layer the report names its mapping by}.
    """
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    mappings, out = report.mappings(), {}
    for name, a, b in zip(STREAMS, y, z):  # keras.tree order: sorted keys
        stack = name.split("_")[0]
        g = mappings.get(producers[name], list(range(a.shape[-1])))
        assert len(g) == getattr(student, f"{stack}_hidden_dim") == b.shape[-1]
        out[name] = relative(a, readout(b, g, tied=False))
        assert out[name] <= 1e-5, (name, out[name])
    print(f"{type(teacher).__name__} {kwargs}: report {max(errs):.2e}, here {out}")
    return student, report, out


@pytest.mark.parametrize("kwargs,expected", CASES)
def test_t5gemma_grows_into_its_class(kwargs, expected, tmp_path):
    student, report, errs = grow_and_read_back(t5gemma(), tmp_path, expected, **kwargs)
    if "widen" in kwargs:
        kv = [r for r in report.inner if r["width"] == "num_key_value_heads"]
        assert len(kv) == 4, kv
    cross = student.get_layer("decoder_layer_1").cross_attn.key_dense
    assert tuple(cross.kernel.shape) == (student.encoder_hidden_dim,
                                         student.decoder_num_key_value_heads, 4)


def test_t5gemma_with_attention_biases_grows(tmp_path):
    grow_and_read_back(t5gemma(attention_bias=True), tmp_path, dict(encoder_hidden_dim=24),
                       widen=2.0, deepen=DEEPEN)


def test_t5gemma_refuses_bad_requests():
    teacher = t5gemma()
    for widen, fragment in [({"head_dim": 8}, "head_dim is kept"),
                            ({"encoder_num_attention_heads": 8}, "query heads follow"),
                            ({"decoder_hidden_dim": 4}, "Net2WiderNet only adds units")]:
        message = refused(teacher, errors.PlanError, widen=widen)
        assert fragment in message, message


def prompt():
    ones = np.ones((1, 8), "int32")
    return {"encoder_token_ids": np.array([[5, 7, 9, 11, 13, 1, 0, 0]], "int32"),
            "encoder_padding_mask": np.array([[1, 1, 1, 1, 1, 1, 0, 0]], "int32"),
            "decoder_token_ids": np.array([[2, 3, 0, 0, 0, 0, 0, 0]], "int32"),
            "decoder_padding_mask": np.where(np.arange(8) < 2, ones, 0).astype("int32")}


@pytest.mark.parametrize("tied", [True, False])
def test_t5gemma_seq2seq_lm_grows_with_its_head(tied, tmp_path):
    """Tied: the reverse embedding reads the decoder norm (through a
    dropout), divided by the copy counts, times sqrt(D' / D) for the
    embedding's own scale. Untied: the reverse matrix's rows are divided."""
    teacher = perturb(keras_hub.models.T5GemmaSeq2SeqLM(
        backbone=t5gemma(tie_word_embeddings=tied), preprocessor=None), seed=3, scale=0.7)
    cases = [(dict(widen=2.0, deepen=DEEPEN), dict(decoder_hidden_dim=16, decoder_num_layers=3))]
    if tied:
        cases.append((dict(widen=1.5), dict(decoder_hidden_dim=12)))  # zero pads
    # The teacher decodes once (each generate compiles): growth never changes it.
    expected_tokens = greedy_decoder_tokens(teacher, prompt())
    assert len(np.unique(expected_tokens[:, 2:])) > 1, expected_tokens
    for kwargs, expected in cases:
        student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
        error = relative(y[0], z[0])
        print(f"T5GemmaSeq2SeqLM tied={tied} {kwargs}: logits max rel {error:.2e}")
        assert len(y) == 1 and error <= 1e-5
        np.testing.assert_array_equal(greedy_decoder_tokens(student, prompt()), expected_tokens)
