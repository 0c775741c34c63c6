"""keras_hub PARSeq (a ViT image encoder, a two-stream PARSeqDecoder with
cross attention, a Dense head) grows into a bigger PARSeqBackbone, exactly:
x2, x1.5 (mean pads: pre-LN everywhere), and one identity block deeper in
the ViT encoder and in the decoder; PARSeqCausalLM grows with it. The logits
are the backbone's output: compared as they are."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative

VIT = dict(image_shape=(16, 32, 3), patch_size=(8, 8), num_layers=1, num_heads=2,
           hidden_dim=8, mlp_dim=16, use_class_token=False)
# max_label_length + 1 position queries cover the probe's 8 tokens.
DECODER = dict(vocabulary_size=12, max_label_length=7, decoder_hidden_dim=8,
               num_decoder_layers=1, num_decoder_heads=2, decoder_mlp_dim=16,
               dropout_rate=0.0, attention_dropout=0.0)


def tiny():
    """A PARSeqBackbone with its nested ViT (for benchmarks/hub_registry.py)."""
    keras.utils.set_random_seed(0)
    return dict(image_encoder=keras_hub.models.ViTBackbone(**VIT), **DECODER)


@pytest.fixture(scope="module")
def parseq():
    return perturb(keras_hub.models.PARSeqBackbone(**tiny()))


@pytest.mark.parametrize("kwargs,expected,vit", [
    (dict(widen=2.0), dict(decoder_hidden_dim=16, num_decoder_heads=4, decoder_mlp_dim=32),
     dict(hidden_dim=16, num_heads=4, mlp_dim=32, num_layers=1)),
    (dict(widen=1.5, deepen=["vit_encoder", "decoder"]),
     dict(decoder_hidden_dim=12, num_decoder_heads=3, decoder_mlp_dim=24, num_decoder_layers=2),
     dict(hidden_dim=12, num_heads=3, mlp_dim=24, num_layers=2)),
])
def test_parseq_grows_into_its_class(parseq, kwargs, expected, vit, tmp_path):
    student, report, errs, (y, z) = grow_and_check(parseq, tmp_path, expected, **kwargs)
    inner = student.image_encoder.get_config()
    assert {k: inner[k] for k in vit} == vit
    error = relative(y[0], z[0])
    print(f"PARSeqBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "deepen" in kwargs:  # the new decoder block is last, its writers zero
        block = student.decoder.decoder_layers[-1]
        assert not np.any(block.mlp.dense_2.kernel.numpy())
        assert not np.any(block.cross_attention._output_dense.kernel.numpy())
        assert np.any(student.decoder.decoder_layers[0].mlp.dense_2.kernel.numpy())


def test_parseq_causal_lm_grows_with_its_backbone(parseq, tmp_path):
    # keras_hub's compile() reads the tokenizer's pad id: a preprocessor is needed.
    tokenizer = keras_hub.models.PARSeqTokenizer(vocabulary=list("0123456"), max_label_length=7)
    preprocessor = keras_hub.models.PARSeqCausalLMPreprocessor(tokenizer=tokenizer,
                                                               sequence_length=8)
    task = keras_hub.models.PARSeqCausalLM(backbone=parseq, preprocessor=preprocessor)
    student, _, errs, (y, z) = grow_and_check(task, tmp_path, dict(decoder_hidden_dim=16),
                                              widen=2.0)
    assert type(student) is keras_hub.models.PARSeqCausalLM
    assert relative(y[0], z[0]) <= 1e-5


def test_parseq_bad_requests_are_refused(parseq):
    message = refused(parseq, errors.PlanError, widen={"hidden_dim": 16})
    assert "decoder_hidden_dim" in message
    message = refused(parseq, errors.PlanError, deepen=["decoder_layer_0"])
    assert "vit_encoder" in message and "decoder" in message
