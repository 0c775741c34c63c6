"""Net2DeeperNet: identity layers and zero-initialised residual blocks keep
every output, and add exactly the layers asked for."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from tests import factories
from tests.growth import assert_keras_round_trip
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers


def dense_relu_bn():
    inp = keras.Input((6,))
    x = L.Dense(8, activation="relu", name="fc1")(inp)
    x = L.BatchNormalization(name="bn")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def swish_gelu():
    inp = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, activation="swish", name="conv_swish")(inp)
    x = L.Flatten()(x)
    x = L.Dense(6, activation="gelu", name="fc_gelu")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


# (factory, deepen, widen, layers added, inserted activation of first insertion)
CASES = [
    (factories.mlp, ["fc1"], None, 2, "linear"),  # fc1-BN: BN copied, linear
    (factories.mlp, {"fc1": 2}, None, 4, "linear"),
    (dense_relu_bn, ["fc1"], None, 2, "linear"),
    (factories.residual, ["b1_conv1"], None, 3, "relu"),  # Conv-BN-ReLU gains Conv-BN-ReLU
    (factories.residual, {"b1_conv2": 1, "stem": 2}, None, 1 + 6, "linear"),
    (factories.residual, {"b1_conv1": "residual"}, None, 6, "relu"),
    (factories.inception, ["br2b", "br1"], None, 2, "linear"),
    (factories.depthwise_separable, ["dw1", "sep", "dw2"], None, 4, "linear"),
    (factories.conv1d_3d_transpose, ["sep1d", "c3d", "dw1d"], None, 3, "linear"),
    (factories.cnn_channels_first, ["conv1", "conv2"], None, 4, "relu"),
    (factories.nested_and_shared, ["block/inner_fc", "shared"], None, 3, "relu"),
    (factories.sequential, {"conv1": 1, "fc1": 2}, None, 2 + 4, "relu"),
    (factories.sequential, {"conv2": "residual"}, None, 6, "relu"),
    (swish_gelu, {"conv_swish": "residual", "fc_gelu": "residual"}, None, 6 + 3, "swish"),
    (swish_gelu, ["conv_swish"], None, 1, "linear"),  # swish is not idempotent
    (factories.residual, {"b1_conv1": 1, "b2_conv1": "residual"}, 1.5, 3 + 6, "relu"),
    (factories.squeeze_excite, ["conv", "se_reduce"], 2.0, 3, "linear"),
]


def _count(model):
    n = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            n += _count(layer)
        elif not isinstance(layer, L.InputLayer):
            n += 1
    return n


@pytest.mark.parametrize("factory,deepen,widen,added,activation", CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(CASES)])
def test_deepen_preserves_outputs(factory, deepen, widen, added, activation):
    teacher = factories.randomize_state(factory())
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, deepen=deepen, seed=0,
                                       return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert_unchanged(teacher, snap)
    assert _count(student) - _count(teacher) == added
    first = report.inserted[0]
    if first["mode"] == "identity":
        assert first["activation"] == activation, first
    assert all(name.startswith(ins["anchor"] + "_deepen_")
               for ins in report.inserted for name in ins["layers"])


def test_inserted_layers_take_the_new_width():
    teacher = factories.randomize_state(factories.residual())
    student = n2n.expand_model(teacher, widen=2.0, deepen={"b1_conv1": 1, "b2_conv1": "residual"})
    assert student.get_layer("b1_conv1_deepen_1").filters == 16
    assert student.get_layer("b2_conv1_deepen_1_a").filters == 24
    assert student.get_layer("b2_conv1_deepen_1_b").filters == 24


def test_identity_kernels_and_zero_last_scale():
    teacher = factories.randomize_state(factories.residual())
    student = n2n.expand_model(teacher, deepen={"b1_conv1": 1, "b2_conv1": "residual"})
    kernel = student.get_layer("b1_conv1_deepen_1").kernel.numpy()
    assert kernel.shape == (3, 3, 8, 8)
    np.testing.assert_array_equal(kernel[1, 1], np.eye(8))
    assert np.abs(kernel).sum() == 8
    assert not student.get_layer("b2_conv1_deepen_1_b_bn").gamma.numpy().any()
    # The residual branch's first conv is random, so fine-tuning can move it.
    assert np.abs(student.get_layer("b2_conv1_deepen_1_a").kernel.numpy()).sum() > 0


def test_bn_statistics_from_data_bring_training_mode_close():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    teacher = factories.randomize_state(keras.Model(inp, L.Dense(3, name="logits")(x)))
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(64, 6, 6, 3)) * 2 + 1).astype("float32")
    _, with_data = n2n.expand_model(teacher, deepen=["conv1"], data=data, return_report=True)
    _, without = n2n.expand_model(teacher, deepen=["conv1"], verify_data=data,
                                  return_report=True)
    # Training-mode error without data, measured on the same batch.
    student = n2n.expand_model(teacher, deepen=["conv1"])
    from keras_net2net import verify

    rows = verify.compare(teacher, student, [data], ["logits"], training=True)
    trained = with_data.verification["training"][0]["max_rel"]
    assert with_data.max_relative_error <= 1e-5 and without.max_relative_error <= 1e-5
    assert trained < rows[0]["max_rel"], (trained, rows[0]["max_rel"])
    assert trained < 1e-3


def test_inserted_activation_note_when_not_exact():
    teacher = dense_relu_bn()
    _, report = n2n.expand_model(teacher, deepen=["fc1"], return_report=True)
    assert report.inserted[0]["activation"] == "linear"
    teacher = swish_gelu()
    _, report = n2n.expand_model(teacher, deepen=["conv_swish"], return_report=True)
    assert "not idempotent" in report.inserted[0]["note"]


def test_keras_round_trip_of_deepened(tmp_path):
    teacher = factories.randomize_state(factories.inception())
    student = n2n.expand_model(teacher, widen=1.5, deepen={"br2b": 2, "post": "residual"})
    assert_keras_round_trip(student, probe(teacher), tmp_path)


def test_grouped_and_depthwise_style_convs_stay_grouped():
    inp = keras.Input((6, 6, 4))
    x = L.Conv2D(8, 1, name="pw")(inp)
    x = L.Conv2D(8, 3, padding="same", groups=8, name="dw_as_grouped")(x)
    x = L.Conv2D(6, 1, name="mix")(x)
    x = L.Conv2D(8, 3, padding="same", groups=2, name="grouped")(x)
    x = L.GlobalAveragePooling2D()(x)
    teacher = keras.Model(inp, L.Dense(2, name="logits")(x))
    student = n2n.expand_model(teacher, widen=2.0, deepen=["dw_as_grouped", "grouped"])
    assert student.get_layer("dw_as_grouped").groups == 16
    assert student.get_layer("dw_as_grouped_deepen_1").groups == 16
    assert student.get_layer("grouped_deepen_1").groups == 2
    assert_preserved(teacher, student, probe(teacher))


def test_bn_statistics_fall_back_to_inference_mode_when_scales_differ():
    """Untrained moving statistics: inference-mode values are tiny, training-
    mode ones are not; training-mode statistics would cancel in float32."""
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(4, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    teacher = keras.Model(inp, L.Dense(2, name="logits")(x))
    teacher.get_layer("bn1").moving_variance.assign(np.full(4, 1e16, "float32"))
    data = np.random.default_rng(0).normal(size=(32, 6, 6, 3)).astype("float32")
    student, report = n2n.expand_model(teacher, deepen=["conv1"], data=data, return_report=True)
    assert report.max_relative_error <= 1e-5
    assert "inference mode" in report.inserted[0]["note"]


def test_explain_model_prints_groups():
    text = str(n2n.explain_model(factories.residual()))
    assert text.startswith("Channel groups")
    assert "can widen" in text and "kept: model output 'logits'" in text
    assert "couples: " in text
