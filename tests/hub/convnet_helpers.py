"""Shared checks for the keras_hub CNN backbones grown by
keras_net2net.hub.convnets (tests/hub/test_{resnet,vgg,densenet,xception,
cspnet}.py): tiny teachers on 32x32 images, every weight perturbed, BatchNorm
statistics calibrated on data (tests.hub.test_cnn.calibrate)."""

import re

import keras
import numpy as np

from tests.growth import assert_unchanged
from tests.growth import snapshot
from tests.hub.helpers import readout
from tests.hub.helpers import relative
from tests.hub.test_cnn import IMAGES

import keras_net2net as n2n  # noqa: E402


def grow_and_compare(teacher, tmp_path, output_layer, expected, kept=(), round_trip=True,
                     **kwargs):
    """Grows `teacher`, then checks: same class, the expected config values,
    the teacher bit-identical, every channel vector (1-D weight) grown except
    those of layers matching `kept` (widths the class fixes), the output
    within 1e-5 read back through the mapping of `output_layer` (a producer
    of the output's group; None: the output concatenates several groups,
    checked by the report's readout only), and
    (`round_trip`) the `.keras` round trip exact. Returns (student, report,
    error)."""
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    config = student.get_config()
    for key, value in expected.items():
        assert config[key] == value, (key, config[key], value)
    if "widen" in kwargs:
        old = {w.path: w.shape for w in teacher.weights}
        same = [w.path for w in student.weights if w.path in old and len(w.shape) == 1
                and w.shape[0] <= old[w.path][0]
                and not any(re.match(k, w.path) for k in kept)]
        assert not same, same
    rows = report.verification["inference"]
    assert rows and max(r["max_rel"] for r in rows) <= 1e-5, rows
    y = np.asarray(teacher(IMAGES, training=False))
    z = np.asarray(student(IMAGES, training=False))
    maps = report.mappings()
    if output_layer is None:  # a concatenation of several groups: the report's readout
        error = max(r["max_rel"] for r in rows)
    else:
        assert output_layer in maps, sorted(maps)
        g = maps[output_layer]
        assert len(g) == z.shape[-1], sorted(maps)
        error = relative(y, readout(z, g, tied=False))
    print(f"{type(teacher).__name__} {kwargs}: max rel {error:.2e}, "
          f"params {teacher.count_params()} -> {student.count_params()}")
    assert error <= 1e-5
    if round_trip:
        path = tmp_path / "student.keras"
        student.save(path)
        loaded = keras.models.load_model(path)
        assert type(loaded) is type(student)
        np.testing.assert_array_equal(np.asarray(loaded(IMAGES, training=False)), z)
    return student, report, error


def classifier(task_class, backbone, **kwargs):
    """An ImageClassifier on `backbone` with its head's weights perturbed
    (the backbone's are already: perturbing its calibrated BatchNorm
    statistics again could make a variance negative and the teacher NaN)."""
    task = task_class(backbone=backbone, num_classes=3, **kwargs)
    rng = np.random.default_rng(1)
    own = {id(w) for w in backbone.weights}
    for w in task.weights:
        if id(w) not in own:
            w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    return task


def grow_classifier(task, tmp_path, kept, **kwargs):
    """Grows an ImageClassifier: its logits are the teacher's (compared
    directly), the backbone inside grown as `kept` allows."""
    student, report, error = grow_and_compare(task, tmp_path, None, {},
                                              kept=kept + (r"predictions/",), **kwargs)
    assert type(student) is type(task)
    return student, report, error
