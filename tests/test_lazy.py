"""The student is built with its variables deferred (keras_net2net.lazy): it is
the one the eager build gives, bit for bit, with no variable left without a
value; under a tf.distribute scope its variables are distributed; inside a
caller's stateless scope, and for mixed precision, growth works as before."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.common import global_state

import keras_net2net as n2n
from keras_net2net import lazy
from tests.growth import probe

L = keras.layers


# -- teachers ---------------------------------------------------------------
def cnn():
    """Conv-BN-ReLU, Dropout (a seed-generator state), a nested Sequential."""
    inputs = keras.Input((8, 8, 3))
    x = L.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="r1")(x)
    x = L.Dropout(0.2, name="drop")(x)
    x = keras.Sequential([keras.Input((8, 8, 4)), L.Conv2D(6, 3, padding="same", name="c2"),
                          L.ReLU(name="r2")], name="inner")(x)
    x = L.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, L.Dense(3, name="out")(x))


CNN_PLAN = dict(widen=2.0, deepen={"c1": 1, "c2": "residual"})


def stateful_rnn():
    seq = keras.Input((5, 3), batch_size=3)
    y = L.LSTM(4, stateful=True, return_sequences=True, name="lstm")(L.Dense(5, name="fc")(seq))
    teacher = keras.Model(seq, L.Dense(2, name="logits")(L.Flatten()(y)))
    teacher(np.random.default_rng(0).normal(size=(3, 5, 3)).astype("float32"))  # state != 0
    return teacher


def mha():
    inputs = keras.Input((5, 8))
    x = L.Dense(8, name="proj")(inputs)
    x = L.Add(name="res")([x, L.MultiHeadAttention(2, 4, name="mha")(x, x)])
    x = L.LayerNormalization(name="ln")(x)
    x = L.Dense(16, activation="relu", name="ff")(x)
    return keras.Model(inputs, L.Dense(3, name="out")(L.GlobalAveragePooling1D(name="pool")(x)))


CASES = [(cnn, CNN_PLAN, True), (stateful_rnn, dict(widen={"fc": 10}), False),
         (mha, dict(widen=2.0, deepen={"ff": "residual"}), True)]


# -- helpers ----------------------------------------------------------------
@pytest.fixture
def deferrals(monkeypatch):
    """How many variables each `lazy.build` left deferred (0: built eagerly)."""
    counts, build = [], lazy.build

    def spy(fn, *args, **kwargs):
        out, made = build(fn, *args, **kwargs)
        counts.append(len(made))
        return out, made

    monkeypatch.setattr(lazy, "build", spy)
    return counts


@pytest.fixture
def eager_too(monkeypatch):
    """Grows `teacher` as `expand_model(teacher, **plan)`, deferred or eager,
    from the same Keras seed (inserted layers draw the same values)."""
    def grow(teacher, deferred, **plan):
        monkeypatch.setattr(lazy, "ENABLED", deferred)
        keras.utils.set_random_seed(0)
        return n2n.expand_model(teacher, seed=0, **plan)
    return grow


def assert_all_initialized(model):
    pending = {id(v) for v in global_state.get_global_attribute("uninitialized_variables") or []}
    for v in model.variables:
        assert v._value is not None and id(v) not in pending, v.path
        assert np.asarray(v.numpy()).shape == tuple(v.shape), v.path


def assert_same_variables(a, b):
    assert len(a.variables) == len(b.variables)
    for u, v in zip(a.variables, b.variables):
        assert (u.name, u.dtype, tuple(u.shape)) == (v.name, v.dtype, tuple(v.shape))
        np.testing.assert_array_equal(u.numpy(), v.numpy(), err_msg=u.path)


# -- tests ------------------------------------------------------------------
@pytest.mark.parametrize("make,plan,defers", CASES, ids=[c[0].__name__ for c in CASES])
def test_deferred_student_is_the_eager_one(make, plan, defers, eager_too, deferrals):
    teacher = make()
    x = probe(teacher)
    eager = eager_too(teacher, False, verify_data=x, **plan)
    assert deferrals == [0]
    student = eager_too(teacher, True, verify_data=x, **plan)
    # A stateful RNN makes its state variables from values, which a
    # stateless scope refuses: that build runs eagerly.
    assert (deferrals[1] > 0) == defers, deferrals
    assert_all_initialized(student)
    assert_same_variables(eager, student)
    if make is stateful_rnn:  # the teacher's state carried over
        for a, b in zip(teacher.get_layer("lstm").states, student.get_layer("lstm").states):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(eager.predict(x[0], verbose=0), student.predict(x[0], verbose=0))


def test_student_grown_in_a_strategy_scope_is_mirrored(deferrals):
    teacher = cnn()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        student = n2n.expand_model(teacher, seed=0, **CNN_PLAN)
    assert deferrals[0] > 0
    assert_all_initialized(student)
    plain = [v.path for v in student.variables
             if not isinstance(v.value, tf.distribute.DistributedValues)]
    assert not plain, plain


def test_inside_a_callers_stateless_scope_growth_falls_back_to_eager(deferrals):
    teacher = cnn()
    with keras.StatelessScope():
        student, report = n2n.expand_model(teacher, seed=0, return_report=True, **CNN_PLAN)
    assert deferrals == [0]
    assert report.max_relative_error <= 1e-5
    # The scope's exit initialized the student's variables, as Keras does.
    assert_all_initialized(student)


def test_mixed_float16_grows_exactly(eager_too, deferrals):
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        teacher = cnn()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = probe(teacher)
    eager = eager_too(teacher, False, verify_data=x, **CNN_PLAN)
    student, report = eager_too(teacher, True, verify_data=x, return_report=True, **CNN_PLAN)
    assert deferrals[1] > 0
    assert student.get_layer("c1").dtype_policy.name == "mixed_float16"
    assert {v.dtype for v in student.weights} == {"float32"}
    assert report.max_relative_error <= report.verification["tolerance"]
    assert_all_initialized(student)
    assert_same_variables(eager, student)


def test_keras_hub_task_student_is_the_eager_one(eager_too, deferrals):
    """The backbone of a keras_hub task is made deferred, the task around it
    eagerly (its compile() makes an optimizer from values)."""
    keras_hub = pytest.importorskip("keras_hub")
    config = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=16,
                  intermediate_dim=32, max_sequence_length=16)
    teacher = keras_hub.models.GPT2CausalLM(
        backbone=keras_hub.models.GPT2Backbone(**config), preprocessor=None)
    plan = dict(widen=1.5, deepen=["transformer_layer_1"])
    eager = eager_too(teacher, False, **plan)
    student = eager_too(teacher, True, **plan)
    assert deferrals[0] == 0 and deferrals[1] > 0, deferrals
    assert_all_initialized(student)
    assert_same_variables(eager, student)
