"""keras_hub backbones that do not grow yet, refused with why and the
closest exact alternative (a typed `UnsupportedModelError`, raised before
anything is built or written).

- DFineBackbone: a detection transformer on an HGNetV2 backbone: a hybrid
  encoder, a decoder with multi-scale deformable attention (sampling
  offsets and attention weights per head, level and point) and denoising
  queries, none with a rule. Its `backbone` (HGNetV2Backbone) grows on its
  own (hub.hgnetv2).
"""

from keras_net2net import errors
from keras_net2net import makers

_WHY = {
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
