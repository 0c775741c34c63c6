"""keras_hub BERT and DistilBERT (post-LN encoders) grow into bigger
backbones of their class: x2, a non-integer feed-forward width, and deeper by
an identity block (LayerNorm hand-over, exact to epsilon / var with keras_hub's
epsilon of 1e-12); a non-integer model width is refused with the reason."""

import pytest

from keras_net2net import errors
from tests.hub.helpers import TINY
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

BACKBONES = {"bert": (lambda: keras_hub.models.BertBackbone(**TINY), "token_embedding"),
             "distil_bert": (lambda: keras_hub.models.DistilBertBackbone(**TINY),
                             "token_and_position_embedding")}
CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen={"hidden_dim": 32, "intermediate_dim": 48}, deepen=["transformer_layer_0"]),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=48, num_layers=3)),
]


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("kwargs,expected", CASES)
def test_post_ln_backbones_grow_into_their_class(name, kwargs, expected, tmp_path):
    make, embedding = BACKBONES[name]
    teacher = perturb(make())
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()[embedding]
    # Every output of the grown stream width, read back through its mapping;
    # BERT's pooler is a group of its own, with its own mapping.
    names = [r["output"] for r in report.verification["inference"]]
    for out_name, a, b in zip(names, y, z):
        mapping = report.mappings().get(out_name, g) if out_name == "pooled_dense" else g
        error = relative(a, readout(b, mapping, tied=False))
        print(f"{name} {kwargs} {out_name}: max rel {error:.2e}")
        assert error <= 1e-5


def test_post_ln_refuses_a_non_integer_model_width():
    teacher = perturb(keras_hub.models.BertBackbone(**TINY))
    message = refused(teacher, errors.FrozenGroupError, widen=1.5)
    for fragment in ("BertBackbone", "widen=1.5", "post-norm", "Fix:", "widen=2.0"):
        assert fragment in message, message


def test_text_classifier_grows_with_its_head(tmp_path):
    backbone = perturb(keras_hub.models.BertBackbone(**TINY))
    teacher = perturb(keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=3,
                                                          preprocessor=None), seed=1)
    student, report, errs, (y, z) = grow_and_check(
        teacher, tmp_path, dict(hidden_dim=32, num_layers=3), widen=2.0,
        deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_masked_lm_grows_with_its_tied_head(name, tmp_path):
    """MaskedLMHead decodes through the tied token embedding: its dense
    writes the embedding's group and its norm is divided by the copy counts,
    so the logits are the teacher's."""
    make, _ = BACKBONES[name]
    task = {"bert": keras_hub.models.BertMaskedLM,
            "distil_bert": keras_hub.models.DistilBertMaskedLM}[name]
    teacher = perturb(task(backbone=perturb(make()), preprocessor=None), seed=1)
    for kwargs, expected in [(dict(widen=2.0), dict(hidden_dim=32, num_heads=4)),
                             (dict(deepen=["transformer_layer_1"]), dict(num_layers=3))]:
        student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
        assert len(y) == 1 and relative(y[0], z[0]) <= 1e-5
        assert student.get_layer("mlm_head").token_embedding is student.backbone.token_embedding


def test_an_integer_factor_refused_by_a_layer_says_why_not_the_factor(monkeypatch):
    from keras_net2net import rules

    table = dict(rules.registry._TABLE)
    table.pop(keras_hub.layers.MaskedLMHead)
    monkeypatch.setattr(rules.registry, "_TABLE", table)
    teacher = keras_hub.models.BertMaskedLM(backbone=perturb(keras_hub.models.BertBackbone(
        **TINY)), preprocessor=None)
    message = refused(teacher, errors.FrozenGroupError, widen=2.0)
    assert "MaskedLMHead" in message and "register_rule" in message, message
    assert "integer factor" not in message and "expand_model(model.backbone" in message


def albert():
    return perturb(keras_hub.models.AlbertBackbone(
        vocabulary_size=50, num_layers=2, num_heads=2, embedding_dim=8, hidden_dim=16,
        intermediate_dim=32, num_groups=1, num_inner_repetitions=1, max_sequence_length=16))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, embedding_dim=16)),
    # embedding_dim at x1.5: its LayerNorm reads a sum of writers (mean pads).
    (dict(widen={"hidden_dim": 32, "intermediate_dim": 48, "embedding_dim": 12}),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=48, embedding_dim=12)),
])
def test_albert_shared_block_grows_once_for_every_call(kwargs, expected, tmp_path):
    teacher = albert()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["embedding_projection"]
    names = [r["output"] for r in report.verification["inference"]]
    for out_name, a, b in zip(names, y, z):
        mapping = report.mappings()["pooled_dense"] if out_name == "pooled_dense" else g
        assert relative(a, readout(b, mapping, tied=False)) <= 1e-5
    # One shared block: one set of inner groups for both of its calls.
    assert len([r for r in report.inner if r["width"] == "num_heads"]) == 1


def test_albert_refuses_an_identity_block():
    message = refused(albert(), errors.PlanError, deepen=["group_0_inner_layer_0"])
    assert "shared" in message and "widen" in message
