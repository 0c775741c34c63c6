"""Reads a model's graph (Nodes, KerasTensors) into plain calls.

A model is flattened into a topologically ordered list of `Call`s: one per
node of every operation, nested Functional/Sequential models inlined, so the
rest of the package sees plain operations wired by tensor keys. The private
Keras attributes it reads go through `keras_net2net._keras`.
"""

import dataclasses

import keras

from keras_net2net import _keras
from keras_net2net import errors


@dataclasses.dataclass(frozen=True)
class TensorKey:
    """Identifies one symbolic tensor within one call context of nested models."""

    context: tuple
    tensor_id: int


@dataclasses.dataclass
class Call:
    """One call of an operation in the (inlined) graph.

    Attributes:
        op: the Keras `Layer` or `Operation` called.
        path: "/"-joined names of enclosing models and the op, e.g. "block/conv".
        args: positional call arguments, `TensorKey` in place of tensors.
        kwargs: keyword call arguments, likewise.
        inputs: every input `TensorKey`, flattened in argument order.
        outputs: output `TensorKey`s.
        owner: the (sub)model whose graph holds this call.
    """

    op: object
    path: str
    args: tuple
    kwargs: dict
    inputs: list
    outputs: list
    owner: object


class Graph:
    """An inlined, ordered view of a Functional or Sequential model."""

    def __init__(self, model, opaque_subclassed=False):
        self.model = model
        # Read a nested subclassed model as one call, like a layer's (for
        # explaining); growth refuses it instead (its copy has no graph).
        self.opaque_subclassed = opaque_subclassed
        self.calls = []
        self.shapes = {}  # TensorKey -> static shape tuple (batch first)
        self.dtypes = {}
        self.producers = {}  # TensorKey -> Call
        self.consumers = {}  # TensorKey -> [Call]
        self.paths = {}  # id(layer) -> path of its first call
        self.layers = {}  # id(layer) -> layer
        self.nested_inputs = {}  # id(nested model) -> outer TensorKeys of its first call
        if not isinstance(model, keras.Model):
            if isinstance(model, keras.layers.Layer):
                kind, fix = "a layer", "wrap it: keras.Model(inputs, layer(inputs))"
            elif isinstance(model, str):
                kind, fix = "a string (a file or a keras_hub preset name?)", (
                    "load a saved model with keras.models.load_model(path), or build a "
                    "keras_hub model first, e.g. keras_hub.models.GPT2Backbone.from_preset(name) "
                    "or from its config")
            else:
                kind, fix = "not a Keras model", "pass a Functional or built Sequential model"
            raise errors.UnsupportedModelError(
                f"Expected a Functional or Sequential keras.Model. Received: model="
                f"{model!r:.80} of class {type(model).__name__}, {kind}. Fix: {fix}.")
        functional = _functional_of(model, model.name, top=True)
        self.inputs = [self._key((), t) for t in functional.inputs]
        self.outputs = self._walk(functional, (), "")
        self.output_names = list(getattr(model, "output_names", None) or
                                 [f"output_{i}" for i in range(len(self.outputs))])

    def _key(self, context, tensor):
        key = TensorKey(context, id(tensor))
        self.shapes[key] = tuple(tensor.shape)
        self.dtypes[key] = str(tensor.dtype)
        return key

    def _walk(self, functional, context, prefix, alias=None):
        alias = alias or {}

        def key(t):
            return alias.get(id(t)) or self._key(context, t)

        for node in _ordered_nodes(functional):
            op = node.operation
            args = keras.tree.map_structure(
                lambda a: key(a) if _is_tensor(a) else a, node.arguments.args)
            kwargs = keras.tree.map_structure(
                lambda a: key(a) if _is_tensor(a) else a, node.arguments.kwargs)
            inputs = [key(t) for t in node.arguments.keras_tensors]
            # A nested Functional or Sequential model is walked into; a
            # subclassed one hides its graph: refused, or read as one call
            # (a barrier) when explaining.
            if isinstance(op, keras.Model) and (is_readable(op) or not self.opaque_subclassed):
                inner = _functional_of(op, prefix + op.name, top=False)
                inner_ctx = context + (len(self.calls), id(op))
                inner_alias = {id(t): k for t, k in zip(inner.inputs, inputs)}
                self.layers[id(op)] = op
                self.paths.setdefault(id(op), prefix + op.name)
                self.nested_inputs.setdefault(id(op), inputs)
                inner_outputs = self._walk(inner, inner_ctx, prefix + op.name + "/",
                                           inner_alias)
                for t, k in zip(node.outputs, inner_outputs):
                    alias[id(t)] = k
                continue
            outputs = [key(t) for t in node.outputs]
            call = Call(op, prefix + op.name, args, kwargs, inputs, outputs, functional)
            self.calls.append(call)
            self.layers[id(op)] = op
            self.paths.setdefault(id(op), call.path)
            for k in outputs:
                self.producers[k] = call
            for k in inputs:
                self.consumers.setdefault(k, []).append(call)
        return [key(t) for t in functional.outputs]

    def calls_of(self, op):
        return [c for c in self.calls if c.op is op]


def pack_inputs(model, arrays):
    """`arrays` (one per model input, in `Graph.inputs` order) in the structure
    the model was built with: a dict for dict inputs (keras_hub backbones), a
    list for several, the array itself for one."""
    struct = _keras.inputs_struct(model)
    if isinstance(struct, dict):
        return keras.tree.pack_sequence_as(struct, list(arrays))
    return list(arrays) if len(arrays) > 1 else arrays[0]


def _is_tensor(x):
    return isinstance(x, keras.KerasTensor)


def _ordered_nodes(functional):
    """Nodes of one Functional graph, inputs first, skipping input nodes."""
    by_depth = _keras.nodes_by_depth(functional)
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            if node.operation is not None and not node.is_input:
                yield node


def _functional_of(model, path, top):
    """The Functional graph behind a Functional or built Sequential model."""
    if isinstance(model, keras.Sequential):
        functional = _keras.hidden_functional(model)
        if functional is None:
            raise errors.UnsupportedModelError(
                f"Expected a built Sequential model with a known input shape. "
                f"Received: model={path!r} (Sequential, not built). Fix: start it "
                f"with keras.Input(shape=...) or call model.build(input_shape).")
        return functional
    if _is_functional(model):
        return model
    kind = "model" if top else "nested model"
    raise errors.UnsupportedModelError(
        f"Expected a Functional or Sequential Keras model. Received: {kind} "
        f"{path!r} of class {type(model).__name__} (a subclassed model, whose "
        f"graph is hidden in Python code). Fix: rebuild it with the functional "
        f"API, e.g. keras.Model(inputs, outputs).")


def is_readable(model):
    """Whether a Keras model has a graph to read: Functional or Sequential (an
    unbuilt Sequential is refused when read); not a subclassed model."""
    return isinstance(model, keras.Sequential) or _is_functional(model)


def _is_functional(model):
    return _keras.is_functional(model)


def channels_axis(layer, rank):
    """The channel axis (non-negative) a conv-like layer reads, by data_format."""
    fmt = getattr(layer, "data_format", "channels_last")
    return 1 if fmt == "channels_first" else rank - 1
