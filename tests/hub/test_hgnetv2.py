"""keras_hub HGNetV2Backbone (nested keras_hub layers, inlined by
keras_net2net.hub.nested) grows into a bigger HGNetV2Backbone (exact): x2
and x1.5 (stem, stage in / mid / out channels; the stem's concatenation and
the aggregation's half width follow), one block deeper in a stage, with and
without learnable affine blocks and light blocks; the HGNetV2ImageClassifier
grows with its head conv."""

import re

import keras
import numpy as np

from tests.growth import assert_unchanged
from tests.growth import snapshot
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative
from tests.hub.test_cnn import IMAGES
from tests.hub.test_cnn import calibrate

import keras_net2net as n2n  # noqa: E402
from keras_net2net import errors  # noqa: E402

HGNETV2 = dict(depths=[1, 2], embedding_size=8, hidden_sizes=[16, 24], stem_channels=[3, 8, 8],
               hidden_act="relu", use_learnable_affine_block=True,
               stackwise_stage_filters=[(8, 8, 16, 1, 2, 3), (16, 8, 24, 2, 1, 3)],
               apply_downsample=[False, True], use_lightweight_conv_block=[False, True],
               image_shape=(32, 32, 3))


def hgnetv2(config=HGNETV2):
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.HGNetV2Backbone(**config)))


def grow(teacher, tmp_path, **kwargs):
    """Grows `teacher`: same class, teacher bit-identical, every channel
    vector grown (but the image's), outputs within 1e-5 (each stage read
    back through its mapping), `.keras` round trip exact."""
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    if "widen" in kwargs:  # layer names below the backbone carry its name in the student
        def vectors(model):
            return {re.sub(r"(^|/)[^/]*?(?=embedder|encoder|head_last)", r"\1", w.path): w.shape[0]
                    for w in model.weights if len(w.shape) == 1 and "predictions" not in w.path}
        old, new = vectors(teacher), vectors(student)
        same = [p for p in old if new[p] <= old[p]]
        assert len(old) > 20 and not same, same
    rows = report.verification["inference"]
    assert rows and max(r["max_rel"] for r in rows) <= 1e-5, rows
    y, z = teacher(IMAGES, training=False), student(IMAGES, training=False)
    if isinstance(y, dict):  # a backbone: each stage read back independently
        maps = report.mappings()
        last = {"stem": "stem4_conv", "stage1": "stage_0_block_0_agg_excite_conv",
                "stage2": "stage_1_block_0_agg_excite_conv"}
        errors_ = [relative(y[k], readout(z[k], maps[next(m for m in maps if m.endswith(v))],
                                          tied=False)) for k, v in last.items()]
    else:
        errors_ = [relative(y, z)]
    print(f"{type(teacher).__name__} {kwargs}: max rel {max(errors_):.2e}, params "
          f"{teacher.count_params()} -> {student.count_params()}")
    assert max(errors_) <= 1e-5
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(student)
    for a, b in zip(keras.tree.flatten(z), keras.tree.flatten(loaded(IMAGES, training=False))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    return student, report


def test_hgnetv2_grows_x2_and_one_block_deeper(tmp_path):
    teacher = hgnetv2()
    student, report = grow(teacher, tmp_path, widen=2.0, deepen=["stage_1_block_1"])
    config = student.get_config()
    assert config["stem_channels"] == [3, 16, 16] and config["hidden_sizes"] == [32, 48]
    assert [list(s) for s in config["stackwise_stage_filters"]] == [
        [16, 16, 32, 1, 2, 3], [32, 16, 48, 3, 1, 3]]
    new = student.encoder_layer.stages_list[1].blocks_list[2].aggregation_excitation_conv
    assert not np.any(new.normalization.gamma.numpy()) and not np.any(new.lab.bias.numpy())


def test_hgnetv2_image_classifier_grows_x1_5_with_its_head(tmp_path):
    """No affine blocks here; the head conv (head_filters) grows too."""
    backbone = hgnetv2(dict(HGNETV2, use_learnable_affine_block=False))
    task = keras_hub.models.HGNetV2ImageClassifier(backbone=backbone, preprocessor=None,
                                                   num_classes=3)
    rng = np.random.default_rng(1)
    own = {id(w) for w in backbone.weights}
    for w in task.weights:
        if id(w) not in own:
            w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    student, _ = grow(task, tmp_path, widen=1.5, deepen=["stage_0_block_0"])
    assert student.get_config()["head_filters"] == 36
    assert [list(s) for s in student.backbone.get_config()["stackwise_stage_filters"]] == [
        [12, 12, 24, 2, 2, 3], [24, 12, 36, 2, 1, 3]]


def test_hgnetv2_deepen_names_the_last_block_of_a_stage():
    message = refused(hgnetv2(), errors.PlanError, deepen=["stage_1_block_0"])
    assert "'stage_1_block_1'" in message
