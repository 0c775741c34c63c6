"""Custom layers built from Keras layers become plain-Keras subgraphs.

A custom `keras.layers.Layer` subclass (keras-io's `PatchEncoder`, a
hand-written `TransformerBlock`, an MLP-Mixer block) hides its sublayers from
the functional graph: the channel analysis sees one unknown layer and keeps
every group it touches at its width. Most such layers only call their Keras
sublayers and `keras.ops` in `call`. Calling that `call` on symbolic inputs
(KerasTensors) records each sublayer call and each op as a graph node, so the
layer can be replaced by a nested functional model with the same name whose
layers are its sublayers (their weights are the teacher's own variables, read
and never written). The pipeline then reads a graph in which the custom layer's
channels join the groups and grow; the student holds plain Keras layers only
(`patch_encoder/dense_3`), and saves and loads without custom objects.

The view of the teacher the pipeline reads is a new functional model that
calls the teacher's own layer objects (as `keras.models.clone_model` with a
`clone_function` returning each layer does): no variable is copied or written,
and the teacher's optimizer slots still pair with its variables.

A layer is inlined only where the traced graph is known to compute what the
layer computes; otherwise it is carried as before, and the report says why:

- it holds weights of its own (`add_weight` in the custom layer itself, not in
  a sublayer): a graph node cannot hold them;
- its `call` branches on tensor values in Python (`if ops.mean(x) > 0`), calls
  non-Keras ops (`tf.*`), or reads a sublayer's weight directly instead of
  calling the sublayer (a tied embedding): tracing fails, or would freeze the
  weight into a constant;
- its `call` takes another path in training than at inference (stochastic
  depth), or uses masks;
- it is called on inputs of different shapes, or with different Python
  arguments, at different places in the model;
- the traced model does not reproduce the teacher on a probe batch.

A sublayer called on a constant (`self.position_embedding(ops.arange(n))`)
would run eagerly during tracing and leave only its output, baked into the
graph. To keep it a layer whose width can grow, the constant is derived from
the layer's input as `sum(zeros_like(x)) + constant`, which is exact for any
input (zeros_like ignores NaN and inf) and which the rules read as a constant
with no channels (`keras_net2net.rules.reduce`).

Example:

```python
view = inline_custom_layers(teacher)
print(view.inlined, view.kept)
```
"""

import dataclasses
import inspect

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import graph as graph_lib
from keras_net2net import rules

_KERAS_MODULES = ("keras.", "keras_hub.", "keras_nlp.", "keras_cv.", "tf_keras.")


@dataclasses.dataclass
class Inlining:
    """What inlining did to a model.

    Attributes:
        model: the model the pipeline reads: the teacher itself when nothing
            was inlined, else a new functional model calling the teacher's
            layers, with each inlined custom layer replaced by a nested
            functional model of the same name.
        inlined: [{"layer", "class", "layers"}]: each inlined custom layer and
            the layers of its subgraph.
        kept: {id(layer): reason} for custom layers carried as they are.
    """

    model: object
    inlined: list = dataclasses.field(default_factory=list)
    kept: dict = dataclasses.field(default_factory=dict)


class _CannotInline(Exception):
    """Internal: why a custom layer is carried instead of inlined."""


def is_custom_layer(op):
    """True for a user's `Layer` subclass the rules do not know: not a model,
    not a Lambda, not a class of Keras or of a Keras library (those compute
    with backend ops directly and are barriers or have rules)."""
    if not isinstance(op, keras.layers.Layer) or isinstance(op, (keras.Model, keras.layers.Lambda)):
        return False
    if rules.rule_for(op) is not None:
        return False
    module = type(op).__module__ or ""
    return not (module + ".").startswith(_KERAS_MODULES)


