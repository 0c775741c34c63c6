"""keras_hub backbones on an image encoder grow into their own class
(keras_net2net.hub.segmentation): SegFormer (MiT encoder) x2 and one MiT block
deeper; DeepLabV3 (ResNet encoder) x2 with a ResNet block, and x1.5; their
segmenters x2. The encoder's config grows by its own family's rules, the
head's `projection_filters` with it; widths the class fixes (DeepLabV3's
256-wide pyramid pooling and head, ResNet's first stack) stay. Teachers are
tiny, every weight perturbed (DeepLabV3's BatchNorm statistics calibrated)."""

import re

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_cnn import calibrate
from tests.hub.test_resnet import BASIC
from tests.hub.test_vision import MIT

import keras  # noqa: E402
from keras_net2net import errors  # noqa: E402

# Kept by design: the image input, MiT's head dims (the 1 / sqrt(head dim)
# scale), ResNet's first stack (and the stem conv feeding it), DeepLabV3's
# pyramid pooling and segmentation head (the class fixes them).
KEPT = r"(input:.*|inputs|.*:head_dim|.*conv2_conv|.*stack0_.*|spatial_pyramid_pooling(_\d+)?|" \
       r"segmentation_head_conv)"
DEEPLAB = dict(spatial_pyramid_pooling_key="P3", upsampling_size=2, dilation_rates=[1, 2],
               low_level_feature_key="P2", projection_filters=8, image_shape=(32, 32, 3))


def tiny_segformer():
    """SegFormerBackbone on a 2-stage MiT (hidden 8, 16), projection 8
    (initial weights; also benchmarks/hub_registry.py's)."""
    encoder = keras_hub.models.MiTBackbone(**MIT)
    return keras_hub.models.SegFormerBackbone(image_encoder=encoder, projection_filters=8)


def tiny_deeplab():
    """DeepLabV3Backbone on a basic-block ResNet (stacks 64, 16)."""
    encoder = keras_hub.models.ResNetBackbone(**dict(BASIC, image_shape=(None, None, 3)))
    return keras_hub.models.DeepLabV3Backbone(image_encoder=encoder, **DEEPLAB)


def segformer():
    keras.utils.set_random_seed(0)
    return perturb(tiny_segformer())


def deeplab():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(tiny_deeplab()))


def segmenter(task_class, backbone, **kwargs):
    """A task with its own head perturbed (the backbone's already are)."""
    task = task_class(backbone=backbone, **(kwargs or dict(num_classes=3)))
    rng = np.random.default_rng(1)
    own = {id(w) for w in backbone.weights}
    for w in task.weights:
        if id(w) not in own:
            w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    return task


def assert_every_group_grew(report, kept=KEPT):
    same = [g["name"] for g in report.groups if g["new_width"] <= g["old_width"]
            and not re.fullmatch(kept, g["name"].split("/")[-1])]
    assert report.groups
    assert not same, same


def test_segformer_grows_wider_and_deeper(tmp_path):
    teacher = segformer()
    student, report, errors_, (y, z) = grow_and_check(
        teacher, tmp_path, dict(projection_filters=16), widen=2.0,
        deepen=["hierarchical_encoder_0_0"])
    encoder = student.image_encoder.get_config()
    assert encoder["hidden_dims"] == [16, 32]
    assert encoder["layerwise_num_heads"] == [2, 4]
    assert encoder["layerwise_depths"] == [2, 1]
    assert_every_group_grew(report)
    # g(j) = j for j < n: the first 8 channels of the grown output are the teacher's.
    (y,), (z,) = y, z
    assert z.shape[-1] == 16
    error = relative(y, np.asarray(z)[..., :8])
    print(f"SegFormerBackbone x2 + block: max rel {error:.2e} (report {max(errors_):.2e})")
    assert error <= 1e-5
    new = student.image_encoder.get_layer("hierarchical_encoder_0_1")
    assert not any(np.any(w.numpy()) for w in new.attn.proj.weights + new.mlp.fc2.weights)


def test_segformer_refuses_what_its_encoder_refuses():
    teacher = segformer()
    message = refused(teacher, errors.PlanError, widen=1.5)
    assert "widen=2.0" in message and "LayerNorm" in message
    message = refused(teacher, errors.PlanError, widen={"projection_filters": 16})
    assert "factor" in message
    message = refused(teacher, errors.PlanError, deepen=["linear_8"])
    assert "hierarchical_encoder_0_0" in message


@pytest.mark.parametrize("kwargs,filters,blocks,projection", [
    (dict(widen=2.0, deepen=["stack1_block1"]), [64, 32], [1, 3], 16),
    (dict(widen=1.5), [64, 24], [1, 2], 12),
])
def test_deeplab_grows(kwargs, filters, blocks, projection, tmp_path):
    teacher = deeplab()
    student, report, errors_, (y, z) = grow_and_check(
        teacher, tmp_path, dict(projection_filters=projection), **kwargs)
    encoder = student.image_encoder.get_config()
    assert encoder["stackwise_num_filters"] == filters
    assert encoder["stackwise_num_blocks"] == blocks
    assert_every_group_grew(report)
    (y,), (z,) = y, z  # the 256-wide head keeps its width: compared directly
    error = relative(y, z)
    print(f"DeepLabV3Backbone {kwargs}: max rel {error:.2e} (report {max(errors_):.2e})")
    assert error <= 1e-5
    if "deepen" in kwargs:  # the new block's last BatchNorm writes 0
        norm = student.image_encoder.get_layer("stack1_block2_2_bn")
        assert not np.any(norm.gamma.numpy()) and not np.any(norm.beta.numpy())


def test_deeplab_deepen_names_the_last_block_of_a_stack():
    message = refused(deeplab(), errors.PlanError, deepen=["stack1_block0"])
    assert "'stack1_block1'" in message


@pytest.mark.parametrize("make,task_class,kwargs", [
    (segformer, "SegFormerImageSegmenter", dict(widen=2.0)),
    (deeplab, "DeepLabV3ImageSegmenter", dict(widen=2.0, deepen=["stack1_block1"])),
])
def test_segmenter_grows_with_its_head(make, task_class, kwargs, tmp_path):
    """The segmenter's head reads the grown features: its logits are the
    teacher's, compared directly."""
    task = segmenter(getattr(keras_hub.models, task_class), make())
    student, report, errors_, (y, z) = grow_and_check(task, tmp_path, {}, **kwargs)
    (y,), (z,) = y, z
    error = relative(y, z)
    print(f"{task_class} {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5 and z.shape == y.shape
    assert student.backbone.get_config()["projection_filters"] == 16
