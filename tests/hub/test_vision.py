"""keras_hub vision backbones grow into bigger ones of their class: ViT (pre-LN
encoder in one container: x2, x1.5 with mean pads, deeper by identity blocks
at the encoder's end) and MiT (SegFormer stages: every stage x2, deeper by an
identity block in a stage; non-integer factors refused with the integer one)."""

import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative

VIT = dict(image_shape=(16, 16, 3), patch_size=4, num_layers=2, num_heads=2, hidden_dim=8,
           mlp_dim=16)


@pytest.fixture(scope="module")
def vit():
    return perturb(keras_hub.models.ViTBackbone(**VIT))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=16, num_heads=4, mlp_dim=32, num_layers=2)),
    (dict(widen=1.5, deepen={"vit_encoder": 2}),
     dict(hidden_dim=12, num_heads=3, mlp_dim=24, num_layers=4)),
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


MIT = dict(layerwise_depths=[1, 1], num_layers=2, layerwise_num_heads=[1, 2],
           layerwise_sr_ratios=[2, 1], max_drop_path_rate=0.1, layerwise_patch_sizes=[3, 3],
           layerwise_strides=[2, 2], image_shape=(16, 16, 3), hidden_dims=[8, 16])


@pytest.fixture(scope="module")
def mit():
    return perturb(keras_hub.models.MiTBackbone(**MIT))


# One growth (CPU budget): x2 on every stage and a block in stage 0 at once.
@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0, deepen=["hierarchical_encoder_0_0"]),
     dict(hidden_dims=[16, 32], layerwise_num_heads=[2, 4], layerwise_depths=[2, 1])),
])
def test_mit_backbone_grows_every_stage(mit, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(mit, tmp_path, expected, **kwargs)
    maps = report.mappings()
    for i, width in enumerate(expected["hidden_dims"]):  # every stage's width grew
        assert len(maps[f"patch_and_embed_{i}"]) == width, sorted(maps)
    g = maps["patch_and_embed_1"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"MiTBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    heads = [r["new_width"] for r in report.inner if r["width"] == "num_heads"]
    assert sorted(set(heads)) == expected["layerwise_num_heads"], report.inner
    if "deepen" in kwargs:
        new = student.get_layer("hierarchical_encoder_0_1")
        assert not np.any(new.mlp.fc2.kernel.numpy()) and not np.any(new.attn.proj.kernel.numpy())


def test_mit_non_integer_width_is_refused_with_the_integer_factor(mit):
    before = [w.numpy().copy() for w in mit.weights]
    with pytest.raises(errors.PlanError) as info:
        n2n.expand_model(mit, widen=1.5)
    assert "LayerNorm" in str(info.value) and "widen=2.0" in str(info.value)
    for a, b in zip(before, mit.weights):
        np.testing.assert_array_equal(a, b.numpy())
