"""The teacher is bit-identical after every growth, failed or not: a layer
whose config holds its own variables (keras_hub's D-FINE decoder does) gets
copies of their values, and a student that would still share a variable with
the teacher is refused before any weight is written."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import carry
from keras_net2net import errors
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot


class VariableInConfig(keras.layers.Layer):
    """Scales its input by a weight, and returns that weight in its config
    (as keras_hub's DFineDecoder returns `upsampling_factor`): a layer made
    from the config would track the teacher's variable as its own."""

    def __init__(self, factor=0.5, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def build(self, input_shape):
        # Made before the factor: a student tracking the teacher's factor
        # first would pair its weights with the teacher's out of order.
        self.offset = self.add_weight(name="offset", shape=(1,), initializer="zeros")
        self.factor = self.add_weight(name="factor", shape=(1,),
                                      initializer=keras.initializers.Constant(self.factor))

    def call(self, x):
        return x * self.factor + self.offset

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class _Holder:
    """An object a config cannot look into, holding a variable."""

    def __init__(self, variable):
        self.variable = variable


class SharesThroughObject(keras.layers.Layer):
    """Returns its weight wrapped in a plain object: no config copy can see
    the variable, so the student would share it."""

    def __init__(self, holder=None, **kwargs):
        super().__init__(**kwargs)
        self.holder = holder
        if holder is not None:
            self.shared = holder.variable

    def build(self, input_shape):
        if self.holder is None:
            self.shared = self.add_weight(name="shared", shape=(1,), initializer="ones")
            self.holder = _Holder(self.shared)

    def call(self, x):
        return x * self.shared

    def get_config(self):
        return {**super().get_config(), "holder": self.holder}


def _model(layer):
    keras.utils.set_random_seed(0)
    x = keras.Input((6,))
    h = keras.layers.Dense(8, activation="tanh", name="hidden")(x)
    h = layer(keras.layers.Dense(8, name="mid")(h))
    y = keras.layers.Dense(3, name="out")(keras.layers.Activation("tanh")(h))
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)
    for w in model.weights:
        w.assign(w.numpy() + rng.normal(0.0, 0.2, w.shape).astype(w.dtype))
    return model


def test_a_variable_in_a_config_is_copied_and_the_teacher_kept():
    teacher = _model(VariableInConfig(name="scale"))
    snap = snapshot(teacher)
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    assert_unchanged(teacher, snap)
    assert student.get_layer("hidden").units == 16
    assert student.get_layer("scale").factor is not teacher.get_layer("scale").factor
    assert_preserved(teacher, student, probe(teacher))


def test_a_shared_variable_is_refused_before_any_write():
    teacher = _model(SharesThroughObject(name="shares"))
    snap = snapshot(teacher)
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model(teacher, widen=2.0, seed=0)
    message = str(info.value)
    assert message.startswith("Expected") and "shares/shared" in message, message
    assert "The teacher is unchanged" in message
    assert_unchanged(teacher, snap)


def test_detached_copies_containers_and_variables():
    variable = keras.Variable(np.array([0.5], "float32"))
    config = {"a": [1, {"v": variable}], "b": (variable, "x")}
    out = carry.detached(config)
    assert out == {"a": [1, {"v": out["a"][1]["v"]}], "b": (out["b"][0], "x")}
    assert isinstance(out["a"][1]["v"], np.ndarray) and isinstance(out["b"][0], np.ndarray)
    np.testing.assert_array_equal(out["b"][0], [0.5])
    out["a"][1]["v"] = 3  # editing the copy leaves the original as it was
    assert config["a"][1]["v"] is variable
