"""Built-in architectures with stable, readable layer names.

Layer names are part of the interface: a growth plan such as
`widen={"conv1": 16}` or `deepen=["conv2", "fc1"]` names them, so they never
depend on how many models were built before (Keras' automatic names do).

```python
teacher = build_model("cnn", input_shape=(8, 8, 1), num_classes=10,
                      widths=[4, 8, 16])
[layer.name for layer in teacher.layers]
# ['image', 'conv1', 'conv2', 'pool1', 'conv3', 'flatten', 'fc1', 'logits']
```

Every model ends in a `logits` layer without activation; losses are computed
from logits.
"""

import keras

from keras_net2net import choices

BUILT_IN = choices.MODELS


def build_model(name, input_shape, num_classes, *, width=None, depth=None,
                widths=None):
    """Builds a named architecture with fresh weights.

    Args:
        name: "mlp", "cnn", "resnet_small", "gpt" (a causal byte-level
            transformer language model: `input_shape` is (sequence length,),
            `num_classes` the vocabulary), or the name of a function in
            `keras.applications` such as "MobileNetV2" (built with weights=None and
            no classifier activation).
        input_shape: shape of one example, e.g. (8, 8, 1).
        num_classes: units of the `logits` layer.
        width: base width: hidden units of each mlp layer, channels of the first
            cnn layer (doubling per layer), channels of every resnet_small layer,
            gpt's model width (heads of 8 dims, feed-forward 4x). Ignored by keras.applications models.
        depth: number of hidden layers (mlp), conv layers (cnn) or residual
            blocks (resnet_small, gpt).
        widths: explicit widths, one per hidden/conv layer (mlp, cnn); overrides
            `width` and `depth`.

    Returns:
        An uncompiled `keras.Model` named after the architecture.

    Raises:
        ValueError: if the name is unknown or a width/depth is not positive.

    Example:
    >>> model = build_model("mlp", (8, 8, 1), 10, widths=[32, 16])
    >>> [layer.name for layer in model.layers[1:]]
    ['flatten', 'fc1', 'fc2', 'logits']
    """
    if name == "mlp":
        return _mlp(input_shape, num_classes, _widths(widths, width, depth, 64, 2,
                                                      doubling=False))
    if name == "cnn":
        return _cnn(input_shape, num_classes, _widths(widths, width, depth, 4, 3,
                                                      doubling=True))
    if name == "resnet_small":
        return _resnet_small(input_shape, num_classes, _positive("width", width, 8),
                             _positive("depth", depth, 2))
    if name == "gpt":
        return _gpt(input_shape, num_classes, _positive("width", width, 32),
                    _positive("depth", depth, 2))
    if is_application(name):
        return getattr(keras.applications, name)(
            weights=None, input_shape=tuple(input_shape), classes=num_classes,
            classifier_activation=None)
    raise ValueError(
        f"Expected a model name in {BUILT_IN} or a keras.applications function "
        f"(e.g. 'MobileNetV2'). Received: model={name!r}")


def is_application(name):
    """Whether `name` is a model-building function in `keras.applications`."""
    return (not name.startswith("_") and name[:1].isupper()
            and callable(getattr(keras.applications, name, None)))


def _positive(what, value, default):
    value = default if value is None else value
    if value < 1:
        raise ValueError(f"Expected {what} >= 1. Received: {what}={value}")
    return value


def _widths(widths, width, depth, default_width, default_depth, doubling):
    if widths:
        return [_positive("widths", w, None) for w in widths]
    width = _positive("width", width, default_width)
    depth = _positive("depth", depth, default_depth)
    return [width * 2**i if doubling else width for i in range(depth)]


def _mlp(input_shape, num_classes, widths):
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(widths, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"fc{i}")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="mlp")


def _cnn(input_shape, num_classes, widths):
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, filters in enumerate(widths, start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                name=f"conv{i}")(x)
        # One pooling after the second conv halves 8x8 digits once, keeping
        # the model tiny without shrinking the map to nothing.
        if i == 2 and len(widths) > 2:
            x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(2 * widths[-1], activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="cnn")


def _resnet_small(input_shape, num_classes, width, depth):
    inputs = keras.Input(input_shape, name="image")
    x = _conv_bn_relu(inputs, width, "conv1", "bn1", "relu1")
    for block in range(1, depth + 1):
        prefix = f"block{block}"
        y = _conv_bn_relu(x, width, f"{prefix}_conv1", f"{prefix}_bn1",
                          f"{prefix}_relu1")
        y = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                                name=f"{prefix}_conv2")(y)
        y = keras.layers.BatchNormalization(name=f"{prefix}_bn2")(y)
        x = keras.layers.Add(name=f"{prefix}_add")([x, y])
        x = keras.layers.ReLU(name=f"{prefix}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="resnet_small")


def _conv_bn_relu(x, filters, conv_name, bn_name, relu_name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            name=conv_name)(x)
    x = keras.layers.BatchNormalization(name=bn_name)(x)
    return keras.layers.ReLU(name=relu_name)(x)


def _gpt(input_shape, vocab, width, depth):
    """A pre-LN causal transformer: next-token logits at every position."""
    if len(input_shape) != 1:
        raise ValueError(f"Expected gpt's input_shape to be (sequence length,). "
                         f"Received: input_shape={tuple(input_shape)}")
    length = input_shape[0]
    layers = keras.layers
    tokens = keras.Input((length,), dtype="int32", name="tokens")
    # Position ids computed from the input keep the position embedding a
    # layer of the graph (growable), not a folded constant.
    positions = 0 * tokens + keras.ops.arange(length, dtype="int32")
    x = layers.Embedding(vocab, width, name="token_embedding")(tokens)
    x = layers.Add(name="embed")(
        [x, layers.Embedding(length, width, name="position_embedding")(positions)])
    heads = max(1, width // 8)
    for b in range(1, depth + 1):
        h = layers.LayerNormalization(name=f"block{b}_ln1")(x)
        h = layers.MultiHeadAttention(heads, width // heads, name=f"block{b}_mha")(
            h, h, use_causal_mask=True)
        x = layers.Add(name=f"block{b}_res1")([x, h])
        h = layers.LayerNormalization(name=f"block{b}_ln2")(x)
        h = layers.Dense(4 * width, activation="gelu", name=f"block{b}_ffn_in")(h)
        h = layers.Dense(width, name=f"block{b}_ffn_out")(h)
        x = layers.Add(name=f"block{b}_res2")([x, h])
    x = layers.LayerNormalization(name="final_ln")(x)
    return keras.Model(tokens, layers.Dense(vocab, name="logits")(x), name="gpt")
