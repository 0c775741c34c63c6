"""Exact symmetry breaking for a widened residual stream: rotate it.

Net2WiderNet widens a pre-LN transformer's residual stream by copying its
channels, so the grown stream is `[x, x]`. Under Adam the copies stay
together: each copy pair gets the same gradient and the same per-coordinate
step, and balanced noise only separates them by hiding error that surfaces
as they move apart (BUILD_NOTES: "where the grown LM loses its rate"). A
fresh or zero channel is not exact either: LayerNorm's mean and variance
change.

An orthogonal change of basis `Q` of the stream that keeps the all-ones
direction (`Q 1 = 1`) is exact: LayerNorm's mean and variance of `Q z` are
those of `z`, so `LN(Q z) = Q LN(z)`. Writers into the stream (embeddings,
the attention output, dense layers feeding the residual Adds) get `Q` on
their output axis; each LayerNorm reading it gets a uniform scale `c` and
`beta' = c Q (beta / gamma)`; the layers reading the LayerNorm get the
inverse map on their input axis, `W' = Q diag(gamma) W / c`. The function is
unchanged, but the copy pairs are no longer coordinate pairs: Adam's
per-coordinate steps (not rotation-invariant) move the stream off the
teacher's subspace from the first step, with no hidden error.

`Q = expm(angle x A / |A|)` for a random skew-symmetric `A` with `A 1 = 0`:
`angle` is the largest rotation angle in radians (pi: a thorough mix).

Example:
>>> import numpy as np
>>> q = rotation(6, angle=1.0, rng=np.random.default_rng(0))
>>> bool(np.allclose(q @ q.T, np.eye(6), atol=1e-12)), bool(np.allclose(q.sum(1), 1.0))
(True, True)
"""

import dataclasses

import keras
import numpy as np
import scipy.linalg

from keras_net2net import _keras
from keras_net2net import errors
from keras_net2net import graph as graph_lib
from keras_net2net.training import comparison_options

# Relative error above which the rotation is undone: float32 rounding of a
# few matrix products, far below any change of function worth the name.
TOLERANCE = 1e-4


def rotation(size, *, angle, rng):
    """A random `size` x `size` orthogonal matrix with `Q 1 = 1`, rotating
    by at most `angle` radians."""
    g = rng.normal(size=(size, size))
    p = np.eye(size) - np.full((size, size), 1.0 / size)
    a = p @ (g - g.T) @ p  # skew-symmetric, a 1 = 0
    norm = np.linalg.norm(a, 2)
    return scipy.linalg.expm(angle * a / norm) if norm > 0 else np.eye(size)


@dataclasses.dataclass(frozen=True)
class StreamRotation:
    """What `rotate_stream` did.

    Attributes:
        max_relative_error: the largest relative change of any output on the
            probe (float32 rounding).
        rotations: one orthogonal matrix per residual stream rotated: the
            stream `z` is now `Q z` (`z = rotated @ Q` maps it back).
    """

    max_relative_error: float
    rotations: list


@dataclasses.dataclass
class _Stream:
    """One residual stream: the Adds joining it, its writers and readers."""

    width: int
    adds: list
    writers: list  # (layer, kind)
    norms: list  # LayerNormalization layers reading it
    readers: list  # (norm, layer, kind)


