"""keras_hub vision backbones grow into bigger ones of their class: ViT (pre-LN
encoder in one container: x2, x1.5 with mean pads, deeper by identity blocks
at the encoder's end)."""

import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.hub_helpers import grow_and_check
from tests.hub_helpers import keras_hub
from tests.hub_helpers import perturb
from tests.hub_helpers import readout
from tests.hub_helpers import relative

VIT = dict(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8,
           mlp_dim=16)


@pytest.fixture(scope="module")
def vit():
    return perturb(keras_hub.models.ViTBackbone(**VIT))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=16, num_heads=4, mlp_dim=32, num_layers=2)),
    (dict(widen=1.5, deepen=["vit_encoder"]),
     dict(hidden_dim=12, num_heads=3, mlp_dim=24, num_layers=3)),
    (dict(deepen={"vit_encoder": 2}), dict(hidden_dim=8, num_heads=2, num_layers=4)),
])
def test_vit_backbone_grows_into_its_class(vit, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(vit, tmp_path, expected, **kwargs)
    g = report.mappings().get("vit_patching_and_embedding", list(range(8)))
    assert len(g) == expected["hidden_dim"]
    # The final LayerNorm gives the teacher's values at each first copy.
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"ViTBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    if "widen" in kwargs:
        inner = {r["width"]: r["new_width"] for r in report.inner}
        assert inner["num_heads"] == expected["num_heads"], report.inner
        assert inner["intermediate_dim"] == expected["mlp_dim"], report.inner
    if "deepen" in kwargs:  # the new blocks are at the encoder's end
        encoder = student.get_layer("vit_encoder")
        last = encoder.encoder_layers[-1]
        assert not np.any(last.mlp.dense_2.kernel.numpy())
        assert np.any(encoder.encoder_layers[VIT["num_layers"] - 1].mlp.dense_2.kernel.numpy())


def test_vit_bad_requests_are_refused(vit):
    with pytest.raises(errors.PlanError) as info:
        n2n.expand_model(vit, deepen=["transformer_block_1"])
    assert "vit_encoder" in str(info.value) and "Fix:" in str(info.value)
    with pytest.raises(errors.PlanError) as info:
        n2n.expand_model(vit, widen={"hidden_dim": 12, "num_heads": 5})
    assert "num_heads" in str(info.value) and "Fix:" in str(info.value)
