"""keras_hub XceptionBackbone grows into a bigger XceptionBackbone (exact):
x2 and x1.5 on every entry of `stackwise_conv_filters` (separable convs,
residual adds with and without a pointwise shortcut); deeper is refused."""

import keras
import pytest

from tests.hub.convnet_helpers import classifier
from tests.hub.convnet_helpers import grow_and_compare
from tests.hub.convnet_helpers import grow_classifier
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.test_cnn import calibrate

from keras_net2net import errors  # noqa: E402

# Entry block, a pooled block with a pointwise shortcut, an identity-residual
# block, and the exit block.
XCEPTION = dict(stackwise_conv_filters=[[8, 16], [32, 32], [32, 32], [48, 64]],
                stackwise_pooling=[False, True, False, False], image_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def xception():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.XceptionBackbone(**XCEPTION)))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(stackwise_conv_filters=[[16, 32], [64, 64], [64, 64], [96, 128]])),
    (dict(widen=1.5), dict(stackwise_conv_filters=[[12, 24], [48, 48], [48, 48], [72, 96]])),
])
def test_xception_grows_into_an_xception(xception, kwargs, expected, tmp_path):
    grow_and_compare(xception, tmp_path, "block4_sepconv2", expected,
                     round_trip=kwargs["widen"] == 2.0, **kwargs)


def test_xception_deeper_is_refused_with_the_alternative(xception):
    message = refused(xception, errors.PlanError, deepen=["block3_sepconv2"])
    assert "renames" in message and "widen=2.0" in message


def test_xception_image_classifier_grows_with_its_head(xception, tmp_path):
    task = classifier(keras_hub.models.XceptionImageClassifier, xception)
    grow_classifier(task, tmp_path, (), widen=2.0)
