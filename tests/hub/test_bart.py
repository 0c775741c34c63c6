"""keras_hub BART (a shared token embedding, post-LN encoder blocks, post-LN
decoder blocks with cross attention) grows into a bigger BartBackbone: x2,
and a non-integer feed-forward width; both outputs exact, read back through
the one stream mapping. A non-integer model width and an identity block are
refused with the reason (post-LN; BART's epsilon of 1e-5), the teacher
unchanged; its Seq2SeqLM's tied head is refused the same way."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot
from tests.hub.helpers import TINY
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.seq2seq_helpers import DEEPEN
from tests.hub.seq2seq_helpers import grow_and_read_back
from tests.hub.seq2seq_helpers import inner_rows

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


def _user_seq2seq(encoder_out=False):
    """A user's functional encoder-decoder on keras_hub layers: the
    TransformerDecoder's cross attention reads the TransformerEncoder's
    output (a stream of its own), a Dense head reads the decoder's (or the
    encoder's stream is also an output, so it keeps its width)."""
    keras.utils.set_random_seed(0)
    src, tgt = keras.Input((6,), dtype="int32"), keras.Input((5,), dtype="int32")
    enc = keras_hub.layers.TokenAndPositionEmbedding(50, 8, 12, name="src_embed")(src)
    enc = keras_hub.layers.TransformerEncoder(24, 3, normalize_first=True, name="enc")(enc)
    dec = keras_hub.layers.TokenAndPositionEmbedding(50, 8, 12, name="tgt_embed")(tgt)
    dec = keras_hub.layers.TransformerDecoder(24, 3, normalize_first=True, name="dec")(
        dec, encoder_sequence=enc)
    head = keras.layers.Dense(7, name="head")(dec)
    return perturb(keras.Model([src, tgt], [head, enc] if encoder_out else head))


@pytest.mark.parametrize("encoder_out", [False, True])
def test_cross_attention_in_a_user_graph_grows(encoder_out, tmp_path):
    """Before: a TransformerDecoder with cross attention was a barrier. Now
    its keys/values divide their rows by the encoder stream's copy counts
    (or keep them where that stream keeps its width)."""
    teacher = _user_seq2seq(encoder_out)
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert_unchanged(teacher, snap)
    x = probe(teacher)
    assert_preserved(teacher, student, x)
    student.save(tmp_path / "student.keras")
    loaded = keras.models.load_model(tmp_path / "student.keras")
    for a, b in zip(keras.tree.flatten(student(x)), keras.tree.flatten(loaded(x))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    widths = report.mappings()
    assert len(widths["tgt_embed"]) == 24
    assert len(widths.get("src_embed", range(12))) == (12 if encoder_out else 24)
    key = student.get_layer("dec")._cross_attention_layer._key_dense.kernel
    assert key.shape[0] == (12 if encoder_out else 24)
