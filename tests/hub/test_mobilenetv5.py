"""keras_hub MobileNetV5Backbone (nested keras_hub layers, inlined by
keras_net2net.hub.nested; layers paired by graph order) grows x2 into a
bigger MobileNetV5Backbone (edge residual and universal inverted residual
blocks, RMS norms, the multi-scale fusion adapter), exact. Refused, typed:
non-integer factors (RmsNorm2d's eps is fixed in code), attention blocks
(their reshape cannot be traced), deeper (no block is named)."""

import keras
import numpy as np

from tests.growth import assert_unchanged
from tests.growth import snapshot
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.test_cnn import IMAGES

import keras_net2net as n2n  # noqa: E402
from keras_net2net import errors  # noqa: E402

MOBILENETV5 = dict(
    stackwise_block_types=[["er"], ["uir", "uir"]], stackwise_num_blocks=[1, 2],
    stackwise_num_filters=[[8], [16, 16]], stackwise_strides=[[2], [2, 1]],
    stackwise_act_layers=[["relu"], ["gelu", "gelu"]], stackwise_exp_ratios=[[2.0], [2.0, 2.0]],
    stackwise_se_ratios=[[0.0], [0.0, 0.0]], stackwise_dw_kernel_sizes=[[3], [3, 3]],
    stackwise_dw_start_kernel_sizes=[[0], [3, 3]], stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
    stackwise_exp_kernel_sizes=[[3], [0, 0]], stackwise_pw_kernel_sizes=[[1], [0, 0]],
    stackwise_num_heads=[[0], [0, 0]], stackwise_key_dims=[[0], [0, 0]],
    stackwise_value_dims=[[0], [0, 0]], stackwise_kv_strides=[[0], [0, 0]],
    stackwise_use_cpe=[[False], [False, False]], stem_size=8, num_features=32,
    msfa_output_resolution=4, image_shape=(32, 32, 3))
# The last block multi-query attention (every preset has such blocks).
WITH_MQA = dict(MOBILENETV5, stackwise_block_types=[["er"], ["uir", "mqa"]],
                stackwise_dw_start_kernel_sizes=[[0], [3, 0]], stackwise_num_heads=[[0], [0, 2]],
                stackwise_key_dims=[[0], [0, 8]], stackwise_value_dims=[[0], [0, 8]],
                stackwise_kv_strides=[[0], [0, 1]])


def mobilenetv5(config=MOBILENETV5):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.MobileNetV5Backbone(**config))


def test_mobilenetv5_grows_x2(tmp_path):
    teacher = mobilenetv5()
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, widen=2.0)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    config = student.get_config()
    assert config["stackwise_num_filters"] == [[16], [32, 32]] and config["num_features"] == 64
    # Every channel vector (norm gammas, biases) grew; weights in graph order.
    old = [w.shape[0] for w in teacher.weights if len(w.shape) == 1]
    new = [w.shape[0] for w in student.weights if len(w.shape) == 1]
    assert len(old) == len(new) > 5 and all(b > a for a, b in zip(old, new)), (old, new)
    rows = report.verification["inference"]
    error = max(r["max_rel"] for r in rows)
    print(f"MobileNetV5Backbone widen=2.0: max rel {error:.2e}, params "
          f"{teacher.count_params()} -> {student.count_params()}")
    assert rows and error <= 1e-5, rows
    z = student(IMAGES, training=False)
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(IMAGES, training=False)), np.asarray(z))


def test_mobilenetv5_refusals_say_why_and_the_exact_alternative():
    teacher = mobilenetv5()
    assert "RmsNorm2d" in refused(teacher, errors.PlanError, widen=1.5)
    assert "names none of its blocks" in refused(teacher, errors.PlanError,
                                                  deepen=["universal_inverted_residual"])
    message = refused(mobilenetv5(WITH_MQA), errors.UnsupportedModelError, widen=2.0)
    assert "['mqa']" in message and "MobileNetBackbone" in message, message
