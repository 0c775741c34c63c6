"""Training FLOPs of a Keras model, counted from its layers' shapes.

Counts the multiply-adds of the layers that hold nearly all of a network's
arithmetic, as 2 FLOPs each, per example: Dense, EinsumDense, convolutions
(plain, transposed, depthwise, separable) and MultiHeadAttention (its four
projections plus the q.k scores and the weighted sum of values, over every
query/key pair: Keras computes masked pairs too). Embedding lookups,
normalisation, activations, pooling and adds are not counted; they are a few
percent of a transformer's or CNN's count. A training step costs
`TRAINING_MULTIPLIER` (3) forward passes: the backward pass computes
gradients for both inputs and weights, about twice the forward's work
(Kaplan et al., 2020).

```python
model = build_model("cnn", (16, 16, 1), 10, widths=[4, 8, 16])
forward_flops(model)                # per example
training_flops(model, batch_size=64)  # per training step
```
"""

import math

import keras

from keras_net2net import graph as graph_lib

TRAINING_MULTIPLIER = 3
L = keras.layers
_CONVS = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D)
_TRANSPOSED = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)


def layer_flops(model):
    """Forward FLOPs per example of each counted layer call.

    Args:
        model: a built Functional or Sequential `keras.Model`.

    Returns:
        {call path: FLOPs}; shared layers are counted once per call, nested
        models' layers under their "outer/inner" path.

    Example:
    >>> inputs = keras.Input((3,))
    >>> model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(inputs))
    >>> layer_flops(model)
    {'fc': 24}
    """
    graph = graph_lib.Graph(model)
    counts = {}
    for call in graph.calls:
        shape_in = graph.shapes[call.inputs[0]] if call.inputs else None
        shape_out = graph.shapes[call.outputs[0]] if call.outputs else None
        count = _call_flops(call, graph, shape_in, shape_out)
        if count:
            counts[call.path] = counts.get(call.path, 0) + count
    return counts


def forward_flops(model):
    """Forward FLOPs of one example through `model` (see the module doc)."""
    return sum(layer_flops(model).values())


def training_flops(model, batch_size=1):
    """FLOPs of one training step (forward + backward) on `batch_size`
    examples."""
    return TRAINING_MULTIPLIER * forward_flops(model) * batch_size


def _size(variable):
    return math.prod(variable.shape)


def _positions(shape, channels_first=False):
    """Product of the non-batch, non-channel dims."""
    inner = shape[2:] if channels_first else shape[1:-1]
    return math.prod(inner)


def _call_flops(call, graph, shape_in, shape_out):
    layer = call.op
    if isinstance(layer, L.Dense):
        return 2 * shape_in[-1] * layer.units * _positions(shape_out)
    if isinstance(layer, L.EinsumDense):
        return 2 * _einsum_products(layer, shape_in)
    channels_first = getattr(layer, "data_format", None) == "channels_first"
    if isinstance(layer, _SEPARABLE):
        spatial = _positions(shape_out, channels_first)
        return 2 * spatial * (_size(layer.depthwise_kernel) + _size(layer.pointwise_kernel))
    if isinstance(layer, _TRANSPOSED):
        return 2 * _size(layer.kernel) * _positions(shape_in, channels_first)
    if isinstance(layer, _CONVS):
        kernel = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") \
            else layer.kernel
        return 2 * _size(kernel) * _positions(shape_out, channels_first)
    if isinstance(layer, L.MultiHeadAttention):
        return _attention_flops(layer, call, graph, shape_out)
    return 0


def _einsum_products(layer, shape_in):
    """Multiply-adds of an EinsumDense: the product of every index's size,
    the batch index excluded."""
    inputs, _, _ = layer.equation.partition("->")
    lhs, kernel_letters = inputs.split(",")
    sizes = dict(zip(kernel_letters, layer.kernel.shape))
    # A "..." in the equation stands for leading dims; they multiply too.
    if "..." in lhs:
        explicit = lhs.replace("...", "")
        extra = shape_in[1:len(shape_in) - len(explicit)]
        lhs, shape = explicit, shape_in[len(shape_in) - len(explicit):]
        product = math.prod(extra)
    else:
        shape, product = shape_in, 1
        sizes.update({lhs[0]: 1})  # the batch index
        lhs, shape = lhs[1:], shape[1:]
    sizes.update(zip(lhs, shape))
    return product * math.prod(sizes.values())


def _attention_flops(layer, call, graph, shape_out):
    def tensor(position, name):
        key = call.kwargs.get(name)
        if key is None and len(call.args) > position:
            key = call.args[position]
        return None if key is None else graph.shapes[key]

    query = tensor(0, "query")
    value = tensor(1, "value")
    key = tensor(2, "key") or value
    heads, key_dim = layer.num_heads, layer.key_dim
    value_dim = layer.value_dim or key_dim
    targets, sources = _positions(query), _positions(value)
    return 2 * (targets * query[-1] * heads * key_dim  # q projection
                + sources * key[-1] * heads * key_dim  # k projection
                + sources * value[-1] * heads * value_dim  # v projection
                + heads * targets * sources * key_dim  # q.k scores
                + heads * targets * sources * value_dim  # weights . v
                + targets * heads * value_dim * shape_out[-1])  # output
