"""keras_hub DINOv2 grows into bigger DINOv2s (exact): x2 (MLP and SwiGLU
FFNs; the SwiGLU width is kept), one identity block deeper (layer scales
zero), register tokens and an interpolated position table grown with the
stream; non-integer factors refused with the integer one."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

DINOV2 = dict(patch_size=4, num_layers=2, hidden_dim=8, num_heads=2, intermediate_dim=16,
              image_shape=(16, 16, 3), position_embedding_shape=(16, 16),
              num_register_tokens=2)
# SwiGLU, and a position table interpolated from 32x32 to the 16x16 images.
SWIGLU = dict(DINOV2, num_layers=1, use_swiglu_ffn=True, position_embedding_shape=(32, 32),
              num_register_tokens=0)


def consistent(model):
    """The interpolated position table re-derived from the stored one, as
    keras_hub's build and load leave it. Perturbing both apart breaks the
    teacher's own `.keras` round trip: keras_hub's save copies the
    interpolated table back only when the signed sum of their difference is
    positive, and its load re-derives the interpolated one."""
    embedding = model.get_layer(model.name + "_embeddings") if any(
        l.name == model.name + "_embeddings" for l in model.layers) else \
        model.get_layer("embeddings")
    embedding.interpolated_position_embeddings.assign(
        embedding._interpolate_position_embeddings(
            embedding.position_embeddings, patch_size=embedding.patch_size,
            source_shape=embedding.position_embedding_shape,
            target_shape=embedding.image_shape,
            antialias=embedding.antialias_in_interpolation))
    return model


@pytest.fixture(scope="module")
def dinov2():
    return consistent(perturb(keras_hub.models.DINOV2Backbone(**DINOV2)))


@pytest.mark.parametrize("config,kwargs,expected", [
    (DINOV2, dict(widen=2.0, deepen=["encoder"]),
     dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_layers=3)),
    (SWIGLU, dict(widen=2.0), dict(hidden_dim=16, num_heads=4, intermediate_dim=16)),
])
def test_dinov2_backbone_grows_into_its_class(dinov2, config, kwargs, expected, tmp_path):
    teacher = dinov2 if config is DINOV2 else consistent(
        perturb(keras_hub.models.DINOV2Backbone(**config)))
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings()["embeddings"]
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"DINOV2Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "deepen" in kwargs:
        last = student.get_layer(student.name + "_encoder").layers[-1]
        assert not np.any(last.layer_scale1.lambda1.numpy())
        assert not np.any(last.layer_scale2.lambda1.numpy())


def test_dinov2_non_integer_width_is_refused_with_the_integer_factor(dinov2):
    message = refused(dinov2, errors.PlanError, widen=1.5)
    assert "layer scale" in message and "widen=2.0" in message
    swiglu = keras_hub.models.DINOV2Backbone(**SWIGLU)
    message = refused(swiglu, errors.PlanError, widen={"intermediate_dim": 64})
    assert "SwiGLU" in message
