"""keras_hub ViTDet grows into bigger ViTDets (exact): x2 and x1.5 (mean
pads: pre-LN blocks), one identity block deeper after a windowed or a
global block (the anchor's attention kind kept, later global indices
shifted); the neck keeps `num_output_channels` unless it is named (whole
multiples); a head-dim change refused."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

VITDET = dict(image_shape=(16, 16, 3), patch_size=4, hidden_size=8, num_layers=2,
              global_attention_layer_indices=[1], intermediate_dim=16, num_heads=2,
              num_output_channels=4, window_size=2)
# No relative positions, no qkv bias, no absolute positions: the other build orders.
PLAIN = dict(VITDET, use_rel_pos=False, use_bias=False, use_abs_pos=False, num_layers=1,
             global_attention_layer_indices=[])


@pytest.fixture(scope="module")
def vitdet():
    return perturb(keras_hub.models.ViTDetBackbone(**VITDET))


@pytest.mark.parametrize("config,kwargs,expected", [
    (VITDET, dict(widen=2.0), dict(hidden_size=16, num_heads=4, intermediate_dim=32,
                                   num_layers=2, num_output_channels=4)),
    (VITDET, dict(widen=1.5, deepen=["block_0"]),
     dict(hidden_size=12, num_heads=3, intermediate_dim=24, num_layers=3,
          global_attention_layer_indices=[2])),
    (VITDET, dict(deepen={"block_1": 2}),
     dict(hidden_size=8, num_layers=4, global_attention_layer_indices=[1, 2, 3])),
    (PLAIN, dict(widen=2.0), dict(hidden_size=16, num_heads=4, intermediate_dim=32)),
])
def test_vit_det_backbone_grows_into_its_class(vitdet, config, kwargs, expected, tmp_path):
    teacher = vitdet if config is VITDET else perturb(keras_hub.models.ViTDetBackbone(**config))
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    error = relative(y[0], z[0])  # the neck's output keeps its width: compared as it is
    print(f"ViTDetBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "deepen" in kwargs:  # a new block's writers are zero
        new = [l for l in student.layers if "windowed_transformer_encoder" in l.name]
        anchor = int(next(iter(kwargs["deepen"]))[-1])
        assert not np.any(new[anchor + 1].attention.projection.kernel.numpy())
        assert np.any(new[anchor].attention.projection.kernel.numpy())


def test_vit_det_neck_grows_when_named(vitdet, tmp_path):
    expected = dict(num_output_channels=8, hidden_size=16, num_heads=4)
    student, report, errs, (y, z) = grow_and_check(
        vitdet, tmp_path, expected, widen={"num_output_channels": 8, "hidden_size": 16})
    neck = [name for name in report.mappings() if "conv2d" in name]
    g = report.mappings()[neck[-1]]  # the neck's last convolution writes the output
    assert len(neck) == 2 and len(g) == 8
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"ViTDetBackbone neck x2, hidden x2: max rel {max(errs):.2e}, {error:.2e} (here)")
    assert error <= 1e-5


def test_vit_det_bad_requests_are_refused(vitdet):
    message = refused(vitdet, errors.PlanError, widen={"num_output_channels": 6})
    assert "LayerNorm" in message and "num_output_channels=8" in message
    message = refused(vitdet, errors.PlanError, widen={"hidden_size": 16, "num_heads": 2})
    assert "relative position" in message and "num_heads=4" in message
    message = refused(vitdet, errors.PlanError, deepen=["windowed_transformer_encoder"])
    assert "block_0" in message
