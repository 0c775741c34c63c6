"""keras_hub DeiT grows into bigger DeiTs (exact): the backbone x2 and x1.5
one block deeper (mean pads: pre-LN blocks), and its ImageClassifier x2 with
the class and distillation heads reading the grown stream."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

DEIT = dict(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8,
            intermediate_dim=16)


@pytest.fixture(scope="module")
def deit():
    return perturb(keras_hub.models.DeiTBackbone(**DEIT))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_layers=2)),
    (dict(widen=1.5, deepen={"deit_encoder": 1}),
     dict(hidden_dim=12, num_heads=3, intermediate_dim=24, num_layers=3)),
])
def test_deit_backbone_grows_into_its_class(deit, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(deit, tmp_path, expected, **kwargs)
    g = report.mappings()["deit_patching_and_embedding"]
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"DeiTBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "deepen" in kwargs:  # the new block is the encoder's last, its writers zero
        blocks = student.get_layer("deit_encoder").encoder_layers
        assert not np.any(blocks[-1].output_layer.dense.kernel.numpy())
        assert not np.any(blocks[-1].mha._output_dense.kernel.numpy())
        assert np.any(blocks[-2].output_layer.dense.kernel.numpy())


def test_deit_image_classifier_grows_with_its_heads(deit, tmp_path):
    task = keras_hub.models.DeiTImageClassifier(backbone=deit, num_classes=3)
    perturb(task, seed=1)
    student, report, errs, (y, z) = grow_and_check(task, tmp_path, dict(hidden_dim=16),
                                                   widen=2.0)
    assert type(student) is keras_hub.models.DeiTImageClassifier
    assert relative(y[0], z[0]) <= 1e-5  # the logits themselves: nothing to read back


def test_deit_bad_requests_are_refused(deit):
    message = refused(deit, errors.PlanError, deepen=["transformer_block_1"])
    assert "deit_encoder" in message
    message = refused(deit, errors.PlanError, widen={"hidden_dim": 12, "num_heads": 5})
    assert "num_heads" in message
