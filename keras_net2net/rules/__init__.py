"""The rules table: which rule grows each Keras layer (or op) class.

This module fills the registry (`rules.registry`, which rule modules may
read without importing this one) and re-exports its lookups.
"""

import keras

from keras_net2net import _keras
from keras_net2net._keras import ops_core
from keras_net2net._keras import ops_image
from keras_net2net._keras import ops_math
from keras_net2net._keras import ops_nn
from keras_net2net._keras import ops_numpy
from keras_net2net.rules import attention
from keras_net2net.rules import channelwise
from keras_net2net.rules import composite
from keras_net2net.rules import merge
from keras_net2net.rules import mixing
from keras_net2net.rules import recurrent
from keras_net2net.rules import reduce
from keras_net2net.rules import shapes
from keras_net2net.rules import tensor_ops
from keras_net2net.rules.base import IDEMPOTENT  # noqa: F401 (re-export)
from keras_net2net.rules.base import Context  # noqa: F401 (re-export)
from keras_net2net.rules.base import ZERO_PADS
from keras_net2net.rules.base import Rule  # noqa: F401 (re-export)
from keras_net2net.rules.registry import register_rule  # noqa: F401 (re-export)
from keras_net2net.rules.registry import register_table
from keras_net2net.rules.registry import rule_for  # noqa: F401 (re-export)
from keras_net2net.rules.registry import unknown_reason  # noqa: F401 (re-export)

L = keras.layers


def _classes(module, names):
    return [getattr(module, n) for n in names if hasattr(module, n)]


_PASS = channelwise.PassThroughRule()
_PASS_ZERO = channelwise.PassThroughRule(keeps_zero=True)
_ACTIVATION = channelwise.ActivationRule()
_SPATIAL = channelwise.SpatialRule()
_SPATIAL_ZERO = channelwise.SpatialRule(keeps_zero=True)
_MAX_POOL = channelwise.SpatialRule(pads=ZERO_PADS)
_MERGE = merge.ElementwiseMergeRule()

_TABLE = {
    L.Dense: mixing.DenseRule(),
    L.Embedding: mixing.EmbeddingRule(),
    L.BatchNormalization: channelwise.BatchNormRule(),
    L.LayerNormalization: channelwise.LayerNormRule(),
    L.RMSNormalization: channelwise.RMSNormRule(),
    L.GroupNormalization: channelwise.GroupNormRule(),
    L.PReLU: channelwise.PReLURule(),
    L.Softmax: channelwise.AcrossAxisRule("normalises across channels"),
    L.Rescaling: channelwise.RescalingRule(),
    L.UnitNormalization: channelwise.AcrossAxisRule("divides by a norm over channels"),
    L.Normalization: channelwise.FrozenPassRule("its statistics are kept as they are"),
    L.Flatten: shapes.FlattenRule(),
    L.Reshape: shapes.ReshapeRule(),
    ops_numpy.Reshape: shapes.ReshapeRule(),
    L.Permute: shapes.PermuteRule(),
    L.RepeatVector: shapes.RepeatVectorRule(),
    L.Concatenate: merge.ConcatenateRule(),
    ops_numpy.Concatenate: merge.ConcatenateRule(),
    ops_image.ExtractPatches: shapes.ExtractPatchesRule(),
}
for _cls in (L.Conv1D, L.Conv2D, L.Conv3D):
    _TABLE[_cls] = mixing.ConvRule()
for _cls in (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose):
    _TABLE[_cls] = mixing.ConvTransposeRule()
for _cls in (L.DepthwiseConv1D, L.DepthwiseConv2D):
    _TABLE[_cls] = mixing.DepthwiseRule()
for _cls in (L.SeparableConv1D, L.SeparableConv2D):
    _TABLE[_cls] = mixing.SeparableRule()
for _cls in (L.Activation, L.ReLU, L.LeakyReLU, L.ELU):
    _TABLE[_cls] = _ACTIVATION
# Zero in, zero out, in training mode too (a zeroed residual branch stays zero).
for _cls in (L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D,
             L.GaussianDropout, L.Identity):
    _TABLE[_cls] = _PASS_ZERO
