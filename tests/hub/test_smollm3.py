"""keras_hub SmolLM3 (Llama's blocks with flat q/k/v Dense projections, NoPE
blocks, a tied embedding) grows into a bigger SmolLM3Backbone /
SmolLM3CausalLM: x2 and x1.5, deeper by an identity block whose per-block
list entries (rope_layer_enabled_list, layer_types) are its anchor's; the
greedy tokens are the teacher's."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import assert_same_greedy_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

# Block 1 has no rotary embedding (NoPE), as every fourth block of SmolLM3-3B.
TINY = dict(vocabulary_size=50, hidden_dim=16, intermediate_dim=24, num_layers=2,
            num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
            attention_dropout=0.0, rope_layer_enabled_list=[True, False],
            layer_types=["attention", "attention"], mlp_bias=True, layer_norm_epsilon=1e-6,
            max_position_embeddings=32, rope_theta=10000.0, partial_rotary_factor=1.0)


def smollm3(scale=0.2, **kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.SmolLM3Backbone(**{**TINY, **kwargs}), scale=scale)


GROWTH_CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_attention_heads=8, num_key_value_heads=4,
                           intermediate_dim=48, num_layers=2)),
    (dict(widen=1.5, deepen=["transformer_layer_0"]),
     dict(hidden_dim=24, num_attention_heads=6, num_key_value_heads=3, intermediate_dim=36,
          num_layers=3, rope_layer_enabled_list=[True, True, False],
          layer_types=["attention"] * 3)),
]


@pytest.mark.parametrize("kwargs,expected", GROWTH_CASES)
def test_smollm3_backbone_grows_into_its_class(kwargs, expected, tmp_path):
    teacher = smollm3()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    error = relative(y[0], readout(z[0], g, tied=True))
    print(f"SmolLM3Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    kv = [r for r in report.inner if r["width"] == "num_key_value_heads"]
    assert len(kv) == 2 and all(r["new_width"] == expected["num_key_value_heads"] for r in kv)
    ffn = [r for r in report.inner if r["width"] == "intermediate_dim"]
    assert ffn and all(r["new_width"] == expected["intermediate_dim"] for r in ffn)


def test_smollm3_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.SmolLM3CausalLM(backbone=smollm3(scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=2.0,
                                                   deepen=["transformer_layer_1"])
    error = relative(y[0], z[0])
    print(f"SmolLM3CausalLM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_smollm3_head_dim_is_kept_for_rotary():
    message = refused(smollm3(), errors.PlanError,
                      widen={"hidden_dim": 32, "num_key_value_heads": 2})
    assert "rotary" in message, message
