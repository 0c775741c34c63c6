"""keras_hub PaliGemma (a ViT whose image tokens, through a Dense into the
text width, are prefixed to the text tokens of a Gemma 2 style decoder)
grows into a bigger PaliGemmaBackbone: x2 (decoder and ViT), x1.5 (zero pads:
the decoder; the ViT's LayerNorms take whole copies only, so it keeps its
widths) and deeper; a non-multiple ViT width is refused, typed.
PaliGemmaCausalLM grows with its tied head and decodes the teacher's greedy
tokens."""

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

TINY = dict(vocabulary_size=50, image_size=16, num_layers=2, num_query_heads=4,
            num_key_value_heads=2, hidden_dim=12, intermediate_dim=32, head_dim=4,
            vit_patch_size=8, vit_num_heads=2, vit_hidden_dim=8, vit_num_layers=1,
            vit_intermediate_dim=16, use_post_attention_norm=True, use_post_ffw_norm=True,
            attention_logit_soft_cap=50.0, final_logit_soft_cap=30.0,
            use_sliding_window_attention=True, sliding_window_size=3)
CASES = [
    (dict(widen=2.0), dict(hidden_dim=24, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=64, head_dim=4, vit_hidden_dim=16,
                           vit_num_heads=4, vit_intermediate_dim=32)),
    (dict(widen={"vit_hidden_dim": 16, "vit_intermediate_dim": 24}),
     dict(hidden_dim=12, vit_hidden_dim=16, vit_num_heads=4, vit_intermediate_dim=24)),
    (dict(widen=1.5, deepen=["decoder_block_1"]),
     dict(hidden_dim=18, num_query_heads=6, num_key_value_heads=3, intermediate_dim=48,
          num_layers=3)),
    (dict(deepen={"decoder_block_0": 2}), dict(hidden_dim=12, num_layers=4)),
]


def pali_gemma(**kwargs):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.PaliGemmaBackbone(**{**TINY, **kwargs}))


@pytest.mark.parametrize("kwargs,expected", CASES)
def test_pali_gemma_grows_into_its_class(kwargs, expected, tmp_path):
    teacher = pali_gemma()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(12)))
    # Tied and times sqrt(hidden_dim), as Gemma's (tests/hub/test_gemma2.py).
    ratio = np.sqrt(12 / expected["hidden_dim"])
    error = relative(y[0], readout(z[0], g, tied=True) * ratio)
    print(f"PaliGemmaBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if student.vit_hidden_dim != 8:
        return
    # A ViT that keeps its widths is the teacher's, weight for weight.
    for a, b in zip(teacher.vit_encoder.get_layer("image_encoder").weights,
                    student.vit_encoder.get_layer("image_encoder").weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_pali_gemma_refuses_a_vit_width_that_is_no_multiple():
    message = refused(pali_gemma(), errors.PlanError, widen={"vit_hidden_dim": 12})
    assert "LayerNorms" in message and "vit_hidden_dim=16" in message, message


PROMPT = {"token_ids": np.array([[1, 2, 3, 0, 0, 0, 0, 0]], "int32"),
          "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}


def greedy_tokens(model, images):
    model.compile(sampler="greedy")
    inputs = {**PROMPT, "images": images}
    out = model.generate_step({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()},
                              stop_token_ids=None)
    return np.asarray(out["token_ids"])


def test_pali_gemma_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.PaliGemmaCausalLM(backbone=pali_gemma(), preprocessor=None)
    perturb(teacher, seed=2, scale=1.0)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, dict(hidden_dim=24),
                                                   widen=2.0, deepen=["decoder_block_1"])
    error = relative(y[0], z[0])  # logits: no readout
    print(f"PaliGemmaCausalLM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    images = np.random.default_rng(0).uniform(size=(1, 16, 16, 3)).astype("float32")
    a, b = greedy_tokens(teacher, images), greedy_tokens(student, images)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a[:, 3:])) > 1, a