for _cls in (L.GaussianNoise, L.AlphaDropout, L.ActivityRegularization, L.Masking):
    _TABLE[_cls] = _PASS
for _cls in (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D):
    _TABLE[_cls] = _MAX_POOL
for _cls in (L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D):
    _TABLE[_cls] = _SPATIAL
for _cls in (L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.Cropping1D, L.Cropping2D,
             L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D):
    _TABLE[_cls] = _SPATIAL_ZERO
# Augmentation and image preprocessing: the identity at inference; in training
# one random draw per image acts on every channel alike (flips, zooms, crops,
# contrast about each channel's own mean), so copies stay copies. Those that mix
# channels (RandomGrayscale, RandomHue, RandomSaturation, RandomColorJitter)
# stay unknown: barriers. RandomShear's own config round trip fails in Keras 3
# (its config holds (-f, f), its constructor refuses -f): keras_net2net.
# config_repairs re-creates it with the teacher's exact factors.
for _cls in _classes(L, [
        "RandomFlip", "RandomZoom", "RandomRotation", "RandomTranslation", "RandomCrop",
        "RandomContrast", "RandomBrightness", "Resizing", "CenterCrop", "RandomShear"]):
    _TABLE[_cls] = _SPATIAL
for _cls in (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D):
    _TABLE[_cls] = channelwise.GlobalPoolRule()
for _cls in (L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D):
    _TABLE[_cls] = channelwise.GlobalPoolRule(pads=ZERO_PADS)
for _cls in (L.Add, L.Subtract, L.Multiply, L.Average, L.Maximum, L.Minimum):
    _TABLE[_cls] = _MERGE
# keras.ops calls that act on each element alone (scalars or broadcast allowed).
for _cls in _classes(ops_numpy, [
        "Add", "Subtract", "Multiply", "Divide", "TrueDivide", "DivideNoNan", "Maximum",
        "Minimum", "Power", "Absolute", "Negative", "Square", "Sqrt", "Exp", "Expm1", "Log",
        "Log1p", "Tanh", "Sin", "Cos", "Sign", "Floor", "Ceil", "Round", "Clip",
        "Reciprocal", "Cbrt", "Copy", "Sinh", "Cosh", "Arctan", "ZerosLike", "OnesLike",
        # Comparisons: Embedding(mask_zero=True) computes its mask with NotEqual.
        "NotEqual", "Equal", "Greater", "GreaterEqual", "Less", "LessEqual", "LogicalAnd",
        "LogicalOr", "LogicalNot", "LogicalXor"]) + _classes(ops_nn, [
        "Relu", "Relu6", "Sigmoid", "Softplus", "Softsign", "SoftShrink", "Silu",
        "LogSigmoid", "LeakyRelu", "HardSigmoid", "HardSilu", "Elu", "Selu", "Gelu",
        "Celu", "TanhShrink", "HardTanh", "HardShrink", "Squareplus", "SparsePlus",
        "Threshold"]) + _classes(ops_core, ["Cast", "StopGradient"]) + _classes(
        ops_math, ["Rsqrt", "Erf", "Erfc"]):
    _TABLE[_cls] = _MERGE

# ConvNeXt's per-channel scale and InceptionResNetV2's residual scale
# (inputs[0] + inputs[1] * scale), layers of keras.applications.
for _cls, _rule in ((_keras.application_layer("convnext", "LayerScale"),
                     channelwise.LayerScaleRule()),
                    (_keras.application_layer("inception_resnet_v2", "CustomScaleLayer"), _MERGE)):
    if _cls is not None:
        _TABLE[_cls] = _rule

if hasattr(L, "ReversibleEmbedding"):  # Keras >= 3.12
    _TABLE[L.ReversibleEmbedding] = composite.ReversibleEmbeddingRule()

# Rule families kept in modules of their own.
_TABLE.update(attention.TABLE)
_TABLE.update(recurrent.TABLE)
_TABLE.update(tensor_ops.TABLE)
_TABLE.update(reduce.TABLE)

register_table(_TABLE)
