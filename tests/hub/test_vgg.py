"""keras_hub VGGBackbone grows into a bigger VGGBackbone (exact): x2, x1.5,
and one conv deeper (an identity conv after the same ReLU)."""

import keras
import numpy as np
import pytest

from tests.hub.convnet_helpers import grow_and_compare
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.test_cnn import calibrate

from keras_net2net import errors  # noqa: E402

VGG = dict(stackwise_num_repeats=[1, 2], stackwise_num_filters=[8, 16], image_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def vgg():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.VGGBackbone(**VGG)))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0, deepen=["block2_conv2"]),
     dict(stackwise_num_filters=[16, 32], stackwise_num_repeats=[1, 3])),
    (dict(widen=1.5), dict(stackwise_num_filters=[12, 24])),
])
def test_vgg_grows_into_a_vgg(vgg, kwargs, expected, tmp_path):
    student, report, _ = grow_and_compare(vgg, tmp_path, "block2_conv2", expected,
                                          round_trip="deepen" in kwargs, **kwargs)
    if "deepen" in kwargs:
        new = student.get_layer("block2_conv3")
        kernel = new.kernel.numpy()
        assert np.array_equal(kernel[1, 1], np.eye(32)) and not np.any(new.bias.numpy())


def test_vgg_deepen_names_the_last_conv_of_a_block(vgg):
    message = refused(vgg, errors.PlanError, deepen=["block2_conv1"])
    assert "'block2_conv2'" in message
