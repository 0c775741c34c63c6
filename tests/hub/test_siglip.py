"""keras_hub SigLIP grows into bigger SigLIPs (exact): the composite x2 (the
shared space is the vision width: the text head follows it) with one identity
block in each tower, the towers alone (the text tower at x1.5); the
composite's non-integer factor refused, typed (mean pads change a cosine)."""

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

ZERO = ("attention_output", "fc2")


@pytest.fixture(scope="module")
def siglip():
    return dual_helpers.dual("SigLIP")


def test_siglip_backbone_x2_deeper_in_both_towers(siglip, tmp_path):
    student, report, error = grow_dual(
        siglip, tmp_path, {"vision_encoder": (16, 4, 32, 3), "text_encoder": (16, 4, 32, 3)},
        widen=2.0, deepen=["vision/vision_encoder_block_1",
                           "text_encoder_block_0"])
    print(f"SigLIPBackbone x2, one block deeper per tower: max rel {error:.2e}")
    assert student.text_encoder.get_config()["projection_dim"] == 16
    assert student.vision_encoder.get_layer(
        "vision_head").get_config()["intermediate_dim"] == 32
    new_block_is_identity(student.vision_encoder, 2, ZERO)
    new_block_is_identity(student.text_encoder, 1, ZERO)


def test_siglip_backbone_refusals(siglip):
    message = refused(siglip, errors.FrozenGroupError, widen=1.5)
    assert "widen=2.0" in message
    message = refused(siglip, errors.PlanError, widen={"projection_dim": 16})
    assert "vision_encoder" in message


@pytest.mark.parametrize("tower,config,kwargs,expected", [
    (keras_hub.models.SigLIPVisionEncoder, VISION, dict(widen=2.0, deepen=["encoder_block_0"]),
     dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_layers=3)),
    (keras_hub.models.SigLIPTextEncoder, TEXT, dict(widen=1.5),
     dict(hidden_dim=12, embedding_dim=12, num_heads=3, intermediate_dim=24,
          projection_dim=8)),
])
def test_siglip_towers_grow_alone(tower, config, kwargs, expected, tmp_path):
    teacher = dual_helpers.perturb(tower(**config))
    student, report, errs, _ = grow_and_check(teacher, tmp_path, expected, **kwargs)
    print(f"{tower.__name__} {kwargs}: max rel {max(errs):.2e}")
    if "deepen" in kwargs:
        new_block_is_identity(student, 1, ZERO)


def test_siglip_vision_tower_refuses_a_non_integer_factor():
    teacher = dual_helpers.perturb(keras_hub.models.SigLIPVisionEncoder(**VISION))
    message = refused(teacher, errors.FrozenGroupError, widen=1.5)
    assert "SigLIPMultiHeadAttentionPooling" in message
