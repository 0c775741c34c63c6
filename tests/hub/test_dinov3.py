"""keras_hub DINOv3 grows into bigger DINOv3s (exact): x2 with one identity
block appended (MLP and gated MLP; rotary positions, flat q/k/v projections
copied a head at a time), non-integer factors refused with the integer one."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

DINOV3 = dict(patch_size=4, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=16,
              image_shape=(16, 16, 3))


@pytest.mark.parametrize("gated", [False, True])
def test_dinov3_backbone_grows_into_its_class(gated, tmp_path):
    teacher = perturb(keras_hub.models.DINOV3Backbone(**DINOV3, use_gated_mlp=gated))
    expected = dict(hidden_dim=32, num_heads=4, intermediate_dim=32, num_layers=3)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, widen=2.0,
                                                   deepen=["encoder"])
    g = report.mappings()["embeddings"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"DINOV3Backbone gated={gated}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    last = student.get_layer(student.name + "_encoder").layers[-1]
    assert not np.any(last.layer_scale1.lambda1.numpy())


def test_dinov3_non_integer_width_is_refused_with_the_integer_factor():
    teacher = perturb(keras_hub.models.DINOV3Backbone(**DINOV3))
    message = refused(teacher, errors.PlanError, widen=1.5)
    assert "DINOV3Backbone" in message and "widen=2.0" in message
