"""keras_hub CLIP and MetaCLIP 2 grow into bigger models of their class
(exact): the composite x2 with the shared space, one identity block in each
tower, the text tower alone at x1.5 inside the composite, the towers alone;
the vision tower's non-integer factor and bad requests refused, typed."""

import numpy as np
import pytest

from tests.hub import dual_helpers
from tests.hub.dual_helpers import TEXT
from tests.hub.dual_helpers import VISION
from tests.hub.dual_helpers import grow_dual
from tests.hub.dual_helpers import new_block_is_identity
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import refused

from keras_net2net import errors  # noqa: E402

ZERO = ("attention_output", "dense_2")


@pytest.fixture(scope="module")
def clip():
    return dual_helpers.dual("CLIP", projection_dim=6)


def test_clip_backbone_x2_deeper_in_both_towers(clip, tmp_path):
    student, report, error = grow_dual(
        clip, tmp_path, {"vision_encoder": (16, 4, 32, 3), "text_encoder": (16, 4, 32, 3),
                         "projection_dim": 12},
        widen=2.0, deepen=["vision/vision_encoder_block_0",
                           "text_encoder_block_1"])
    print(f"CLIPBackbone x2, one block deeper per tower: max rel {error:.2e}")
    new_block_is_identity(student.vision_encoder, 1, ZERO)
    new_block_is_identity(student.text_encoder, 2, ZERO)
    assert student.text_encoder.get_config()["embedding_dim"] == 16


def test_clip_backbone_grows_the_text_tower_and_shared_space_by_1_5(clip, tmp_path):
    _, report, error = grow_dual(
        clip, tmp_path, {"vision_encoder": (8, 2, 16, 2), "text_encoder": (12, 3, 24, 2),
                         "projection_dim": 9},
        widen={"text_encoder": 1.5, "projection_dim": 1.5})
    print(f"CLIPBackbone text x1.5, projection 6 -> 9 (zero pads): max rel {error:.2e}")


def test_clip_backbone_refusals(clip):
    message = refused(clip, errors.FrozenGroupError, widen=1.5)
    assert "pre_layer_norm" in message and "text_encoder" in message
    message = refused(clip, errors.PlanError, deepen=["encoder_block_0"])
    assert "encoder_block_0" in message
    message = refused(clip, errors.PlanError, deepen=["vision_projection"])
    assert "block" in message
    message = refused(clip, errors.PlanError, widen={"hidden_dim": 16})
    assert "vision_encoder" in message
    message = refused(clip, errors.PlanError, widen={"vision_encoder": {"num_heads": 3}})
    assert "num_heads" in message
    message = refused(clip, errors.PlanError, widen={"projection_dim": 4})
    assert "projection_dim" in message


@pytest.mark.parametrize("tower,config,kwargs,expected", [
    (keras_hub.models.CLIPVisionEncoder, VISION, dict(widen=2.0, deepen=["encoder_block_1"]),
     dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_layers=3)),
    (keras_hub.models.CLIPTextEncoder, TEXT, dict(widen=1.5),
     dict(hidden_dim=12, embedding_dim=12, num_heads=3, intermediate_dim=24, num_layers=2)),
])
def test_clip_towers_grow_alone(tower, config, kwargs, expected, tmp_path):
    teacher = dual_helpers.perturb(tower(**config))
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    print(f"{tower.__name__} {kwargs}: max rel {max(errs):.2e}")
    if "deepen" in kwargs:
        new_block_is_identity(student, 2, ZERO)


def test_clip_vision_tower_refuses_a_non_integer_factor():
    teacher = dual_helpers.perturb(keras_hub.models.CLIPVisionEncoder(**VISION))
    message = refused(teacher, errors.FrozenGroupError, widen=1.5)
    assert "pre_layer_norm" in message


def test_metaclip2_backbone_x2_one_block_deeper(tmp_path):
    teacher = dual_helpers.dual("MetaCLIP2", projection_dim=6)
    student, _, error = grow_dual(
        teacher, tmp_path, {"vision_encoder": (16, 4, 32, 3), "text_encoder": (16, 4, 32, 2),
                            "projection_dim": 12},
        widen=2.0, deepen=["vision_encoder_block_1"])
    print(f"MetaCLIP2Backbone x2, one vision block deeper: max rel {error:.2e}")
    new_block_is_identity(student.vision_encoder, 2, ZERO)
    post = student.get_layer("vision_post_layer_norm").gamma.numpy()
    assert post.shape == (16,) and np.all(post != 0)
