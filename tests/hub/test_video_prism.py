"""keras_hub VideoPrism (vision) grows into bigger VideoPrisms (exact): x2
(both encoders, the position tables, heads copied whole), a free
intermediate_dim, identity blocks appended to each encoder; a non-integer
model width and the text tower refused typed."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

VIDEOPRISM = dict(num_frames=2, patch_size=4, hidden_dim=8, intermediate_dim=16, num_heads=2,
                  num_spatial_layers=1, num_temporal_layers=1, num_auxiliary_layers=0,
                  image_shape=(8, 8, 3), attention_logit_soft_cap=5.0)


@pytest.fixture(scope="module")
def videoprism():
    return perturb(keras_hub.models.VideoPrismBackbone(**VIDEOPRISM))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0, deepen={"spatial_encoder": 1, "temporal_encoder": 2}),
     dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_spatial_layers=2,
          num_temporal_layers=3)),
    (dict(widen={"intermediate_dim": 24}), dict(hidden_dim=8, intermediate_dim=24)),
])
def test_video_prism_backbone_grows_into_its_class(videoprism, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(videoprism, tmp_path, expected, **kwargs)
    g = report.mappings().get("spatial_patching_and_embedding", np.arange(8))  # kept: identity
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"VideoPrismBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "deepen" in kwargs:
        last = student.get_layer("temporal_encoder").encoder_layers[-1]
        assert not np.any(last.mha.output_dense.kernel.numpy())
        assert not np.any(last.mlp.dense_2.kernel.numpy())


def test_video_prism_refusals(videoprism):
    message = refused(videoprism, errors.PlanError, widen=1.5)
    assert "LayerNorm" in message and "widen=2.0" in message
    message = refused(videoprism, errors.PlanError, widen={"hidden_dim": 12})
    assert "widen=2.0" in message
    message = refused(videoprism, errors.PlanError, deepen=["transformer_block_0"])
    assert "spatial_encoder" in message
    text = keras_hub.models.VideoPrismBackbone(**dict(
        VIDEOPRISM, num_text_layers=1, vocabulary_size=20, num_auxiliary_layers=1))
    message = refused(text, errors.UnsupportedModelError, widen=2.0)
    assert "VideoPrismAttenTokenPoolingLayer" in message
