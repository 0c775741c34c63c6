"""keras_hub OPT (GPT-2's pre-LN decoder blocks behind a
TokenAndPositionEmbedding, a tied LM head) grows into a bigger OPTBackbone /
OPTCausalLM: x2, x1.5 (mean pads: pre-LN), one identity block deeper; the
grown causal LM decodes the teacher's greedy tokens."""

import keras
import pytest

from tests.hub.helpers import TINY
from tests.hub.helpers import assert_same_greedy_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative


def opt(scale=0.2):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.OPTBackbone(**TINY), scale=scale)


CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen=1.5), dict(hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=2)),
    (dict(deepen={"transformer_layer_0": 1}), dict(hidden_dim=16, num_layers=3)),
    (dict(widen=1.5, deepen=["transformer_layer_1"]), dict(
        hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=3)),
]


@pytest.mark.parametrize("kwargs,expected", CASES)
def test_opt_backbone_grows_into_its_class(kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(opt(), tmp_path, expected, **kwargs)
    g = report.mappings().get("embeddings", list(range(16)))
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=True))
    print(f"OPTBackbone {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5
    if "widen" in kwargs:
        for width in ("num_heads", "intermediate_dim"):
            rows = [r for r in report.inner if r["width"] == width]
            assert len(rows) == 2 and all(r["new_width"] == expected[width] for r in rows)


def test_opt_causal_lm_decodes_the_same_tokens(tmp_path):
    teacher = keras_hub.models.OPTCausalLM(backbone=opt(scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=1.5,
                                                   deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5
    assert_same_greedy_tokens(teacher, student)
