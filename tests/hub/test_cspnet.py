"""keras_hub CSPNetBackbone grows into a bigger CSPNetBackbone (exact): x2
and x1.5 (`stem_filters`, `stackwise_num_filters`; the split, the blocks and
the concatenations follow), one block deeper in a stage (dark blocks with
leaky ReLU; bottleneck blocks with ReLU), and bottleneck blocks with leaky
ReLU after their add refused with the reason."""

import keras
import numpy as np
import pytest

from tests.hub.convnet_helpers import classifier
from tests.hub.convnet_helpers import grow_and_compare
from tests.hub.convnet_helpers import grow_classifier
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.test_cnn import calibrate

from keras_net2net import errors  # noqa: E402

DARK = dict(stem_filters=8, stem_kernel_size=3, stem_strides=2, stackwise_depth=[1, 2],
            stackwise_strides=[2, 2], stackwise_num_filters=[16, 32], block_type="dark_block",
            stage_type="dark", image_shape=(32, 32, 3))
CSP = dict(DARK, block_type="bottleneck_block", stage_type="csp", expand_ratio=[2.0],
           bottle_ratio=[0.5], block_ratio=[1.0], activation="relu")


def cspnet(config):
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.CSPNetBackbone(**config)))


@pytest.mark.parametrize("config,kwargs,expected,last", [
    (DARK, dict(widen=2.0, deepen=["stage_1_block_1"]),
     dict(stem_filters=16, stackwise_num_filters=[32, 64], stackwise_depth=[1, 3]),
     "stage_1_block_2_dark_block_bn_2"),
    (CSP, dict(widen=2.0, deepen=["stage_0_block_0"]),
     dict(stem_filters=16, stackwise_num_filters=[32, 64], stackwise_depth=[2, 2]),
     "stage_0_block_1_bottleneck_block_bn_3"),
    (DARK, dict(widen=1.5), dict(stem_filters=12, stackwise_num_filters=[24, 48]), None),
])
def test_cspnet_grows_into_a_cspnet(config, kwargs, expected, last, tmp_path):
    student, _, _ = grow_and_compare(cspnet(config), tmp_path, None, expected,
                                     round_trip=last is not None, **kwargs)
    if last is not None:
        layer = student.get_layer(last)
        assert not np.any(layer.gamma.numpy()) and not np.any(layer.beta.numpy())


def test_cspnet_leaky_bottleneck_deeper_is_refused():
    message = refused(cspnet(dict(CSP, activation="leaky_relu")), errors.PlanError,
                      deepen=["stage_1_block_1"])
    assert "after the residual add" in message and "widen=2.0" in message


def test_cspnet_image_classifier_grows_with_its_head(tmp_path):
    task = classifier(keras_hub.models.CSPNetImageClassifier, cspnet(DARK))
    grow_classifier(task, tmp_path, (), widen=2.0)
