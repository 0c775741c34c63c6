"""keras_hub RetinaNetBackbone grown into a bigger RetinaNetBackbone.

A RetinaNet backbone is an `image_encoder` (a ResNetBackbone or another CNN
backbone `hub.convnets` grows) and a feature pyramid (`FeaturePyramid`, a
keras_hub layer of plain Conv2D / UpSampling2D / Add sublayers, inlined by
`hub.nested.flat_view`). Its config holds the encoder's config, so the
encoder grows by its own class's `convnets.Spec` (widths, anchors, identity
blocks: nothing is copied here); the pyramid reads the grown encoder
outputs through its lateral convs (mixing consumers). The pyramid's width
(`FeaturePyramid.num_filters`, 256) is no key of RetinaNetBackbone's config,
so it and the backbone's outputs keep their width, and the report says so.

Reaches keras_hub internals: keras_hub.src.models.retinanet.feature_pyramid.
"""

import keras
import keras_hub
from keras_hub.src.models.retinanet import feature_pyramid as _fpn

from keras_net2net import errors
from keras_net2net.hub import convnets
from keras_net2net.hub import nested

KEY = "image_encoder"


def _inner(config):
    """(the encoder's serialised config, its class's Spec)."""

    encoder = config[KEY]
    cls = keras.saving.get_registered_object(encoder.get("registered_name")) if isinstance(
        encoder, dict) else type(encoder)
    spec = convnets.spec_of(cls) if isinstance(cls, type) else None
    if spec is None or not isinstance(encoder, dict):
        name = getattr(cls, "__name__", cls)
        raise errors.UnsupportedModelError(
            f"Expected a RetinaNetBackbone whose image_encoder is a CNN backbone that grows "
            f"(ResNet, VGG, DenseNet, Xception, CSPNet, HGNetV2). Received: image_encoder of "
            f"class {name}. Fix: grow the image encoder alone, or build the RetinaNet on one "
            f"of those.")
    return encoder, spec


def _with_inner(config, inner):
    encoder = dict(config[KEY])
    encoder["config"] = inner
    return dict(config, **{KEY: encoder})


def widen(config, factor):
    encoder, spec = _inner(config)
    return _with_inner(config, spec.widen(encoder["config"], factor))


def anchors(config):
    encoder, spec = _inner(config)
    return spec.anchors(encoder["config"])


def deepen(config, inserts):
    encoder, spec = _inner(config)
    if spec.deepen is None:
        return config, []
    inner, pairs = spec.deepen(encoder["config"], inserts)
    return _with_inner(config, inner), pairs


def identity(student, anchor, new):
    _, spec = _inner(student.get_config())
    spec.identity(student.image_encoder, anchor, new)


def view(model, check=True):
    return nested.flat_view(model, (_fpn.FeaturePyramid,), check)


FAMILIES = []  # its Family is hub.convnets' (ConvnetMaker grows it)


SPECS = {keras_hub.models.RetinaNetBackbone: convnets.Spec(
    widen, anchors, deepen, identity, view)}
