"""A flat view of a keras_hub model built of nested keras_hub layers.

HGNetV2 (and the blocks of other CNNs) nest keras_hub layers several deep
(backbone > encoder > stage > block > conv layer > Conv2D), each a
`keras.layers.Layer` whose `call` only calls Keras sublayers. The core's
inlining (`keras_net2net.inline`) traces such a layer into a nested functional
model of its sublayers; here it runs to a fixed point over the layer classes
a family names, so the pipeline reads plain Conv2D / BatchNormalization /
Concatenate / Add graphs that the core rules grow. The view calls the model's
own layer objects: its weights are the model's (read by the analysis, written
by `makers.write_weights` for a student).

keras_hub classes are not "custom layers" to `inline.is_custom_layer` (a
library's layers usually have rules or are barriers): a family opts its own
classes in by name, which reaches keras_hub internals (the classes under
keras_hub.src.models.<family>).
"""

import keras

from keras_net2net import errors
from keras_net2net import inline
from keras_net2net import rules

_MAX_DEPTH = 8  # deeper nesting than any keras_hub model has


def flat_view(model, classes, check=True):
    """`model` with every layer of `classes` (no rule of its own) inlined,
    to a fixed point.

    Args:
        model: a keras_hub backbone or task.
        classes: a tuple of layer classes to inline.
        check: compare each view with the model on a probe batch (False
            for a config-made student whose variables hold no values yet).

    Returns:
        A functional model calling `model`'s own layers.

    Raises:
        UnsupportedModelError: a layer of `classes` could not be inlined
            (the inlining's reason is named).

    Example:

    ```python
    view = flat_view(backbone, (HGNetV2Embeddings, HGNetV2Encoder, ...))
    ```
    """
    def custom(op):
        return (isinstance(op, classes) and not isinstance(op, keras.Model)
                and rules.rule_for(op) is None)

    view = model
    for _ in range(_MAX_DEPTH):
        inlining = inline.inline_custom_layers(view, custom=custom, check=check)
        if inlining.kept:
            reason = next(iter(inlining.kept.values()))
            raise errors.UnsupportedModelError(
                f"Expected every nested layer of {type(model).__name__} {model.name!r} to be a "
                f"plain composition of Keras layers. Received: {len(inlining.kept)} that could "
                f"not be inlined, e.g. because {reason}. Fix: grow a plain functional copy of it "
                f"(keras.Model(model.inputs, model.outputs)), which keeps such layers at their "
                f"width.")
        if not inlining.inlined:
            return view
        view = inlining.model
    return view