def rotate_stream(model, *, angle=1.0, seed=None, probe=None):
    """Rotates every residual stream of `model` in place, exactly.

    Args:
        model: a built Functional model whose residual streams are joined by
            `Add` layers, written by `Embedding`, linear `Dense` or
            `MultiHeadAttention` layers and read only through
            `LayerNormalization`s feeding `Dense` or `MultiHeadAttention`
            layers (a pre-LN transformer, as grown by `expand_model`).
        angle: the largest rotation angle, in (0, pi] radians.
        seed: seeds the random rotations.
        probe: a batch of inputs (a list, one array per model input) to check
            the outputs on; None draws random ones.

    Returns:
        A `StreamRotation`.

    Raises:
        ValueError: for an angle outside (0, pi].
        UnsupportedModelError: for a model without a stream of that shape; a
            layer breaking it is named. The model is left as it was.
        VerificationError: if the outputs changed by more than `TOLERANCE`
            (the weights are restored first).
    """
    message = comparison_options.rotate_stream_problem(angle)
    if message:
        raise ValueError(message)
    graph = graph_lib.Graph(model)
    streams = _streams(graph)
    if not streams:
        raise errors.UnsupportedModelError(
            f"Expected a residual stream (Add layers) read through "
            f"LayerNormalization in model {model.name!r}. Received: none. Fix: "
            f"rotate_stream applies to pre-LN transformers; leave it off here.")
    if probe is None:
        probe = _probe(graph)
    before = [np.asarray(y, np.float64) for y in _outputs(model, probe)]
    saved = [v.numpy() for v in model.weights]
    rng = np.random.default_rng(seed)
    rotations = [rotation(stream.width, angle=float(angle), rng=rng) for stream in streams]
    for stream, q in zip(streams, rotations):
        _apply(stream, q)
    after = [np.asarray(z, np.float64) for z in _outputs(model, probe)]
    error = max(float(np.max(np.abs(z - y))) / max(float(np.max(np.abs(y))), 1e-30)
                for y, z in zip(before, after))
    if not error <= TOLERANCE:
        for variable, value in zip(model.weights, saved):
            variable.assign(value)
        raise errors.VerificationError(
            f"Expected the stream rotation to keep {model.name!r}'s outputs "
            f"(relative change <= {TOLERANCE}). Received: {error:.3g}. The "
            f"weights are restored. Fix: report this model; leave the rotation off.")
    return StreamRotation(error, rotations)


def _outputs(model, probe):
    y = model(graph_lib.pack_inputs(model, probe), training=False)
    return [np.asarray(t) for t in keras.tree.flatten(y)]


def _probe(graph):
    rng = np.random.default_rng(0)
    out = []
    for key in graph.inputs:
        shape = tuple(d or 2 for d in graph.shapes[key])
        if "int" in graph.dtypes[key]:
            high = min([c.op.input_dim for c in graph.consumers.get(key, [])
                        if isinstance(c.op, keras.layers.Embedding)] or [2])
            out.append(rng.integers(0, high, size=shape).astype(graph.dtypes[key]))
        else:
            out.append(rng.normal(size=shape).astype(graph.dtypes[key]))
    return out


def _refuse(layer, what, fix="leave the rotation off for this model"):
    raise errors.UnsupportedModelError(
        f"Expected {what}. Received: layer {layer.name!r} "
        f"({type(layer).__name__}). Fix: {fix}.")


def _streams(graph):
    """The model's residual streams: tensors joined through Add layers."""
    adds = [c for c in graph.calls if isinstance(c.op, keras.layers.Add)]
    parent = {}

    def root(key):
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    for call in adds:
        for key in call.inputs[1:] + call.outputs:
            parent[root(key)] = root(call.inputs[0])
    groups = {}
    for key in parent:
        groups.setdefault(root(key), []).append(key)
    calls_of = {}
    for call in graph.calls:
        calls_of.setdefault(id(call.op), []).append(call)
    streams = []
    for keys in groups.values():
        stream = _stream(graph, set(keys), calls_of)
        if stream is not None:
            streams.append(stream)
    return streams


