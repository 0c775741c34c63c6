"""Every bad input gets a typed error naming the layer or option, and the
teacher is left as it was."""

import keras
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests import factories
from tests.growth import assert_refused
from tests.growth import assert_unchanged
from tests.growth import snapshot


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.fc = keras.layers.Dense(3)

    def call(self, x):
        return self.fc(x)


def _subclassed():
    m = Subclassed()
    m(keras.ops.zeros((1, 4)))
    return m


CASES = [
    # (factory, kwargs, error type, fragments the message must contain)
    (factories.residual, dict(widen=0.5), errors.PlanError, ["widen >= 1", "widen=0.5"]),
    (factories.residual, dict(widen="wide"), errors.PlanError, ["widen='wide'"]),
    (factories.residual, dict(widen={"stem": 4}), errors.PlanError,
     ["current width 8", "'stem'", "widen={'stem': 4}"]),
    (factories.residual, dict(widen={"stme": 16}), errors.PlanError,
     ["'stme'", "Did you mean 'stem'"]),
    (factories.residual, dict(widen={"stem": 16, "b1_conv2": 24}), errors.PlanError,
     ["coupled through", "'b1_add'"]),
    (factories.residual, dict(widen={"b1_bn1": 16}), errors.PlanError,
     ["BatchNormalization", "'b1_bn1'"]),
    (factories.residual, dict(widen={"logits": 9}, strict=True), errors.FrozenGroupError,
     ["'logits'", "model output 'logits'", "strict=False"]),
    (factories.barriers, dict(widen={"before_lambda": 9}, strict=True), errors.FrozenGroupError,
     ["Lambda 'lam'"]),
    (factories.norms, dict(widen={"conv_gn": 12}, strict=True), errors.FrozenGroupError,
     ["GroupNormalization 'gn'", "whole multiple"]),
    (factories.residual, dict(widen={"stem": 0.5}), errors.PlanError, ["only adds units"]),
    (factories.norms, dict(widen=1.5, strict=True), errors.FrozenGroupError,
     ["widen=1.5", "whole multiple", "strict=False"]),
    (factories.residual, dict(widen={}), errors.PlanError, ["at least one layer"]),
    (factories.residual, dict(widen={"stem": "x"}), errors.PlanError, ["'stem'"]),
    (factories.residual, dict(deepen=["nope"]), errors.PlanError, ["deepen='nope'"]),
    (factories.residual, dict(deepen=["b1_bn1"]), errors.PlanError,
     ["BatchNormalization", "Dense", "Conv2D"]),
    (factories.residual, dict(deepen={"stem": 0}), errors.PlanError, ["positive count"]),
    (factories.residual, dict(deepen={"stem": "sideways"}), errors.PlanError, ["'sideways'"]),
    (factories.residual, dict(deepen=42), errors.PlanError, ["deepen=42"]),
    (factories.conv1d_3d_transpose, dict(deepen=["c1d"]), errors.PlanError, ["causal"]),
    (factories.nested_and_shared, dict(widen={"nested/inner_fc": 9}), errors.PlanError,
     ["'nested/inner_fc'"]),
    (factories.residual, dict(widen=1.5, mapping="zigzag"), errors.PlanError, ["mapping="]),
    (factories.residual, dict(widen=1.5, noise=-1.0), errors.PlanError, ["noise >= 0"]),
    (factories.residual, dict(widen=1.5, noise_mode="loud"), errors.PlanError, ["noise_mode="]),
    (factories.residual, dict(mappings={"ghost": [0, 1]}), errors.PlanError, ["'ghost'"]),
    (factories.residual, dict(mappings={"stem": [0, 0, 0]}), errors.PlanError, ["'stem'"]),
]


@pytest.mark.parametrize("factory,kwargs,error,fragments", CASES,
                         ids=[f"{c[0].__name__}-{sorted(c[1])}-{i}" for i, c in enumerate(CASES)])
def test_bad_request_is_refused_and_teacher_kept(factory, kwargs, error, fragments):
    teacher = factories.randomize_state(factory())
    snap = snapshot(teacher)
    assert_refused(teacher, kwargs, error, fragments)
    assert_unchanged(teacher, snap)


class _UnregisteredSchedule(keras.optimizers.schedules.LearningRateSchedule):
    def __init__(self, peak):
        self.peak = peak

    def __call__(self, step):
        return self.peak

    def get_config(self):
        return {"peak": self.peak}


def test_a_compile_config_that_cannot_deserialize_is_named_and_the_teacher_kept():
    """clone_model compiles the student from the teacher's compile config; an
    unregistered schedule in it used to surface as "a layer whose width
    changed cannot take its new input"."""
    teacher = factories.randomize_state(factories.residual())
    teacher.compile(optimizer=keras.optimizers.Adam(_UnregisteredSchedule(1e-3)), loss="mse")
    snap = snapshot(teacher)
    assert_refused(teacher, dict(widen=2.0), errors.UnsupportedModelError,
                   ["compile config", "register_keras_serializable", "uncompiled view",
                    "teacher is unchanged"])
    assert_unchanged(teacher, snap)
    uncompiled = keras.Model(teacher.inputs, teacher.outputs)  # the fix: same layers
    student, report = n2n.expand_model(uncompiled, widen=2.0, return_report=True)
    assert report.max_relative_error <= 1e-5, report.max_relative_error


def test_subclassed_model_is_refused():
    with pytest.raises(errors.UnsupportedModelError, match="Subclassed.*functional API"):
        n2n.expand_model(_subclassed(), widen=2.0)


def test_unbuilt_sequential_is_refused():
    model = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(errors.UnsupportedModelError, match="not built.*keras.Input"):
        n2n.expand_model(model, widen=2.0)


def test_errors_are_value_errors():
    assert issubclass(errors.Net2NetError, ValueError)
    for cls in (errors.PlanError, errors.FrozenGroupError, errors.UnsupportedModelError,
                errors.VerificationError):
        assert issubclass(cls, errors.Net2NetError)


def test_strict_false_skips_with_note():
    teacher = factories.barriers()
    _, report = n2n.expand_model(teacher, widen={"before_lambda": 9, "free": 8},
                                 return_report=True)
    assert report.skipped[0]["request"] == "before_lambda"
    assert "Lambda 'lam'" in report.skipped[0]["reason"]
    widths = {r["layer"]: r["new_width"] for r in report.layers}
    assert widths["free"] == 8 and widths["before_lambda"] == 6


def test_a_deepen_that_is_no_block_list_names_the_fix():
    from keras_net2net import options

    assert options.block_counts(["b1", "b2"], "b2") == {"b1": 1, "b2": 1}
    with pytest.raises(errors.PlanError) as info:
        options.block_counts(3, "block_2")
    message = str(info.value)
    assert message.startswith("Expected deepen to be a block name") and \
        "deepen=3" in message and "deepen=['block_2']" in message, message
