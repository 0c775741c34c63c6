"""keras_hub Gemma ((1 + scale) RMS pre-norm, grouped-query attention with an
explicit head_dim and rotary, GeGLU, a tied embedding times sqrt(hidden_dim))
grows into a bigger GemmaBackbone / GemmaCausalLM: x2, x1.5 (zero pads),
deeper by an identity block; the greedy tokens are the teacher's."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import assert_same_greedy_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

# hidden_dim 12 != heads x head_dim (16): Gemma's head dim is its own key.
TINY = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            hidden_dim=12, intermediate_dim=32, head_dim=4)


def gemma(scale=0.2, **kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.GemmaBackbone(**{**TINY, **kwargs}), scale=scale)


@pytest.fixture(scope="module")
def teacher():
    return gemma()


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=24, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=64, head_dim=4, num_layers=2)),
    (dict(widen=1.5, deepen=["decoder_block_1"]),
     dict(hidden_dim=18, num_query_heads=6, num_key_value_heads=3, intermediate_dim=48,
          head_dim=4, num_layers=3)),
])
def test_gemma_backbone_grows_into_its_class(teacher, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(12)))
    # Tied: the final norm is divided by the copy counts (and 1 / sqrt(s)), and
    # by sqrt(D' / D) for the sqrt(hidden_dim) embedding scale.
    ratio = np.sqrt(12 / expected["hidden_dim"])
    error = relative(y[0], readout(z[0], g, tied=True) * ratio)
    print(f"GemmaBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "widen" in kwargs:
        assert len(g) == expected["hidden_dim"]
        kv = [r for r in report.inner if r["width"] == "num_key_value_heads"]
        ffw = [r for r in report.inner if r["width"] == "ffw_units"]
        assert len(kv) == 2 and all(r["new_width"] == expected["num_key_value_heads"] for r in kv)
        assert ffw and all(r["new_width"] == expected["intermediate_dim"] // 2 for r in ffw)
    # The tied LM head reads the grown (sqrt(D / D') scaled) embedding and the
    # compensated final norm: a GemmaCausalLM on the grown backbone alone
    # gives the teacher's logits.
    x = {"token_ids": np.array([[3, 4, 5, 6]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    a = keras_hub.models.GemmaCausalLM(backbone=teacher, preprocessor=None)(x)
    b = keras_hub.models.GemmaCausalLM(backbone=student, preprocessor=None)(x)
    print(f"  GemmaCausalLM on it: logits max rel {relative(a, b):.2e}")
    assert relative(a, b) <= 1e-5, relative(a, b)


def test_gemma_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.GemmaCausalLM(backbone=gemma(scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=1.5,
                                                   deepen=["decoder_block_0"])
    error = relative(y[0], z[0])  # logits: no readout needed
    print(f"GemmaCausalLM x1.5 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    assert student.backbone.get_config()["hidden_dim"] == 18
    assert_same_greedy_tokens(teacher, student)


@pytest.mark.parametrize("widen,words", [
    ({"head_dim": 8}, ["head_dim", "rotary", "Fix:"]),
    ({"intermediate_dim": 41}, ["even", "intermediate_dim=42"]),
    ({"num_query_heads": 5}, ["num_query_heads", "Fix:"]),
])
def test_gemma_bad_widths_are_refused(teacher, widen, words):
    message = refused(teacher, errors.PlanError, widen=widen)
    for word in words:
        assert word in message, message


# Gemma 2 (post-norms, soft caps, sliding windows): tests/hub/test_gemma2.py.