def inline_custom_layers(model, inputs=None, custom=None, check=True):
    """Replaces each traceable custom layer of `model` by a plain subgraph.

    Args:
        model: a Functional or Sequential `keras.Model`.
        inputs: arrays to check the inlined model on (one per model input);
            default: a random probe batch.
        custom: which layers to inline, a function of a layer (default
            `is_custom_layer`); a keras_hub family passes its own to inline
            keras_hub's nested layers (keras_net2net.hub.nested).
        check: compare the inlined model with `model` on a probe batch;
            False only for a model whose variables hold no values yet (a
            config-made student, traced as its teacher was, checked).

    Returns:
        An `Inlining`; `Inlining.model` is `model` itself when no custom
        layer could be inlined.

    Example:

    ```python
    view = inline_custom_layers(teacher)
    student = keras_net2net.expand_model(view.model, widen=2.0)
    ```
    """
    graph = graph_lib.Graph(model)
    candidates = {}
    for call in graph.calls:
        if (custom or is_custom_layer)(call.op):
            candidates.setdefault(id(call.op), []).append(call)
    if not candidates:
        return Inlining(model)
    kept, traced = {}, {}
    for calls in candidates.values():
        layer = calls[0].op
        try:
            traced[id(layer)] = _trace(layer, calls, graph)
        except _CannotInline as e:
            kept[id(layer)] = str(e)
    if not traced:
        return Inlining(model, kept=kept)
    if not check:
        return Inlining(_view(model, traced), inlined=_described(graph, traced), kept=kept)
    probe = _probe(graph, inputs)
    if probe is None:
        for layer_id in traced:
            kept[layer_id] = (
                "no numeric inputs to check the traced subgraph on; pass verify_data=")
        return Inlining(model, kept=kept)
    view, error = _checked_view(model, traced, probe)
    if error is not None:  # find the layers that are not reproduced, one by one
        good = {}
        for layer_id, sub in traced.items():
            _, alone = _checked_view(model, {layer_id: sub}, probe)
            if alone is None:
                good[layer_id] = sub
            else:
                kept[layer_id] = (
                    f"the subgraph traced from its call does not reproduce it on a probe "
                    f"batch (max relative error {alone:.3g}): its call likely depends on "
                    f"tensor values in Python or on random draws")
        traced = good
        view, error = _checked_view(model, traced, probe) if traced else (model, None)
        if error is not None:
            for layer_id in traced:
                kept[layer_id] = (
                    f"the inlined model does not reproduce the teacher on a probe batch "
                    f"(max relative error {error:.3g})")
            return Inlining(model, kept=kept)
    return Inlining(view, inlined=_described(graph, traced), kept=kept)


def _described(graph, traced):
    return [{"layer": graph.paths[i], "class": type(graph.layers[i]).__name__,
             "layers": [l.name for l in sub.layers
                        if not isinstance(l, keras.layers.InputLayer)]} for i, sub in traced.items()]


# -- tracing -------------------------------------------------------------------

def _trace(layer, calls, graph):
    """The nested functional model computing `layer`'s call (first call's
    argument structure), or `_CannotInline` with the reason."""
    sublayers = list(_keras.sublayers(layer))
    own = {id(v) for s in sublayers for v in s.variables}
    mine = [v for v in layer.variables if id(v) not in own]
    if mine:
        raise _CannotInline(
            f"it holds weights of its own ({', '.join(repr(v.path) for v in mine[:3])}), "
            f"created with add_weight rather than in a Keras sublayer")
    signature = _signature(layer)
    if layer.supports_masking or "mask" in signature or any(
            getattr(s, "mask_zero", False) or isinstance(s, keras.layers.Masking)
            for s in sublayers):
        raise _CannotInline("it uses masks, which flow differently once its sublayers "
                            "are graph layers")
    first = calls[0]
    for other in calls[1:]:
        if [graph.shapes[k] for k in other.inputs] != [graph.shapes[k] for k in first.inputs] \
                or not _same_constants(first, other):
            raise _CannotInline("it is called on inputs of different shapes or with "
                                "different arguments at different places")
    specs = [(graph.shapes[k], graph.dtypes[k]) for k in first.inputs]
    if not specs:
        raise _CannotInline("it is called on no tensor")
    sub, ops_seen = _trace_once(layer, first, specs, sublayers, None)
    if "training" in signature and "training" not in first.kwargs:
        _, in_training = _trace_once(layer, first, specs, sublayers, True)
        if in_training != ops_seen:
            raise _CannotInline("its call takes another path in training than at inference "
                                "(Python control flow on `training`)")
    return sub


