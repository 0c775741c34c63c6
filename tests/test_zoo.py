"""One keras.applications model per family grows exactly (the full sweep,
every model and plan, is benchmarks/zoo.py)."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from benchmarks import zoo
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import snapshot

FAMILIES = ["VGG16", "ResNet50", "ResNet50V2", "InceptionV3", "InceptionResNetV2", "Xception",
            "MobileNet", "MobileNetV2", "MobileNetV3Small", "DenseNet121", "NASNetMobile",
            "EfficientNetB0", "EfficientNetV2B0", "ConvNeXtTiny"]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_grows_exactly(name):
    model = zoo.build(name)  # every constant-initialised weight randomised
    snap = snapshot(model)
    plan = dict(widen=2.0, deepen=zoo.inner_convs(model, k=2))
    # assert_preserved below is the comparison; expand_model's own would repeat it.
    student, report = n2n.expand_model(model, seed=0, verify=False, return_report=True, **plan)
    x = np.random.default_rng(0).uniform(0, 255, (2,) + tuple(model.input_shape[1:]))
    assert_preserved(model, student, [x.astype("float32")], rtol=1e-5)
    assert_unchanged(model, snap)
    assert student.count_params() > 2 * model.count_params()
    kept = [g for g in report.groups if g["new_width"] == g["old_width"]]
    skipped = {s["request"] for s in report.skipped}
    assert all(g["reasons"] or g["name"] in skipped for g in kept)
    inserted = {n for ins in report.inserted for n in ins["layers"]}
    assert inserted and all(student.get_layer(n) is not None for n in inserted)
    # Names only: a full gc.collect here walks every object the worker's
    # earlier tests left (traced training steps stay alive), 10-40 s late in
    # a run; Python's own collector frees these models.
    keras.backend.clear_session(free_memory=False)
