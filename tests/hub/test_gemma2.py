"""keras_hub Gemma 2 (a GemmaBackbone with post-attention / post-feed-forward
norms, soft-capped attention and final logits, alternating sliding-window
attention) and Gemma 3 (Gemma3Backbone: Gemma 2's blocks with QK-norm, a
GeGLU of intermediate_dim units, five local blocks to one global) grow into
their own class: x2 and x1.5 wider, deeper by identity blocks that keep the
local / global pattern (others refused, typed), the causal LMs decode the
teacher's greedy tokens."""

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

# hidden_dim 12 != heads x head_dim (16): the head dim is its own key.
GEMMA2 = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
              hidden_dim=12, intermediate_dim=32, head_dim=4, use_post_attention_norm=True,
              use_post_ffw_norm=True, attention_logit_soft_cap=50.0, final_logit_soft_cap=30.0,
              use_sliding_window_attention=True, sliding_window_size=3)
GEMMA3 = dict(vocabulary_size=50, image_size=16, num_layers=2, num_query_heads=4,
              num_key_value_heads=2, hidden_dim=12, intermediate_dim=24, head_dim=4,
              use_post_attention_norm=True, use_post_ffw_norm=True,
              attention_logit_soft_cap=50.0, final_logit_soft_cap=30.0,
              use_sliding_window_attention=True, sliding_window_size=3)

MAKE = {"gemma2": (lambda **k: keras_hub.models.GemmaBackbone(**{**GEMMA2, **k}),
                   keras_hub.models.GemmaCausalLM),
        "gemma3": (lambda **k: keras_hub.models.Gemma3Backbone(**{**GEMMA3, **k}),
                   keras_hub.models.Gemma3CausalLM)}


def make(name, scale=0.2, **kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(MAKE[name][0](**kwargs), scale=scale)


# (family, expand_model arguments, the student's config).
GROWTH_CASES = [
    ("gemma2", dict(widen=2.0), dict(hidden_dim=24, num_query_heads=8, num_key_value_heads=4,
                                     intermediate_dim=64, head_dim=4, num_layers=2)),
    ("gemma2", dict(widen=1.5, deepen=["decoder_block_1"]),
     dict(hidden_dim=18, num_query_heads=6, num_key_value_heads=3, intermediate_dim=48,
          head_dim=4, num_layers=3)),
    ("gemma2", dict(deepen={"decoder_block_0": 2}), dict(hidden_dim=12, num_layers=4)),
    ("gemma3", dict(widen=2.0), dict(hidden_dim=24, num_query_heads=8, num_key_value_heads=4,
                                     intermediate_dim=48, head_dim=4, num_layers=2)),
    ("gemma3", dict(widen=1.5, deepen=["decoder_block_0"]),
     dict(hidden_dim=18, num_query_heads=6, num_key_value_heads=3, intermediate_dim=36,
          head_dim=4, num_layers=3)),
]


@pytest.mark.parametrize("name,kwargs,expected", GROWTH_CASES)
def test_gemma2_and_3_backbones_grow_into_their_class(name, kwargs, expected, tmp_path):
    teacher = make(name)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(12)))
    # Tied, and the sqrt(hidden_dim) embedding scale (see test_hub_gemma).
    ratio = np.sqrt(12 / expected["hidden_dim"])
    error = relative(y[0], readout(z[0], g, tied=True) * ratio)
    print(f"{name} {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "widen" in kwargs:
        kv = [r for r in report.inner if r["width"] == "num_key_value_heads"]
        assert len(kv) == 2 and all(r["new_width"] == expected["num_key_value_heads"] for r in kv)
    x = {"token_ids": np.array([[3, 4, 5, 6, 7, 8]], "int32"),
         "padding_mask": np.ones((1, 6), "int32")}
    task = MAKE[name][1]
    a = task(backbone=teacher, preprocessor=None)(x)
    b = task(backbone=student, preprocessor=None)(x)
    print(f"  {task.__name__} on it: logits max rel {relative(a, b):.2e}")
    assert relative(a, b) <= 1e-5, relative(a, b)


PROMPT = {"token_ids": np.array([[1, 2, 3, 0, 0, 0, 0, 0]], "int32"),
          "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}


def greedy_step_tokens(model):
    """Gemma3CausalLM.generate without a preprocessor fails in keras_hub
    0.32 (its outputs hold images=None), so its compiled step is called."""
    model.compile(sampler="greedy")
    out = model.generate_step({k: keras.ops.convert_to_tensor(v) for k, v in PROMPT.items()},
                              stop_token_ids=None)
    return np.asarray(out["token_ids"])


@pytest.mark.parametrize("name", sorted(MAKE))
def test_gemma2_and_3_causal_lms_decode_the_same_tokens(name, tmp_path):
    teacher = MAKE[name][1](backbone=make(name, scale=2.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=2.0,
                                                   deepen=["decoder_block_1"])
    error = relative(y[0], z[0])  # logits: no readout needed
    print(f"{name} causal LM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    if name == "gemma2":
        assert_same_greedy_tokens(teacher, student, prompt=PROMPT)
        return
    a, b = greedy_step_tokens(teacher), greedy_step_tokens(student)
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a[:, 3:])) > 1, a


@pytest.mark.parametrize("name,num_layers,deepen,fix", [
    ("gemma2", 2, ["decoder_block_0"], "{'decoder_block_0': 2}"),
    ("gemma3", 6, ["decoder_block_1"], "{'decoder_block_1': 6}"),
])
def test_an_identity_block_that_moves_the_sliding_pattern_is_refused(name, num_layers, deepen,
                                                                     fix):
    message = refused(make(name, num_layers=num_layers), errors.PlanError, deepen=deepen)
    assert "sliding-window" in message and fix in message, message
    assert f"decoder_block_{num_layers - 1}" in message, message


def test_without_sliding_windows_any_block_deepens(tmp_path):
    teacher = make("gemma2", use_sliding_window_attention=False)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, dict(num_layers=3),
                                                   deepen=["decoder_block_0"])
    assert relative(y[0], z[0]) <= 1e-5


def test_gemma3_with_a_vision_encoder_is_refused_typed():
    keras.utils.set_random_seed(0)
    encoder = keras_hub.models.Gemma3VisionEncoder(
        image_size=16, patch_size=4, num_heads=2, hidden_dim=8, num_layers=1,
        intermediate_dim=16, output_dim=12, pool_size=2)
    teacher = keras_hub.models.Gemma3Backbone(**{**GEMMA3, "vision_encoder": encoder})
    message = refused(teacher, errors.UnsupportedModelError, widen=2.0)
    assert "vision_encoder=None" in message, message