def _signature(layer):
    try:
        return set(inspect.signature(layer.call).parameters)
    except (TypeError, ValueError):
        return set()


def _same_constants(a, b):
    def constants(call):
        leaves = keras.tree.flatten((call.args, call.kwargs))
        return [x for x in leaves if not isinstance(x, graph_lib.TensorKey)]

    try:
        return all(_equal(x, y) for x, y in zip(constants(a), constants(b), strict=True))
    except ValueError:
        return False


def _equal(x, y):
    try:
        return bool(np.all(np.asarray(x) == np.asarray(y)))
    except Exception:  # noqa: BLE001 - objects that do not compare
        return x is y


def _trace_once(layer, call, specs, sublayers, training):
    inputs = [keras.Input(batch_shape=shape, dtype=dtype) for shape, dtype in specs]
    feed = iter(inputs)
    args, kwargs = keras.tree.map_structure(
        lambda a: next(feed) if isinstance(a, graph_lib.TensorKey) else a,
        (call.args, call.kwargs))
    if training is not None:
        kwargs = {**kwargs, "training": training}
    anchor = next((t for t in inputs if _numeric(t.dtype)), None)
    recorder = _Recorder(sublayers, anchor)
    try:
        with recorder:
            outputs = layer.call(*args, **kwargs)
    except _CannotInline:
        raise
    except Exception as e:  # noqa: BLE001 - any failure of user code is a reason to carry
        raise _CannotInline(f"its call cannot be traced on symbolic inputs ({_describe(e)})") \
            from e
    if recorder.direct_reads:
        raise _CannotInline(
            f"its call reads the weight {recorder.direct_reads[0]!r} directly instead of "
            f"calling the layer that holds it, so a traced graph would hold it as a constant")
    flat = keras.tree.flatten(outputs)
    if not flat or not all(isinstance(t, keras.KerasTensor) for t in flat):
        raise _CannotInline("its call returns something other than tensors computed from "
                            "its inputs")
    try:
        sub = keras.Model(inputs[0] if len(inputs) == 1 else inputs,
                          flat[0] if len(flat) == 1 else flat, name=layer.name)
    except Exception as e:  # noqa: BLE001
        raise _CannotInline(f"its traced graph is not a valid model ({_describe(e)})") from e
    for op in sub.operations:
        for node in _keras.inbound_nodes(op):
            leaves = keras.tree.flatten((node.arguments.args, node.arguments.kwargs))
            held = [x for x in leaves if isinstance(x, keras.Variable)]
            if held:
                raise _CannotInline(
                    f"its call passes the weight {held[0].path!r} to a keras.ops call, so "
                    f"a traced graph would hold it as a constant")
    # What the trace did, to compare a trace in training with one at inference.
    return sub, (tuple(recorder.seen), tuple(type(op).__name__ for op in sub.operations))


def _numeric(dtype):
    return any(kind in str(dtype) for kind in ("float", "int", "bool"))


