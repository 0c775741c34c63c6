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
from keras_net2net.hub import cnn

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
    if getattr(model, "compiled", False):
        # A compiled task's clone compiles too, building an optimizer on
        # variables a config-made student has not set yet: view an
        # uncompiled functional model of the same layers instead.
        view = keras.Model(model.input, model.output, name=model.name)
    for _ in range(_MAX_DEPTH):
        # Traced unchecked, round by round; the flat view is checked once.
        inlining = inline.inline_custom_layers(view, custom=custom, check=False)
        if inlining.kept:
            _refuse(model, next(iter(inlining.kept.values())))
        if not inlining.inlined:
            break
        view = inlining.model
    if check and view is not model:
        error = inline.view_error(model, view, [cnn.probe(getattr(model, "backbone", model))])
        if error is not None:
            _refuse(model, f"the traced subgraph does not reproduce it on a probe batch (max "
                           f"relative error {error:.3g})")
    return view


def _refuse(model, reason):
    raise errors.UnsupportedModelError(
        f"Expected every nested layer of {type(model).__name__} {model.name!r} to be a plain "
        f"composition of Keras layers. Received: a layer that could not be inlined: {reason}. "
        f"Fix: grow a plain functional copy of it (keras.Model(model.inputs, model.outputs)), "
        f"which keeps such layers at their width.")
