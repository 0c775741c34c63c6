"""keras_hub ResNetBackbone grows into a bigger ResNetBackbone (exact): basic
blocks (post-activation) and pre-activation bottlenecks, x2 and x1.5, one
block deeper. keras_hub requires the first stack's width to be 64, so that
stack (and, with basic blocks, the stem's last conv that feeds it) keeps its
width; everything else grows."""

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

BASIC = dict(input_conv_filters=[8, 64], input_conv_kernel_sizes=[3, 3],
             stackwise_num_filters=[64, 16], stackwise_num_blocks=[1, 2],
             stackwise_num_strides=[1, 2], block_type="basic_block", image_shape=(32, 32, 3))
BOTTLENECK = dict(input_conv_filters=[8, 16], input_conv_kernel_sizes=[3, 3],
                  stackwise_num_filters=[64, 8], stackwise_num_blocks=[1, 2],
                  stackwise_num_strides=[1, 2], block_type="bottleneck_block",
                  use_pre_activation=True, image_shape=(32, 32, 3))
# The first stack (64 wide), and the stem's last conv where it feeds it directly.
KEPT = (r"conv2_(conv|bn)/", r"stack0_", r"conv1_bn/")


def resnet(config):
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.ResNetBackbone(**config)))


@pytest.mark.parametrize("config,kwargs,expected,last", [
    (BASIC, dict(widen=2.0, deepen=["stack1_block1"]),
     dict(input_conv_filters=[16, 64], stackwise_num_filters=[64, 32],
          stackwise_num_blocks=[1, 3]), "stack1_block2_2_bn"),
    (BASIC, dict(widen=1.5), dict(stackwise_num_filters=[64, 24]), None),
    (BOTTLENECK, dict(widen=2.0, deepen=["stack1_block1"]),
     dict(input_conv_filters=[16, 32], stackwise_num_filters=[64, 16],
          stackwise_num_blocks=[1, 3]), "stack1_block2_3_conv"),
])
def test_resnet_grows_into_a_resnet(config, kwargs, expected, last, tmp_path):
    teacher = resnet(config)
    # Bottleneck: the first stack writes 4 x 64, read by the next pre-activation norm.
    kept = KEPT if config is BASIC else (r"stack0_", r"stack1_block0_pre_activation_bn/")
    output = "stack1_block0_0_conv" if config is BOTTLENECK else "stack1_block0_2_conv"
    student, report, _ = grow_and_compare(teacher, tmp_path, output, expected, kept=kept,
                                          round_trip=last is not None, **kwargs)
    if last is not None:  # the appended block's last scale is zero
        layer = student.get_layer(last)
        assert not any(np.any(w.numpy()) for w in layer.weights
                       if w.name in ("kernel", "gamma", "beta"))


def test_resnet_deepen_names_the_last_block_of_a_stack():
    message = refused(resnet(BASIC), errors.PlanError, deepen=["stack1_block0"])
    assert "'stack1_block1'" in message


def test_resnet_image_classifier_grows_with_its_head(tmp_path):
    """The head (pooling, Dense) reads the grown features: its logits are the
    teacher's, compared directly."""
    task = classifier(keras_hub.models.ResNetImageClassifier, resnet(BASIC))
    student, _, _ = grow_classifier(task, tmp_path, KEPT, widen=2.0, deepen=["stack1_block1"])
    assert student.backbone.get_config()["stackwise_num_blocks"] == [1, 3]
