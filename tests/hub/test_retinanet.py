"""keras_hub RetinaNetBackbone grows into a bigger RetinaNetBackbone (exact):
its image encoder (a ResNetBackbone) by ResNet's own rules (x2 with one block
deeper, x1.5), its feature pyramid (inlined) reading the grown encoder
outputs; the pyramid's 256 filters are no key of the class's config, so they
and the outputs keep their width. FeaturePyramidBackbone is an abstract base
class (no layers of its own): the registry says so."""

import keras
import numpy as np
import pytest

from tests.growth import assert_unchanged
from tests.growth import snapshot
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_cnn import IMAGES
from tests.hub.test_cnn import calibrate
from tests.hub.test_resnet import BASIC

import keras_net2net as n2n  # noqa: E402
from keras_net2net import errors  # noqa: E402

RETINANET = dict(min_level=2, max_level=4, use_p5=False, image_shape=(32, 32, 3))


def retinanet_config():
    """RetinaNetBackbone's tiny kwargs: its image encoder is a model."""
    return dict(RETINANET, image_encoder=keras_hub.models.ResNetBackbone(**BASIC))


def retinanet():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.RetinaNetBackbone(**retinanet_config())))


@pytest.mark.parametrize("kwargs,filters,blocks", [
    (dict(widen=2.0, deepen=["stack1_block1"]), [64, 32], [1, 3]),
    (dict(widen=1.5), [64, 24], [1, 2]),
])
def test_retinanet_grows_its_image_encoder(kwargs, filters, blocks, tmp_path):
    teacher = retinanet()
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    assert type(student.image_encoder) is keras_hub.models.ResNetBackbone
    inner = student.image_encoder.get_config()
    assert inner["stackwise_num_filters"] == filters and inner["stackwise_num_blocks"] == blocks
    rows = report.verification["inference"]
    assert rows and max(r["max_rel"] for r in rows) <= 1e-5, rows
    y, z = teacher(IMAGES, training=False), student(IMAGES, training=False)
    error = max(relative(y[k], z[k]) for k in y)  # the pyramid keeps its width
    print(f"RetinaNetBackbone {kwargs}: max rel {error:.2e}, params {teacher.count_params()} "
          f"-> {student.count_params()}")
    assert error <= 1e-5
    lateral = [l for l in student.feature_pyramid._flatten_layers() if "lateral" in l.name]
    assert lateral and all(l.kernel.shape[2] > 16 for l in lateral if "P3" in l.name)
    if "deepen" in kwargs:
        path = tmp_path / "student.keras"
        student.save(path)
        loaded = keras.models.load_model(path)
        for k, v in loaded(IMAGES, training=False).items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(z[k]))


def test_retinanet_deepen_names_a_block_of_its_image_encoder():
    message = refused(retinanet(), errors.PlanError, deepen=["fpn"])
    assert "'stack1_block1'" in message


def test_retinanet_object_detector_grows_its_image_encoder():
    """The prediction heads read the pyramid (256 wide, kept): the boxes and
    logits are the teacher's."""
    backbone = retinanet()
    task = keras_hub.models.RetinaNetObjectDetector(backbone=backbone, num_classes=2,
                                                    pre_logits_num_conv_layers=1)
    snap = snapshot(task)
    student, report = n2n.expand_model(task, seed=0, return_report=True, widen=2.0)
    assert_unchanged(task, snap)
    assert type(student) is type(task)
    assert student.backbone.image_encoder.get_config()["stackwise_num_filters"] == [64, 32]
    y, z = task(IMAGES, training=False), student(IMAGES, training=False)
    error = max(relative(y[k], z[k]) for k in y)
    print(f"RetinaNetObjectDetector widen=2.0: max rel {error:.2e}")
    assert error <= 1e-5
