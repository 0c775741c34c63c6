"""keras_hub DepthAnythingBackbone (a DINOv2 encoder, a neck that reads its
stream after two blocks, a depth head) grows into a bigger
DepthAnythingBackbone (keras_net2net.hub.segmentation): the encoder x2 as
its own family grows it (hidden, heads, MLP; head dim kept), the neck's rows
that read the stream divided, the neck's and head's own widths kept. Its
depth map, and a DepthAnythingDepthEstimator's, are the teacher's. Deeper is
refused: blocks appended at the encoder's end feed nothing the neck reads."""

import keras

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_dinov2 import DINOV2
from tests.hub.test_dinov2 import consistent
from tests.hub.test_segmentation import assert_every_group_grew
from tests.hub.test_segmentation import segmenter

from keras_net2net import errors  # noqa: E402

HEAD = dict(reassemble_factors=[4, 2], neck_hidden_dims=[8, 8], fusion_hidden_dim=8,
            head_hidden_dim=8, head_in_index=-1, feature_keys=["stage1", "stage2"])


def tiny_depth_anything():
    """Initial weights (also benchmarks/hub_registry.py's)."""
    encoder = keras_hub.models.DINOV2Backbone(**DINOV2)
    return keras_hub.models.DepthAnythingBackbone(image_encoder=encoder, **HEAD)


def depth_anything():
    """Perturbed, the encoder's position tables made consistent again (a
    keras_hub save/load quirk: tests/hub/test_dinov2.consistent)."""
    keras.utils.set_random_seed(0)
    model = perturb(tiny_depth_anything())
    consistent(model.image_encoder)
    return model


def test_depth_anything_grows_wider_and_refuses_deeper(tmp_path):
    teacher = depth_anything()
    student, report, errors_, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=2.0)
    encoder = student.image_encoder.get_config()
    assert (encoder["hidden_dim"], encoder["num_heads"], encoder["intermediate_dim"]) == (
        16, 4, 32)
    # Kept: the image, the head dim, the neck's and head's own widths.
    assert_every_group_grew(report, kept=r"(input:.*|.*:head_dim|neck|head)")
    (y,), (z,) = y, z
    error = relative(y, z)
    print(f"DepthAnythingBackbone x2: max rel {error:.2e}")
    assert error <= 1e-5
    message = refused(teacher, errors.PlanError, deepen=["encoder"])
    assert "feed no feature" in message and "widen=2.0" in message


def test_depth_estimator_grows(tmp_path):
    task = segmenter(keras_hub.models.DepthAnythingDepthEstimator, depth_anything(),
                     depth_estimation_type="relative")
    student, report, errors_, (y, z) = grow_and_check(task, tmp_path, {}, widen=2.0)
    assert student.backbone.image_encoder.get_config()["hidden_dim"] == 16
    error = max(relative(a, b) for a, b in zip(y, z))
    print(f"DepthAnythingDepthEstimator x2: max rel {error:.2e}")
    assert error <= 1e-5
