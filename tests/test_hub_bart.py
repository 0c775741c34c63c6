"""keras_hub BART (a shared token embedding, post-LN encoder blocks, post-LN
decoder blocks with cross attention) grows into a bigger BartBackbone: x2,
and a non-integer feed-forward width; both outputs exact, read back through
the one stream mapping. A non-integer model width and an identity block are
refused with the reason (post-LN; BART's epsilon of 1e-5), the teacher
unchanged; its Seq2SeqLM's tied head is refused the same way."""

import pytest

from keras_net2net import errors
from tests.hub_helpers import TINY
from tests.hub_helpers import keras_hub
from tests.hub_helpers import perturb
from tests.hub_helpers import refused
from tests.hub_seq2seq import DEEPEN
from tests.hub_seq2seq import grow_and_read_back
from tests.hub_seq2seq import inner_rows

STREAMS = {"encoder_sequence_output": "token_embedding",
           "decoder_sequence_output": "token_embedding"}


def bart():
    return perturb(keras_hub.models.BartBackbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen={"hidden_dim": 32, "intermediate_dim": 48}),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=48, num_layers=2)),
])
def test_bart_grows_into_its_class(kwargs, expected, tmp_path):
    student, report, _ = grow_and_read_back(bart(), tmp_path, expected, STREAMS, **kwargs)
    # Every block's heads and FFN grown: two encoder and two decoder blocks
    # (a decoder block's self and cross attention share its heads).
    for width in ("num_heads", "intermediate_dim"):
        rows = inner_rows(report, width)
        assert len(rows) == 4 and all(r["new_width"] == expected[width] for r in rows), rows
    # The cross attention's keys read the encoder stream: its rows grew.
    kernel = student.get_layer("transformer_decoder_layer_0")._cross_attention_layer
    assert tuple(kernel._key_dense.kernel.shape) == (32, 4, 8)


def test_bart_refuses_a_non_integer_model_width():
    message = refused(bart(), errors.FrozenGroupError, widen=1.5)
    for fragment in ("BartBackbone", "widen=1.5", "post-norm", "widen=2.0"):
        assert fragment in message, message


def test_bart_refuses_an_identity_block_and_says_why():
    message = refused(bart(), errors.PlanError, deepen=DEEPEN)
    for fragment in ("BartBackbone", "post-LN", "1e-5", "widen=2.0"):
        assert fragment in message, message


def test_bart_seq2seq_lm_tied_head_is_refused_typed():
    task = keras_hub.models.BartSeq2SeqLM(backbone=bart(), preprocessor=None)
    message = refused(task, errors.FrozenGroupError, widen=2.0)
    assert "token_embedding" in message and "tied" in message, message
