"""keras_hub BASNetBackbone (ResNet encoder, prediction and refinement
modules) grows into a bigger BASNetBackbone (keras_net2net.hub.segmentation):
x2, every width but ResNet's 64-wide first stack; its eight sigmoid maps are
the teacher's. Deeper is refused: BASNet taps each stack's residual add
before its ReLU.

The teacher is perturbed by N(0, 0.05) (not the suite's 0.2) and its
BatchNorm statistics calibrated on 16 images: the 1x1 deepest stage makes
the float32 rounding of a teacher perturbed by 0.2 reach 3e-4 relative
(the same growth in float64 matches to 6e-15)."""

import keras
import numpy as np

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_segmentation import assert_every_group_grew

from keras_net2net import errors  # noqa: E402

# keras_hub's BASNet needs a post-activation ResNet of four stacks, whose
# stem writes `projection_filters` channels.
RESNET = dict(input_conv_filters=[8], input_conv_kernel_sizes=[3],
              stackwise_num_filters=[64, 8, 8, 8], stackwise_num_blocks=[1, 1, 1, 1],
              stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
              use_pre_activation=False, image_shape=(None, None, 3))


def tiny_basnet():
    """Initial weights (also benchmarks/hub_registry.py's)."""
    encoder = keras_hub.models.ResNetBackbone(**RESNET)
    return keras_hub.models.BASNetBackbone(image_encoder=encoder, num_classes=1,
                                           image_shape=(32, 32, 3), projection_filters=8)


def basnet():
    keras.utils.set_random_seed(0)
    model = perturb(tiny_basnet(), scale=0.05)
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(np.random.default_rng(3).normal(size=(16, 32, 32, 3)).astype("float32"), training=True)
    for layer in norms:
        layer.momentum = 0.99
    return model


def test_basnet_grows_wider_and_refuses_deeper(tmp_path):
    teacher = basnet()
    student, report, errors_, (y, z) = grow_and_check(
        teacher, tmp_path, dict(projection_filters=16), widen=2.0)
    assert student.image_encoder.get_config()["stackwise_num_filters"] == [64, 16, 16, 16]
    # Kept: the image, the first stack, the heads' num_classes maps.
    assert_every_group_grew(report, kept=r"(input:.*|stack0_.*|conv2d(_\d+)?)")
    assert len(y) == 8  # the refined map and seven predictions, compared directly
    error = max(relative(a, b) for a, b in zip(y, z))
    print(f"BASNetBackbone x2: max rel {error:.2e} (report {max(errors_):.2e})")
    assert error <= 1e-5
    message = refused(teacher, errors.PlanError, deepen=["stack3_block0"])
    assert "before its ReLU" in message and "widen=2.0" in message
