"""keras_hub RoFormer V2 (post-RMS-norm encoder blocks, rotary, flat
projections, a head_size key) grows x2 into a bigger RoformerV2Backbone and
RoformerV2TextClassifier; deepening (no identity block) and non-integer
factors (post-norms take no pads) are refused, typed."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

# hidden_dim = num_heads x head_size (the attention writes that many channels).
TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
            head_size=8, dropout=0.0)


def roformer():
    keras.utils.set_random_seed(0)  # a fixed teacher: see test_hub_gpt2.gpt2
    return perturb(keras_hub.models.RoformerV2Backbone(**TINY))


def test_roformer_v2_backbone_grows_x2_into_its_class(tmp_path):
    teacher = roformer()
    expected = dict(hidden_dim=32, num_heads=4, head_size=8, intermediate_dim=64)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, widen=2.0)
    error = relative(y[0], readout(z[0], report.mappings()["token_embedding"], tied=False))
    print(f"RoformerV2Backbone x2: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5


def test_roformer_v2_text_classifier_grows_x2(tmp_path):
    teacher = keras_hub.models.RoformerV2TextClassifier(backbone=roformer(), num_classes=3,
                                                        preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, dict(hidden_dim=32),
                                                   widen=2.0)
    assert relative(y[0], z[0]) <= 1e-5


@pytest.mark.parametrize("kwargs,error,words", [
    (dict(deepen=["transformer_layer_1"]), errors.PlanError, ["identity", "widen=2.0"]),
    (dict(widen=1.5), errors.FrozenGroupError, ["integer"]),
])
def test_roformer_v2_refusals_are_typed(kwargs, error, words):
    message = refused(roformer(), error, **kwargs)
    for word in words:
        assert word in message, message
