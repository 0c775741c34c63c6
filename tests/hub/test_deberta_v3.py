"""keras_hub DeBERTa-v3 (post-LN blocks with disentangled attention over
relative position buckets) grows into a bigger DebertaV3Backbone,
DebertaV3TextClassifier and DebertaV3MaskedLM: x2 (the relative embeddings
take the stream's mapping), deeper by a post-LN identity block; a
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

# bucket_size 4 < max_sequence_length: the log buckets are used.
TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            dropout=0.0, max_sequence_length=16, bucket_size=4)
BLOCK = "disentangled_attention_encoder_layer_{}"


def deberta():
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.DebertaV3Backbone(**TINY))


GROWTH_CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen=2.0, deepen=[BLOCK.format(0)]),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=3)),
    (dict(deepen={BLOCK.format(1): 2}), dict(hidden_dim=16, num_layers=4)),
]


@pytest.mark.parametrize("kwargs,expected", GROWTH_CASES)
def test_deberta_v3_backbone_grows_into_its_class(kwargs, expected, tmp_path):
    teacher = deberta()
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(16)))
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"DebertaV3Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "widen" in kwargs:
        heads = [r for r in report.inner if r["width"] == "num_heads"]
        assert heads and all(r["new_width"] == expected["num_heads"] for r in heads)


@pytest.mark.parametrize("task", ["DebertaV3TextClassifier", "DebertaV3MaskedLM"])
def test_deberta_v3_tasks_grow_into_their_class(task, tmp_path):
    kwargs = {"num_classes": 3} if task == "DebertaV3TextClassifier" else {}
    teacher = getattr(keras_hub.models, task)(backbone=deberta(), preprocessor=None, **kwargs)
    student, report, errs, (y, z) = grow_and_check(
        teacher, tmp_path, dict(hidden_dim=32, num_layers=3), widen=2.0,
        deepen=[BLOCK.format(1)])
    error = relative(y[0], z[0])
    print(f"{task} x2 + block: max rel {error:.2e}")
    assert error <= 1e-5


def test_deberta_v3_at_a_non_integer_factor_is_refused_typed():
    message = refused(deberta(), errors.FrozenGroupError, widen=1.5)
    assert "integer" in message and "rel_embedding" in message, message
