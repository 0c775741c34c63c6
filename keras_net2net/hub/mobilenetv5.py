"""keras_hub MobileNetV5Backbone grown into a bigger MobileNetV5Backbone
(edge residual and universal inverted residual blocks; attention blocks
refused).

Its blocks are nested keras_hub layers, inlined by `hub.nested.flat_view`;
what stays has a rule here: `RmsNorm2d` (an RMS norm over the channels with
a `gamma`: exact under copies at integer factors only, since its eps is fixed
in code and no pads can be corrected), `LayerScale2d` (one gamma per
channel), and the multi-scale fusion adapter's `ops.image.resize` and
`ops.average_pool` (spatial: channels pass). The builder names no block
(auto names such as `universal_inverted_residual_3` differ between teacher
and student), so layers pair by graph order (`hub.mit.pair_layers`).

- Wider: `widen=k` (an integer) scales `stem_size`, `num_features` and every
  `stackwise_num_filters` entry; the expanded widths follow (ratios).
- Refused, typed: non-integer factors (RmsNorm2d); multi-query / multi-head
  attention blocks ("mqa", "mha": their call reshapes to (-1, heads, dim, -1),
  which cannot be traced into plain layers and has no composite rule yet);
  deeper (no block is named, so no anchor can be named stably; wider stays
  exact).

Reaches keras_hub internals: keras_hub.src.models.mobilenetv5.*.
"""

import inspect

import keras
import keras_hub
from keras_hub.src.models.mobilenetv5 import mobilenetv5_attention as _attention
from keras_hub.src.models.mobilenetv5 import mobilenetv5_blocks as _blocks
from keras_hub.src.models.mobilenetv5 import mobilenetv5_layers as _layers
from keras_hub.src.models.mobilenetv5 import mobilenetv5_utils as _utils

from keras_net2net import errors
from keras_net2net._keras import ops_image as _image_ops
from keras_net2net._keras import ops_nn as _nn_ops
from keras_net2net.hub import convnets
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import nested
from keras_net2net.rules import channelwise

_ATTENTION = ("mqa", "mha")


class RmsNorm2dRule(hub_layers.RMSNormLastAxis):
    """RmsNorm2d: x * rsqrt(mean(x^2) + eps) * gamma over the last axis."""

    scale_name = "gamma"


TABLE = {_layers.RmsNorm2d: RmsNorm2dRule(), _layers.LayerScale2d: channelwise.LayerScaleRule(),
         _image_ops.Resize: channelwise.SpatialRule(),
         _nn_ops.AveragePool: channelwise.SpatialRule()}

NESTED = tuple(c for module in (_layers, _blocks, _attention, _utils)
               for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, keras.layers.Layer) and c.__module__ == module.__name__
               and c not in TABLE)


def view(model, check=True):
    backbone = getattr(model, "backbone", model)
    types = sorted({t for stack in backbone.get_config()["stackwise_block_types"]
                    for t in stack if t in _ATTENTION})
    if types:
        raise errors.UnsupportedModelError(
            f"Expected a MobileNetV5Backbone of convolutional blocks. Received: "
            f"{backbone.name!r} with {types} blocks: their multi-query attention reshapes to "
            f"(-1, heads, dim, -1), which cannot be traced into plain layers and has no "
            f"composite rule yet. Fix: grow a plain functional copy of it "
            f"(keras.Model(backbone.inputs, backbone.outputs)), which keeps those blocks at "
            f"their width, or a MobileNetBackbone / EfficientNetBackbone.")
    return nested.flat_view(model, NESTED, check)


def widen(config, factor):

    if factor != int(factor):
        raise errors.PlanError(
            f"Expected an integer widening factor for MobileNetV5Backbone. Received: "
            f"widen={factor!r}, but its RmsNorm2d normalises over the channels with an eps "
            f"fixed in code, so only equal copies of every channel keep it exact. Fix: "
            f"widen=2.0.")
    return dict(config, stem_size=convnets.scaled(config["stem_size"], factor),
                num_features=convnets.scaled(config["num_features"], factor),
                stackwise_num_filters=convnets.scaled(config["stackwise_num_filters"], factor))


NO_IDENTITY = (
    "keras_hub names none of its blocks (auto names such as universal_inverted_residual_3 "
    "differ between a teacher and a model built from its config), so no anchor for a new "
    "block can be named stably")


def pairs(ctx, student_view):
    from keras_net2net.hub import mit

    return mit.pair_layers(ctx, None, student_view, {})


FAMILIES = []  # its Family is hub.convnets' (ConvnetMaker grows it)


SPECS = {keras_hub.models.MobileNetV5Backbone: convnets.Spec(
    widen, lambda config: NO_IDENTITY, view=view, pairs=pairs)}
