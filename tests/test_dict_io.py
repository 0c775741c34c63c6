"""Functional models with dict inputs and outputs (keras_hub backbones take
{"token_ids", "padding_mask"}) grow into students of the same structure."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net.graph import pack_inputs
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers


def dict_model():
    """Inputs given out of key order, two named outputs."""
    a = keras.Input((6,), name="a")
    b = keras.Input((4,), name="b")
    h = L.Dense(8, activation="relu", name="h")(L.Concatenate()([a, b]))
    h = L.Dense(5, activation="relu", name="h2")(h)
    outputs = {"y": L.Dense(3, name="y")(h), "z": L.Dense(2, name="z")(h)}
    return randomize_state(keras.Model({"b": b, "a": a}, outputs), seed=3)


@pytest.mark.parametrize("kwargs", [dict(widen=2.0), dict(widen=1.5, deepen=["h"]),
                                    dict(deepen={"h2": "residual"})])
def test_dict_inputs_and_outputs_keep_their_structure(kwargs, tmp_path):
    teacher = dict_model()
    before = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    x = probe(teacher)
    assert isinstance(student.input, dict) and sorted(student.input) == ["a", "b"]
    assert isinstance(student.output, dict) and sorted(student.output) == ["y", "z"]
    figures = assert_preserved(teacher, student, x)
    assert len(figures) == 2
    assert report.max_relative_error <= 1e-5
    assert student.count_params() > teacher.count_params()
    assert_unchanged(teacher, before)
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    feed = pack_inputs(student, x)
    for key in ("y", "z"):
        np.testing.assert_array_equal(np.asarray(student(feed)[key]), np.asarray(loaded(feed)[key]))


def test_dict_data_for_inserted_batchnorm_statistics():
    a = keras.Input((6, 6, 2), name="a")
    x = L.Conv2D(4, 3, name="conv")(a)
    x = L.BatchNormalization(name="bn")(x)
    teacher = randomize_state(keras.Model({"a": a}, {"out": L.GlobalAveragePooling2D()(x)}))
    data = {"a": np.random.default_rng(0).normal(size=(16, 6, 6, 2)).astype("float32")}
    student, report = n2n.expand_model(teacher, deepen=["conv"], data=data, seed=0,
                                       verify_data=data, return_report=True)
    assert report.max_relative_error <= 1e-5
    assert_preserved(teacher, student, [data["a"]])
