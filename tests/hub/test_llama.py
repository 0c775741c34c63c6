"""keras_hub Llama (RMS pre-norm, grouped-query attention, rotary, SwiGLU)
grows into a bigger LlamaBackbone / LlamaCausalLM: kv heads with their query
heads, the head dim kept (rotary frequencies unchanged), x2 and x1.5 (zero
pads for RMSNorm), deeper by an identity block; greedy tokens equal."""

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
            hidden_dim=16, intermediate_dim=24)


def llama(scale=0.2, **kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.LlamaBackbone(**{**TINY, **kwargs}), scale=scale)


# (expand_model arguments, the student's config) for the Llama-shaped tiny teachers.
GROWTH_CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=48)),
    (dict(widen=1.5, deepen=["transformer_layer_0"]),
     dict(hidden_dim=24, num_query_heads=6, num_key_value_heads=3, intermediate_dim=36,
          num_layers=3)),
]


@pytest.mark.parametrize("kwargs,expected", GROWTH_CASES)
def test_llama_backbone_grows_into_its_class(kwargs, expected, tmp_path):
    teacher = llama()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    # Untied: the final norm is not divided; zero pads carry no scale back.
    assert relative(y[0], readout(z[0], g, tied=False)) <= 1e-5
    kv = [r for r in report.inner if r["width"] == "num_key_value_heads"]
    assert kv and all(r["new_width"] == expected["num_key_value_heads"] for r in kv)


def test_llama_head_dim_is_kept_for_rotary():
    message = refused(llama(), errors.PlanError,
                      widen={"hidden_dim": 32, "num_key_value_heads": 2})
    assert "rotary" in message


def test_tied_llama_is_refused_with_the_reason():
    message = refused(llama(tie_word_embeddings=True), errors.UnsupportedModelError, widen=2.0)
    assert "tie_word_embeddings" in message and "get_config" in message


def test_llama_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.LlamaCausalLM(backbone=llama(scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=1.5,
                                                   deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_llama3_takes_the_llama_family_by_its_base_class(tmp_path):
    """Llama3Backbone subclasses LlamaBackbone (other presets, the same
    blocks): it grows as Llama does, into a Llama3Backbone."""
    keras.utils.set_random_seed(0)
    teacher = perturb(keras_hub.models.Llama3Backbone(**TINY))
    expected = dict(hidden_dim=32, num_query_heads=8, num_key_value_heads=4,
                    intermediate_dim=48)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, widen=2.0)
    g = report.mappings()["token_embedding"]
    assert relative(y[0], readout(z[0], g, tied=False)) <= 1e-5
    deeper, report, errs, (y, z) = grow_and_check(teacher, tmp_path, dict(num_layers=3),
                                                  deepen=["transformer_layer_1"])
    assert type(deeper) is keras_hub.models.Llama3Backbone
    assert relative(y[0], z[0]) <= 1e-5


# Llama-like families (keras_net2net.hub.mistral, .qwen): the same blocks,
# Mistral with sliding-window attention, Qwen with q/k/v biases and a tied head.
LIKE = {
    "mistral": (lambda **k: keras_hub.models.MistralBackbone(sliding_window=4, **k),
                keras_hub.models.MistralCausalLM, False),
    "qwen_untied": (lambda **k: keras_hub.models.QwenBackbone(tie_word_embeddings=False, **k),
                    keras_hub.models.QwenCausalLM, False),
    "qwen_tied": (lambda **k: keras_hub.models.QwenBackbone(tie_word_embeddings=True, **k),
                  keras_hub.models.QwenCausalLM, True),
}


@pytest.mark.parametrize("name", sorted(LIKE))
@pytest.mark.parametrize("kwargs,expected", GROWTH_CASES)
def test_llama_like_backbones_grow_into_their_class(name, kwargs, expected, tmp_path):
    make, _, tied = LIKE[name]
    keras.utils.set_random_seed(0)
    teacher = perturb(make(**TINY))
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    assert relative(y[0], readout(z[0], g, tied=tied)) <= 1e-5


@pytest.mark.parametrize("name", sorted(LIKE))
def test_llama_like_causal_lms_decode_the_same_tokens(name, tmp_path):
    make, task, _ = LIKE[name]
    keras.utils.set_random_seed(0)
    teacher = task(backbone=perturb(make(**TINY), scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=2.0,
                                                   deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_mistral_with_a_free_head_dim_is_refused_typed():
    keras.utils.set_random_seed(0)
    teacher = perturb(keras_hub.models.MistralBackbone(head_dim=8, **TINY))
    message = refused(teacher, errors.UnsupportedModelError, widen=2.0)
    assert "head_dim=8" in message, message