class _Recorder:
    """While tracing: lifts constants that sublayers are called on into the
    graph, records which sublayers are called in which order, and catches
    reads of a sublayer's weight outside that sublayer's call."""

    def __init__(self, sublayers, anchor):
        self.ids = {id(s) for s in sublayers}
        self.watched = {id(v): v for s in sublayers for v in s.variables}
        self.anchor = anchor
        self.depth = 0
        self.seen = []
        self.direct_reads = []
        self._saved = []

    def __enter__(self):
        layer_cls = keras.layers.Layer
        var_cls = _keras.VARIABLE_BASE
        call, value = layer_cls.__call__, var_cls.value
        recorder = self

        def patched_call(layer, *args, **kwargs):
            if recorder.depth == 0 and id(layer) in recorder.ids:
                recorder.seen.append(id(layer))
                if not any(isinstance(x, keras.KerasTensor)
                           for x in keras.tree.flatten((args, kwargs))):
                    args, kwargs = recorder.lift((args, kwargs))
            recorder.depth += 1
            try:
                return call(layer, *args, **kwargs)
            finally:
                recorder.depth -= 1

        def patched_value(variable):
            if recorder.depth == 0 and id(variable) in recorder.watched:
                recorder.direct_reads.append(variable.path)
            return value.fget(variable)

        shape = keras.ops.shape

        def patched_shape(x):
            # A dimension unknown while tracing (the batch) as -1: `reshape(x,
            # (batch, n, d))`, keras-io's Patches, then traces to a reshape that
            # works for any batch; a use that does not is caught by the check
            # on a probe batch, and the layer is carried.
            dims = shape(x)
            if isinstance(x, keras.KerasTensor):
                return tuple(-1 if d is None else d for d in dims)
            return dims

        self._saved = [(layer_cls, "__call__", call), (var_cls, "value", value),
                       (keras.ops, "shape", shape)]
        layer_cls.__call__ = patched_call
        var_cls.value = property(patched_value)
        keras.ops.shape = patched_shape
        return self

    def __exit__(self, *exc):
        for cls, name, original in self._saved:
            setattr(cls, name, original)
        return False

    def lift(self, structure):
        """Constant tensors in `structure` as KerasTensors computed from the
        anchor: `sum(zeros_like(anchor)) + constant`, exact for any input."""
        def one(x):
            if isinstance(x, keras.Variable) or not (
                    keras.ops.is_tensor(x) or isinstance(x, np.ndarray)):
                return x
            if self.anchor is None:
                raise _CannotInline("a sublayer is called on a constant and no numeric "
                                    "input could carry it into the graph")
            value = keras.ops.convert_to_numpy(x)
            zero = keras.ops.cast(keras.ops.sum(keras.ops.zeros_like(self.anchor)),
                                  value.dtype)
            return keras.ops.add(zero, value)

        return keras.tree.map_structure(one, structure)


def _describe(e):
    lines = [line for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:200] if lines else ''}"


# -- the view the pipeline reads -------------------------------------------

def _checked_view(model, traced, probe):
    """(view, None), or (view, max relative error) where the view does not
    reproduce `model` on `probe` to rounding."""
    view = _view(model, traced)
    return view, view_error(model, view, probe)


def view_error(model, view, probe):
    """None where `view` reproduces `model` on `probe` to rounding, else
    the max relative error (NaN where the view cannot run).

    Example:

    ```python
    assert view_error(model, inline_custom_layers(model).model, x) is None
    ```
    """
    from keras_net2net import verify

    names = [f"output_{i}" for i in range(len(keras.tree.flatten(model.outputs)))]
    try:
        rows = verify.compare(model, view, probe, names)
    except Exception:  # noqa: BLE001 - a view that cannot run is not used
        return float("nan")
    error = verify.max_relative(rows)
    dtype = verify.compute_dtype(model)
    if not error <= verify.ROUNDING.get(dtype, 1e-6):  # NaN fails too
        return error
    return None


def _view(model, traced):
    """A new functional model calling `model`'s own layers, with each layer in
    `traced` ({id(layer): nested model}) replaced by its nested model."""
    substitutes = {}

    def clone(layer):
        if id(layer) in traced:
            sub = traced[id(layer)]
            substitutes[id(sub)] = sub
            return sub
        if isinstance(layer, keras.Model) and _holds(layer, traced):
            return _view(layer, traced)
        return layer

    def call(layer, *args, **kwargs):
        if id(layer) in substitutes:
            flat = [x for x in keras.tree.flatten((args, kwargs))
                    if isinstance(x, keras.KerasTensor)]
            return layer(flat[0] if len(flat) == 1 else flat)
        return layer(*args, **kwargs)

    functional = _keras.functional_of(model)
    view = keras.models.clone_model(functional, clone_function=clone, call_function=call)
    return keras.Model(view.input, view.output, name=model.name, trainable=model.trainable)


def _holds(model, traced):
    return any(id(l) in traced or (isinstance(l, keras.Model) and _holds(l, traced))
               for l in model.layers)


def _probe(graph, inputs):
    from keras_net2net import verify

    if inputs is not None:
        return inputs
    try:
        return verify.probe_inputs(_GraphOnly(graph))
    except Exception:  # noqa: BLE001 - inputs that cannot be drawn (strings)
        return None


@dataclasses.dataclass
class _GraphOnly:
    graph: object

