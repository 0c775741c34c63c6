"""keras_hub MobileNetV5Backbone is refused, typed, before anything is built:
its RmsNorm2d / LayerScale2d hold weights of their own and no rule covers
them, nor its MobileAttention and multi-scale fusion adapter
(keras_net2net.hub.refusals); the message names the exact alternatives."""

import keras

from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused

from keras_net2net import errors  # noqa: E402

MOBILENETV5 = dict(
    stackwise_block_types=[["er"], ["uir", "mqa"]], stackwise_num_blocks=[1, 2],
    stackwise_num_filters=[[8], [16, 16]], stackwise_strides=[[2], [2, 1]],
    stackwise_act_layers=[["relu"], ["gelu", "gelu"]], stackwise_exp_ratios=[[2.0], [2.0, 2.0]],
    stackwise_se_ratios=[[0.0], [0.0, 0.0]], stackwise_dw_kernel_sizes=[[3], [3, 3]],
    stackwise_dw_start_kernel_sizes=[[0], [3, 0]], stackwise_dw_end_kernel_sizes=[[0], [0, 0]],
    stackwise_exp_kernel_sizes=[[3], [0, 0]], stackwise_pw_kernel_sizes=[[1], [0, 0]],
    stackwise_num_heads=[[0], [0, 2]], stackwise_key_dims=[[0], [0, 8]],
    stackwise_value_dims=[[0], [0, 8]], stackwise_kv_strides=[[0], [0, 1]],
    stackwise_use_cpe=[[False], [False, False]], stem_size=8, num_features=32,
    msfa_output_resolution=4, image_shape=(32, 32, 3))


def test_mobilenetv5_is_refused_with_why_and_the_exact_alternatives():
    keras.utils.set_random_seed(0)
    teacher = perturb(keras_hub.models.MobileNetV5Backbone(**MOBILENETV5))
    for kwargs in (dict(widen=2.0), dict(deepen=["universal_inverted_residual"])):
        message = refused(teacher, errors.UnsupportedModelError, **kwargs)
        assert "RmsNorm2d" in message and "MobileNetBackbone" in message, message
