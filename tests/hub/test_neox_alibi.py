"""keras_hub GPT-NeoX (parallel attention/FFN, partial rotary, fused QKV,
flat output projection) grows heads with the head dim kept; BLOOM (ALiBi)
keeps its heads and grows the head dim; Falcon (ALiBi added before the
1 / sqrt(head dim) scaling) grows its feed-forward width and deepens, and a
wider model width is refused with the reason. Causal LMs decode the
teacher's greedy tokens."""

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

BASE = dict(vocabulary_size=50, num_layers=2, hidden_dim=16, intermediate_dim=32)
MODELS = {
    "neox": (lambda: keras_hub.models.GPTNeoXBackbone(num_heads=2, max_sequence_length=16,
                                                      **BASE),
             keras_hub.models.GPTNeoXCausalLM),
    "bloom": (lambda: keras_hub.models.BloomBackbone(num_heads=2, **BASE),
              keras_hub.models.BloomCausalLM),
    "falcon": (lambda: keras_hub.models.FalconBackbone(num_attention_heads=2, **BASE),
               keras_hub.models.FalconCausalLM),
}
CASES = {
    "neox": [(dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64)),
             (dict(widen=1.5, deepen=["transformer_layer_0"]),
              dict(hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=3))],
    "bloom": [(dict(widen=2.0), dict(hidden_dim=32, num_heads=2, intermediate_dim=64)),
              (dict(widen={"hidden_dim": 48, "intermediate_dim": 40},
                    deepen=["transformer_layer_0"]),
               dict(hidden_dim=48, num_heads=2, intermediate_dim=40, num_layers=3))],
    "falcon": [(dict(widen={"intermediate_dim": 48}), dict(hidden_dim=16, intermediate_dim=48)),
               (dict(deepen={"transformer_layer_1": 2}), dict(num_layers=4))],
}


# (scale, seed) of a teacher whose greedy continuation is not constant.
GREEDY = {"neox": (1.0, 1), "bloom": (2.0, 1), "falcon": (1.0, 0)}


def make(name, scale=0.2, seed=0):
    keras.utils.set_random_seed(0)
    return perturb(MODELS[name][0](), scale=scale, seed=seed)


@pytest.mark.parametrize("name,case", [(n, i) for n in sorted(CASES) for i in range(2)])
def test_backbone_grows_into_its_class(name, case, tmp_path):
    kwargs, expected = CASES[name][case]
    student, report, errs, (y, z) = grow_and_check(make(name), tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(16)))
    assert len(g) == expected.get("hidden_dim", 16)
    error = relative(y[0], readout(z[0], g, tied=True))
    print(f"{name} {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5
    if "widen" in kwargs:
        rows = [r for r in report.inner if r["width"] == "intermediate_dim"]
        assert len(rows) == 2 and all(r["new_width"] == expected["intermediate_dim"]
                                      for r in rows)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_causal_lm_decodes_the_same_tokens(name, tmp_path):
    scale, seed = GREEDY[name]
    teacher = MODELS[name][1](backbone=make(name, scale, seed), preprocessor=None)
    widen = {"falcon": {"intermediate_dim": 48}}.get(name, 2.0)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=widen,
                                                   deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_falcon_refuses_a_wider_model_typed():
    message = refused(make("falcon"), errors.PlanError, widen=2.0)
    assert "ALiBi" in message and "intermediate_dim" in message, message


def test_bloom_refuses_more_heads_typed():
    message = refused(make("bloom"), errors.PlanError, widen={"num_heads": 4})
    assert "ALiBi" in message and "slope" in message, message
