"""keras_hub backbones that do not grow yet, refused with why and the
closest exact alternative (a typed `UnsupportedModelError`, raised before
anything is built or written).

- MobileNetV5Backbone: measured on a tiny one (branch hubdet): its nested
  blocks inline (hub.nested) except the multi-query attention, whose call
  reshapes to (-1, heads, dim, -1) and cannot be traced on symbolic inputs
  (it needs a composite rule); `RmsNorm2d` and `LayerScale2d` hold weights of
  their own and need rules (the RMS norm over channels is exact under copies
  only at integer factors: its eps is fixed in code, so no pads); the fusion
  adapter's `ops.image.resize` / `ops.average_pool` have no rule; and its
  blocks are auto-named (`universal_inverted_residual_3`), so a student made
  from a config does not pair with the teacher by path.
- DFineBackbone: a detection transformer on an HGNetV2 backbone: a hybrid
  encoder, a decoder with multi-scale deformable attention (sampling
  offsets and attention weights per head, level and point) and denoising
  queries, none with a rule. Its `backbone` (HGNetV2Backbone) grows on its
  own (hub.hgnetv2).
"""

from keras_net2net import errors
from keras_net2net import makers

_WHY = {
    "MobileNetV5Backbone": (
        "its multi-query attention reshapes to (-1, heads, dim, -1), which no rule follows "
        "and which cannot be traced into plain layers; its RmsNorm2d and LayerScale2d hold "
        "weights of their own that no rule covers; and its blocks are auto-named, so a grown "
        "model of its class does not pair with it layer by layer",
        "grow a MobileNetBackbone or EfficientNetBackbone (exact, deeper too), or a plain "
        "functional copy (keras.Model(backbone.inputs, backbone.outputs)), which keeps these "
        "layers at their width"),
    "DFineBackbone": (
        "its hybrid encoder and its decoder's multi-scale deformable attention (sampling "
        "offsets and attention weights per head, level and point) and denoising queries have "
        "no growth rule",
        "grow its HGNetV2 backbone alone (expand_model(model.backbone, widen=2.0), exact and "
        "deeper too)"),
}


def _why(model):
    backbone = getattr(model, "backbone", model)
    for cls in type(backbone).__mro__:
        if cls.__name__ in _WHY and cls.__module__.startswith("keras_hub."):
            return cls.__name__, _WHY[cls.__name__]
    return None


class RefusingMaker(makers.ConfigMaker):
    """Refuses the classes above, typed, naming why and the way out."""

    def handles(self, model):
        return _why(model) is not None

    def probe(self, model):
        return None

    def plan_config(self, model, request):
        name, (why, fix) = _why(model)
        raise errors.UnsupportedModelError(
            f"Expected a keras_hub model whose layers all have growth rules. Received: "
            f"{type(model).__name__} {model.name!r} (a {name}): {why}. Fix: {fix}.")


MAKER = RefusingMaker()
FAMILIES = []
