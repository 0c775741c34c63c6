"""keras_hub GPT-OSS (Llama-like blocks with attention sinks and biases,
alternating sliding-window attention, a mixture of experts with a fused,
interleaved gate/up projection) grows into a bigger GptOssBackbone /
GptOssCausalLM: x2 and x1.5, deeper by identity blocks that keep the local /
global pattern (others refused, typed); greedy tokens equal."""

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

TINY = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            hidden_dim=16, intermediate_dim=8, num_experts=2, top_k=1, sliding_window=3)


def gpt_oss(scale=0.2, **kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.GptOssBackbone(**{**TINY, **kwargs}), scale=scale)


GROWTH_CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=16, num_layers=2)),
    (dict(widen=1.5, deepen=["transformer_layer_1"]),
     dict(hidden_dim=24, num_query_heads=6, num_key_value_heads=3, intermediate_dim=12,
          num_layers=3)),
    (dict(deepen={"transformer_layer_0": 2}), dict(hidden_dim=16, num_layers=4)),
]


@pytest.mark.parametrize("kwargs,expected", GROWTH_CASES)
def test_gpt_oss_backbone_grows_into_its_class(kwargs, expected, tmp_path):
    teacher = gpt_oss()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(16)))
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"GptOssBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "widen" in kwargs:
        ffn = [r for r in report.inner if r["width"] == "intermediate_dim"]
        assert len(ffn) == 2 and all(r["new_width"] == expected["intermediate_dim"] for r in ffn)


def test_gpt_oss_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.GptOssCausalLM(backbone=gpt_oss(scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=2.0,
                                                   deepen=["transformer_layer_1"])
    error = relative(y[0], z[0])
    print(f"GptOssCausalLM x2 + block: logits max rel {error:.2e}")
    assert error <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_gpt_oss_block_that_moves_the_sliding_pattern_is_refused():
    message = refused(gpt_oss(), errors.PlanError, deepen=["transformer_layer_0"])
    assert "{'transformer_layer_0': 2}" in message and "transformer_layer_1" in message, message
