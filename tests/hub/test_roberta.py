"""keras_hub RoBERTa and XLM-RoBERTa (post-LN encoders behind a
TokenAndPositionEmbedding; XLM-R takes RoBERTa's family by its base class)
grow into bigger backbones of their own class: x2, a non-integer
feed-forward width, one identity block deeper (LayerNorm hand-over, exact to
epsilon / var); their MaskedLM and TextClassifier tasks too. A non-integer
model width is refused with the reason (post-LN)."""

import pytest

from keras_net2net import errors
from tests.hub.helpers import TINY
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

BACKBONES = {"roberta": lambda: keras_hub.models.RobertaBackbone(**TINY),
             "xlm_roberta": lambda: keras_hub.models.XLMRobertaBackbone(**TINY)}
TASKS = {"roberta": (keras_hub.models.RobertaMaskedLM, keras_hub.models.RobertaTextClassifier),
         "xlm_roberta": (keras_hub.models.XLMRobertaMaskedLM,
                         keras_hub.models.XLMRobertaTextClassifier)}
CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen={"hidden_dim": 32, "intermediate_dim": 48}), dict(
        hidden_dim=32, num_heads=4, intermediate_dim=48, num_layers=2)),
    (dict(deepen=["transformer_layer_0"]), dict(hidden_dim=16, num_layers=3)),
    (dict(widen=3.0, deepen={"transformer_layer_1": 2}), dict(
        hidden_dim=48, num_heads=6, intermediate_dim=96, num_layers=4)),
]


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("kwargs,expected", CASES)
def test_roberta_backbones_grow_into_their_class(name, kwargs, expected, tmp_path):
    teacher = perturb(BACKBONES[name]())
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("embeddings", list(range(16)))
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"{name} {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5
    if "widen" in kwargs:  # every block's heads and feed-forward width grown
        for width in ("num_heads", "intermediate_dim"):
            rows = [r for r in report.inner if r["width"] == width]
            assert len(rows) == 2 and all(r["new_width"] == expected[width] for r in rows)


def test_roberta_refuses_a_non_integer_model_width():
    message = refused(perturb(BACKBONES["roberta"]()), errors.FrozenGroupError, widen=1.5)
    for fragment in ("RobertaBackbone", "widen=1.5", "Fix:", "widen=2.0"):
        assert fragment in message, message


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_roberta_tasks_grow_with_their_heads(name, tmp_path):
    masked_lm, classifier = TASKS[name]
    for task in (masked_lm(backbone=perturb(BACKBONES[name]()), preprocessor=None),
                 classifier(backbone=perturb(BACKBONES[name]()), num_classes=3,
                            preprocessor=None)):
        teacher = perturb(task, seed=1)
        for kwargs, expected in [(dict(widen=2.0), dict(hidden_dim=32, num_heads=4)),
                                 (dict(deepen=["transformer_layer_1"]), dict(num_layers=3))]:
            student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected,
                                                           **kwargs)
            assert type(student) is type(teacher)
            assert len(y) == 1 and relative(y[0], z[0]) <= 1e-5
