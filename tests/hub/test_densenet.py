"""keras_hub DenseNetBackbone grows into a bigger DenseNetBackbone (exact):
`growth_rate` x2 (the concatenations, the bottleneck convs and the
transitions all grow; the stem keeps its 64 filters, which keras_hub fixes);
deeper is refused: no identity layer exists in a dense block."""

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

DENSENET = dict(stackwise_num_repeats=[2, 2], growth_rate=4, image_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def densenet():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.DenseNetBackbone(**DENSENET)))


def test_densenet_grows_into_a_densenet(densenet, tmp_path):
    # The stem's 64 channels stay (conv1_*); every norm after it reads a
    # concatenation holding grown channels too.
    student, _, _ = grow_and_compare(densenet, tmp_path, None, dict(growth_rate=8),
                                     kept=(r"conv1_", r"stack1_block1_1_bn/"), widen=2.0)
    assert student.get_layer("transition1_conv").filters > \
        densenet.get_layer("transition1_conv").filters


def test_densenet_deeper_is_refused_with_the_alternative(densenet):
    message = refused(densenet, errors.PlanError, deepen=["stack1_block2"])
    assert "dense block" in message and "widen=2.0" in message


def test_densenet_image_classifier_grows_with_its_head(densenet, tmp_path):
    task = classifier(keras_hub.models.DenseNetImageClassifier, densenet)
    grow_classifier(task, tmp_path, (r"conv1_", r"stack1_block1_1_bn/"), widen=2.0)