def _stream(graph, keys, calls_of):
    consumers = [c for k in keys for c in graph.consumers.get(k, [])]
    if not any(isinstance(c.op, keras.layers.LayerNormalization) for c in consumers):
        return None  # not read through a norm: some other Add (a CNN's).
    width = graph.shapes[next(iter(keys))][-1]
    adds, writers, norms, readers = [], [], [], []
    for key in keys:
        if key in graph.inputs or key in graph.outputs:
            raise errors.UnsupportedModelError(
                f"Expected a residual stream that is neither a model input nor "
                f"output. Received: stream tensor of width {width} at the "
                f"model's edge. Fix: leave the rotation off for this model.")
        producer = graph.producers[key]
        layer = producer.op
        if isinstance(layer, keras.layers.Add):
            adds.append(layer)
        else:
            writers.append((layer, _writer_kind(layer)))
        for call in graph.consumers.get(key, []):
            if isinstance(call.op, keras.layers.Add):
                continue
            if not isinstance(call.op, keras.layers.LayerNormalization):
                _refuse(call.op, "the residual stream to be read only by Add and "
                        "LayerNormalization layers")
            norm = call.op
            if list(norm.axis) not in ([-1], [len(graph.shapes[key]) - 1]):
                _refuse(norm, "a LayerNormalization over the last axis")
            norms.append(norm)
            for out in call.outputs:
                # A call reading the norm twice (attention's query and
                # value) is listed once: its kernels are mapped once.
                for reader in {id(c): c for c in graph.consumers.get(out, [])}.values():
                    readers.append((norm, reader.op, _reader_kind(reader, out)))
    for layer in [w for w, _ in writers] + norms + [r for _, r, _ in readers]:
        if len(calls_of[id(layer)]) != 1:
            _refuse(layer, "each layer touching the stream to be called once",
                    "unshare the layer")
    return _Stream(width, adds, writers, norms, readers)


def _writer_kind(layer):
    if isinstance(layer, keras.layers.Embedding):
        return "embedding"
    if isinstance(layer, keras.layers.MultiHeadAttention) and \
            _keras.attention_output_shape(layer) is None:
        return "attention"
    if isinstance(layer, keras.layers.Dense) and layer.activation in (
            keras.activations.linear, None):
        return "dense"
    return _refuse(layer, "the residual stream to be written by Embedding, linear "
                   "Dense or MultiHeadAttention layers")


def _reader_kind(call, key):
    layer = call.op
    if isinstance(layer, keras.layers.Dense):
        return "dense"
    if isinstance(layer, keras.layers.MultiHeadAttention) and all(
            k == key for k in call.inputs):
        return "attention"
    return _refuse(layer, "a LayerNormalization's output to be read by Dense or "
                   "MultiHeadAttention layers")


def _apply(stream, q):
    def out_axis(variable, matrix):  # rotate the last axis
        variable.assign(np.asarray(variable.numpy(), np.float64) @ matrix.T)

    for layer, kind in stream.writers:
        if kind == "embedding":
            out_axis(layer.embeddings, q)
        elif kind == "dense":
            out_axis(layer.kernel, q)
            if layer.bias is not None:
                out_axis(layer.bias, q)
        else:
            dense = _keras.attention_output_dense(layer)
            out_axis(dense.kernel, q)
            if dense.bias is not None:
                out_axis(dense.bias, q)
    maps = {}
    for norm in stream.norms:
        gamma = (np.asarray(norm.gamma.numpy(), np.float64) if norm.scale
                 else np.ones(stream.width))
        if np.min(np.abs(gamma)) <= 1e-6 * np.sqrt(np.mean(gamma ** 2)):
            _refuse(norm, "a LayerNormalization scale without zeros (its inverse "
                    "carries the readers)")
        c = float(np.sqrt(np.mean(gamma ** 2))) if norm.scale else 1.0
        if norm.scale:
            norm.gamma.assign(np.full(stream.width, c))
        if norm.center:
            norm.beta.assign(c * q @ (np.asarray(norm.beta.numpy(), np.float64) / gamma))
        maps[id(norm)] = q @ np.diag(gamma) / c
    for norm, layer, kind in stream.readers:
        m = maps[id(norm)]
        denses = ([layer] if kind == "dense"
                  else _keras.attention_projections(layer))
        for dense in denses:
            kernel = np.asarray(dense.kernel.numpy(), np.float64)
            dense.kernel.assign(np.tensordot(m, kernel, axes=1))
