"""keras_hub ESM / ESM-2 (pre-LN encoder blocks with flat q/k/v/o Dense
projections, rotary or absolute positions) grows into a bigger ESMBackbone,
ESMMaskedPLM (an untied MaskedLMHead) and ESMProteinClassifier: x2, x1.5 on
the backbone (mean pads), deeper by an identity block; a masked LM at a
non-integer factor is refused, typed."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            dropout=0.0, max_sequence_length=16)
ABSOLUTE = dict(position_embedding_type="absolute", use_pre_layer_norm=True)


def esm(**kwargs):
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.ESMBackbone(**{**TINY, **kwargs}))


GROWTH_CASES = [
    ({}, dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64)),
    ({}, dict(widen=1.5, deepen=["transformer_layer_0"]),
     dict(hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=3)),
    (ABSOLUTE, dict(widen=2.0, deepen=["transformer_layer_1"]),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=3)),
]


@pytest.mark.parametrize("config,kwargs,expected", GROWTH_CASES)
def test_esm_backbone_grows_into_its_class(config, kwargs, expected, tmp_path):
    teacher = esm(**config)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"ESMBackbone {config} {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    heads = [r for r in report.inner if r["width"] == "num_heads"]
    assert len(heads) == 2 and all(r["new_width"] == expected["num_heads"] for r in heads)


@pytest.mark.parametrize("task", ["ESMMaskedPLM", "ESMProteinClassifier"])
def test_esm_tasks_grow_into_their_class(task, tmp_path):
    kwargs = {"num_classes": 3} if task == "ESMProteinClassifier" else {}
    teacher = getattr(keras_hub.models, task)(backbone=esm(), preprocessor=None, **kwargs)
    student, report, errs, (y, z) = grow_and_check(
        teacher, tmp_path, dict(hidden_dim=32, num_layers=3), widen=2.0,
        deepen=["transformer_layer_0"])
    error = relative(y[0], z[0])
    print(f"{task} x2 + block: max rel {error:.2e}")
    assert error <= 1e-5


def test_esm_masked_plm_at_a_non_integer_factor_is_refused_typed():
    teacher = keras_hub.models.ESMMaskedPLM(backbone=esm(), preprocessor=None)
    message = refused(teacher, errors.FrozenGroupError, widen=1.5)
    assert "MaskedLMHead" in message and "integer" in message, message
