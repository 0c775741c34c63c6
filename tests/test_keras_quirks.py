"""Keras / TensorFlow behaviours the suite works around, reproduced in plain
Keras (no keras-net2net). They are not ours, but users with channels_first
models meet them. Each test asserts the behaviour as it is today, so it fails
when Keras or TensorFlow changes it: then drop the workaround it names.
"""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

pytestmark = [
    pytest.mark.keras_quirk,
    pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow backend"),
]


def _on_cpu():
    import tensorflow as tf
    return not tf.config.list_physical_devices("GPU")


def _conv_with_bias(cls, shape, filters):
    """A 1x1 channels_first conv on `shape` with a random bias, its input,
    and the output computed in NumPy with the bias on the channel axis."""
    rng = np.random.default_rng(0)
    conv = cls(filters, 1, data_format="channels_first")
    model = keras.Sequential([keras.Input(shape), conv])
    conv.bias.assign(rng.normal(size=filters).astype("float32"))
    x = rng.normal(size=(2,) + shape).astype("float32")
    kernel = conv.kernel.numpy().reshape(shape[0], filters)
    expected = np.einsum("bc...,co->bo...", x, kernel)
    expected += conv.bias.numpy().reshape((1, filters) + (1,) * (len(shape) - 1))
    return model, x, expected


@pytest.mark.skipif(not _on_cpu(), reason="GPU kernels take NCHW")
def test_tf_cpu_conv_channels_first_needs_onednn():
    """TF's own CPU Conv2D kernel takes NHWC only ("The Conv2D op currently
    only supports the NHWC tensor format on the CPU"); its oneDNN kernels take
    NCHW. TF 2.21 starts with oneDNN off on an AVX2 CPU, and then no
    channels_first Conv1D/Conv2D runs on CPU, in eager or graph mode (only
    jit_compile=True does). Workaround: tests/conftest.py sets
    TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow loads."""
    code = ("import keras, numpy as np\n"
            "m = keras.Sequential([keras.Input((3, 7, 7)),"
            " keras.layers.Conv2D(4, 3, data_format='channels_first')])\n"
            "m(np.zeros((1, 3, 7, 7), 'float32'))\n")
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert off.returncode != 0 and "only supports the NHWC tensor format" in off.stderr, \
        off.stderr[-2000:]
    assert os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
    model, x, expected = _conv_with_bias(keras.layers.Conv2D, (3, 5, 6), 4)
    np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)


def test_ops_add_puts_a_bias_on_the_last_axis_when_sizes_match():
    """keras.ops.add on the TF backend turns `x + b` into tf.nn.bias_add
    whenever `b` squeezes to a vector, and picks NHWC when x's last axis has
    the vector's size, even though `b` is shaped (1, C, 1, 1): the sum
    broadcasts along the wrong axis. tf.add gets it right."""
    x = np.zeros((1, 4, 5, 4), "float32")
    b = np.arange(4, dtype="float32").reshape(1, 4, 1, 1)
    wrong = np.asarray(keras.ops.add(x, b))
    np.testing.assert_array_equal(wrong[0, :, 0, :], np.tile(np.arange(4.0), (4, 1)))
    assert not np.array_equal(wrong, x + b)
    np.testing.assert_array_equal(np.asarray(keras.ops.add(x[..., :3], b)), x[..., :3] + b)


@pytest.mark.parametrize("cls,shape,predict_ok", [
    (keras.layers.Conv1D, (3, 4), True),
    (keras.layers.Conv2D, (3, 5, 4), True),
    (keras.layers.Conv3D, (3, 2, 5, 4), False),
])
def test_channels_first_conv_bias_lands_on_the_last_axis(cls, shape, predict_ok):
    """Conv layers add their bias with keras.ops.add, reshaped to (1, C, 1...)
    in channels_first: with `filters` equal to the last spatial size the bias
    goes along that spatial axis in eager calls. In `predict`, TF's graph
    optimiser fuses the 1D/2D conv with the BiasAdd in the conv's own NCHW
    format, which happens to be right; the 3D conv runs under XLA and stays
    wrong. Workaround: test shapes in tests/factories.py avoid the collision
    for every width they grow to; the fuzz generator gives channels_first
    convs no bias (tests/fuzz_models.py `_bias`)."""
    model, x, expected = _conv_with_bias(cls, shape, filters=shape[-1])
    assert np.abs(np.asarray(model(x)) - expected).max() > 0.1
    predicted = model.predict(x, verbose=0)
    assert (np.abs(predicted - expected).max() < 1e-5) == predict_ok
    # One more or one fewer filter than the last spatial size: right.
    for filters in (shape[-1] - 1, shape[-1] + 1):
        model, x, expected = _conv_with_bias(cls, shape, filters)
        np.testing.assert_allclose(np.asarray(model(x)), expected, atol=1e-5)
