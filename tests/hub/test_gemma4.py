"""keras_hub Gemma 4, text-only and dense (Gemma 3's blocks with plain-scale
RMS norms and a per-block output `layer_scalar`) grows into a bigger
Gemma4Backbone: x2, x1.5 (zero pads) and deeper (identity blocks with
layer_scalar 1, their anchor's layer type); the features without a rule
(per-layer inputs, MoE, shared kv, encoders) are refused, typed.
Gemma4CausalLM grows with its tied head: the teacher's logits and greedy
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
            num_key_value_heads=2, hidden_dim=12, intermediate_dim=24, head_dim=4,
            sliding_window_size=3, sliding_window_pattern=2, attention_logit_soft_cap=50.0,
            final_logit_soft_cap=30.0)


def gemma4(**kwargs):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.Gemma4Backbone(**{**TINY, **kwargs}))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=24, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=48, head_dim=4)),
    (dict(widen=1.5, deepen={"decoder_block_0": 2}),
     dict(hidden_dim=18, num_query_heads=6, num_key_value_heads=3, intermediate_dim=36,
          head_dim=4, num_layers=4,
          layer_types=["sliding_attention"] * 3 + ["full_attention"])),
    (dict(deepen=["decoder_block_1"]), dict(hidden_dim=12, num_layers=3)),
])
def test_gemma4_grows_into_its_class(kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(gemma4(), tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(12)))
    ratio = np.sqrt(12 / expected["hidden_dim"])  # tied, times sqrt(hidden_dim)
    error = relative(y[0], readout(z[0], g, tied=True) * ratio)
    print(f"Gemma4Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5


def test_gemma4_refuses_features_without_a_rule():
    message = refused(gemma4(enable_moe_block=True, num_experts=2, expert_intermediate_dim=8,
                             num_experts_per_token=1), errors.UnsupportedModelError, widen=2.0)
    assert "enable_moe_block=True" in message, message


PROMPT = {"token_ids": np.array([[1, 2, 3, 0, 0, 0, 0, 0]], "int32"),
          "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0]], "int32")}


def test_gemma4_causal_lm_grows_with_its_head(tmp_path):
    teacher = keras_hub.models.Gemma4CausalLM(backbone=gemma4(), preprocessor=None)
    perturb(teacher, seed=4, scale=1.0)
    student, report, errs, (y, z) = grow_and_check(
        teacher, tmp_path, dict(hidden_dim=24, num_layers=3), widen=2.0,
        deepen=["decoder_block_1"])
    error = relative(y[0], z[0])
    print(f"Gemma4CausalLM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    tokens = []
    for model in (teacher, student):
        model.compile(sampler="greedy")
        out = model.generate_step({k: keras.ops.convert_to_tensor(v) for k, v in PROMPT.items()},
                                  stop_token_ids=None)
        tokens.append(np.asarray(out["token_ids"]))
    np.testing.assert_array_equal(tokens[0], tokens[1])
    assert len(np.unique(tokens[0][:, 3:])) > 1, tokens[0]
