"""keras_hub MobileNetBackbone and EfficientNetBackbone grow into bigger
backbones of their own class (exact): x2, x1.5 and deeper by an identity
block appended to a stack. One tiny teacher per class (32x32 images), every
weight perturbed (no 0 or 1), BatchNorm moving statistics calibrated on data
in training mode so that activations stay O(1) (random statistics blow a
float32 EfficientNet up to |y| ~ 1e4, where rounding alone reaches 1e-5)."""

import keras
import numpy as np
import pytest

from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative
from tests.hub.helpers import weights_of

import keras_net2net as n2n  # noqa: E402
from keras_net2net import errors  # noqa: E402

IMAGES = np.random.default_rng(7).normal(size=(4, 32, 32, 3)).astype("float32")


def calibrate(model):
    """Moving statistics -> the batch statistics of `IMAGES`: one training
    pass with momentum 0 (each BatchNorm normalises by its batch statistics
    in training mode, so one pass sets every layer), momentum restored."""
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    momenta = [l.momentum for l in norms]
    for layer in norms:
        layer.momentum = 0.0
    model(IMAGES, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    assert all(np.all(l.moving_variance.numpy() != 1) for l in norms)
    return model


MOBILENET = dict(
    stackwise_expansion=[[32, 48], [64, 64]], stackwise_num_blocks=[2, 2],
    stackwise_num_filters=[[16, 16], [32, 32]], stackwise_kernel_size=[[3, 3], [3, 3]],
    stackwise_num_strides=[[2, 1], [2, 1]], stackwise_se_ratio=[[None, 0.25], [0.25, None]],
    stackwise_activation=[["relu", "hard_swish"], ["hard_swish", "relu"]],
    stackwise_padding=[[1, 1], [1, 1]], output_num_filters=64, depthwise_filters=16,
    depthwise_stride=1, depthwise_residual=True, last_layer_filter=48,
    squeeze_and_excite=0.5, image_shape=(32, 32, 3), input_num_filters=16)

# One stack per block kind: CBA, fused, unfused (MBConv) and v1 (plain layers).
EFFICIENTNET = dict(
    stackwise_kernel_sizes=[3, 3, 3, 3], stackwise_num_repeats=[1, 2, 2, 2],
    stackwise_input_filters=[16, 16, 32, 32], stackwise_output_filters=[16, 32, 32, 48],
    stackwise_expansion_ratios=[1, 2, 2, 2],
    stackwise_squeeze_and_excite_ratios=[0.0, 0.25, 0.25, 0.25],
    stackwise_strides=[1, 2, 1, 2], stackwise_block_types=["cba", "fused", "unfused", "v1"],
    stackwise_force_input_filters=[0] * 4, stackwise_nores_option=[False] * 4,
    width_coefficient=1.0, depth_coefficient=1.0, input_shape=(32, 32, 3))


@pytest.fixture(scope="module")
def mobilenet():
    keras.utils.set_random_seed(0)  # initial kernels: the figures in BUILD_NOTES repeat
    return calibrate(perturb(keras_hub.models.MobileNetBackbone(**MOBILENET)))


@pytest.fixture(scope="module")
def efficientnet():
    keras.utils.set_random_seed(0)
    return calibrate(perturb(keras_hub.models.EfficientNetBackbone(**EFFICIENTNET)))


def grow_and_compare(teacher, tmp_path, output_layer, round_trip=True, **kwargs):
    """Grows, then checks the class, the teacher unchanged, every channel
    vector (BN, biases) grown, the output within 1e-5 read back through the
    mapping, and (`round_trip`) an exact `.keras` round trip. Returns
    (student, report, error)."""
    before, config = weights_of(teacher), teacher.get_config()
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert type(student) is type(teacher)
    for a, b in zip(before, weights_of(teacher)):
        np.testing.assert_array_equal(a, b)
    assert teacher.get_config() == config
    if "widen" in kwargs:  # every group of channels grew: each 1-D weight is a channel vector
        old = {w.path: w.shape for w in teacher.weights}
        kept = [w.path for w in student.weights if w.path in old and len(w.shape) == 1
                and w.shape[0] <= old[w.path][0]]
        assert not kept, kept
    rows = report.verification["inference"]
    assert rows and max(r["max_rel"] for r in rows) <= 1e-5, rows
    # Independent of the report: the teacher's channel i is the student's first copy of i.
    y = np.asarray(teacher(IMAGES, training=False))
    z = np.asarray(student(IMAGES, training=False))
    g = report.mappings().get(output_layer, list(range(y.shape[-1])))
    assert len(g) == z.shape[-1]
    error = relative(y, readout(z, g, tied=False))
    max_abs = float(np.max(np.abs(y - readout(z, g, tied=False))))
    print(f"{type(teacher).__name__} {kwargs}: max |d| {max_abs:.2e}, max rel {error:.2e}, "
          f"params {teacher.count_params()} -> {student.count_params()}")
    assert error <= 1e-5
    if not round_trip:  # loading builds the class again: once per class is enough
        return student, report, error
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(student)
    np.testing.assert_array_equal(np.asarray(loaded(IMAGES, training=False)), z)
    return student, report, error


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(input_num_filters=32, depthwise_filters=32, last_layer_filter=96,
                           stackwise_num_filters=[[32, 32], [64, 64]],
                           stackwise_expansion=[[64, 96], [128, 128]])),
    # x1.5 and one identity block appended to stack 2 (its last block is block_2_1).
    (dict(widen=1.5, deepen=["block_2_1"]),
     dict(input_num_filters=24, depthwise_filters=24, last_layer_filter=72,
          stackwise_num_filters=[[24, 24], [48, 48, 48]],
          stackwise_expansion=[[48, 72], [96, 96, 96]], stackwise_num_blocks=[2, 3],
          stackwise_num_strides=[[2, 1], [2, 1, 1]], stackwise_padding=[[1, 1], [1, 1, 1]])),
])
def test_mobilenet_grows_into_a_mobilenet(mobilenet, kwargs, expected, tmp_path):
    student, report, _ = grow_and_compare(mobilenet, tmp_path, "block_3_0",
                                          round_trip="deepen" in kwargs, **kwargs)
    config = student.get_config()
    for key, value in expected.items():
        assert config[key] == value, (key, config[key], value)
    if "deepen" in kwargs:
        block = student.get_layer("block_2_2")
        assert block.stride == 1 and block.infilters == block.filters  # adds its input back
        assert np.all(block.batch_normalization3.gamma.numpy() == 0)


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(stackwise_width_coefficients=[2.0] * 4)),
    # x1.5 and one identity block appended to each stack: CBA, fused, MBConv, v1.
    (dict(widen=1.5, deepen=["block1a", "block2b", "block3b", "block4b_"]),
     dict(stackwise_width_coefficients=[1.5] * 4, stackwise_num_repeats=[2, 3, 3, 3])),
])
def test_efficientnet_grows_into_an_efficientnet(efficientnet, kwargs, expected, tmp_path):
    student, report, _ = grow_and_compare(efficientnet, tmp_path, "top_conv",
                                          round_trip="deepen" in kwargs, **kwargs)
    config = student.get_config()
    for key, value in expected.items():
        assert config[key] == value, (key, config[key], value)
    factor = kwargs["widen"]
    # The widths the edited config derives are the teacher's times the factor.
    for name in ("stem_conv", "block4a_project", "top_conv"):
        assert student.get_layer(name).filters == factor * efficientnet.get_layer(name).filters
    assert student.get_layer("block3a_").filters == factor * efficientnet.get_layer(
        "block3a_").filters
    if "deepen" in kwargs:
        assert student.get_layer("block3c_").bn3.gamma.numpy().max() == 0
        names = [l.name for l in student.layers]
        assert {"block1b_", "block2c_", "block3c_", "block4c_add"} <= set(names)


