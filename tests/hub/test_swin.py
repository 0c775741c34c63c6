"""keras_hub Swin Transformer grows into bigger Swins (exact): x2 (every
stage's width and heads, the head dim and bias tables' positions kept), one
identity block appended to a stage, and its ImageClassifier x2; non-integer
factors refused with the integer one (LayerNorms over the merged copies)."""

import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

from keras_net2net import errors  # noqa: E402

SWIN = dict(image_shape=(16, 16, 3), embed_dim=8, depths=(2, 2), num_heads=(2, 4),
            window_size=2, patch_size=2)


@pytest.fixture(scope="module")
def swin():
    return perturb(keras_hub.models.SwinTransformerBackbone(**SWIN))


def test_swin_backbone_grows_wider_and_deeper(swin, tmp_path):
    expected = dict(embed_dim=16, depths=(2, 3))  # num_heads: a tuple, checked below
    student, report, errs, (y, z) = grow_and_check(swin, tmp_path, expected, widen=2.0,
                                                   deepen=["stage_1"])
    g = report.mappings()["stage_0"]  # the last merging produces the output's stream
    assert len(g) == 32
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"SwinTransformerBackbone x2 + block: max rel {max(errs):.2e} (report), "
          f"{error:.2e} (here)")
    assert error <= 1e-5
    assert tuple(student.get_config()["num_heads"]) == (4, 8)
    last = student.get_layer("stage_1").blocks[-1]
    assert not np.any(last.attn.proj.kernel.numpy()) and not np.any(last.mlp.fc2.kernel.numpy())
    assert student.get_layer("stage_0").blocks[0].attn.relative_position_bias_table.shape == (9, 4)


def test_swin_image_classifier_grows(swin, tmp_path):
    task = perturb(keras_hub.models.SwinTransformerImageClassifier(backbone=swin, num_classes=3),
                   seed=1)
    student, report, errs, (y, z) = grow_and_check(task, tmp_path, dict(embed_dim=16),
                                                   widen=2.0)
    assert relative(y[0], z[0]) <= 1e-5  # the logits themselves


def test_swin_bad_requests_are_refused(swin):
    message = refused(swin, errors.PlanError, widen=1.5)
    assert "LayerNorm" in message and "widen=2.0" in message
    message = refused(swin, errors.PlanError, widen={"embed_dim": 16})
    assert "integer factor" in message
    message = refused(swin, errors.PlanError, deepen=["blocks_0"])
    assert "stage_0" in message