def test_deepen_names_the_last_block_of_a_stack(mobilenet, efficientnet):
    before = weights_of(mobilenet)
    with pytest.raises(errors.PlanError, match=r"last block of a stack.*'block_1_0'"):
        n2n.expand_model(mobilenet, deepen=["block_1_0"])
    with pytest.raises(errors.PlanError, match=r"widen >= 1.*0.5"):
        n2n.expand_model(mobilenet, widen=0.5)
    with pytest.raises(errors.PlanError, match=r"factor >= 1 for EfficientNetBackbone"):
        n2n.expand_model(efficientnet, widen={"stackwise_output_filters": 2.0})
    task = keras_hub.models.MobileNetImageClassifier(backbone=mobilenet, num_classes=3,
                                                     num_features=8)
    with pytest.raises(errors.UnsupportedModelError,
                       match=r"MobileNetImageClassifier.*Fix: grow its backbone"):
        n2n.expand_model(task, widen=2.0)
    for a, b in zip(before, weights_of(mobilenet)):
        np.testing.assert_array_equal(a, b)


def test_a_config_that_does_not_rebuild_the_teacher_is_refused():
    """keras_hub's get_config drops stackwise_nores_option: a student built
    from the config would add residuals the teacher lacks."""
    config = dict(EFFICIENTNET, stackwise_nores_option=[False, False, True, False])
    teacher = keras_hub.models.EfficientNetBackbone(**config)
    with pytest.raises(errors.UnsupportedModelError,
                       match=r"stackwise_nores_option \(a block has nores=True\).*Fix: build"):
        n2n.expand_model(teacher, widen=2.0)
