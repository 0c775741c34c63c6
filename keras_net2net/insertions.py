"""What deepening inserts: one protocol that every kind of insertion follows.

An insertion is planned from the `deepen=` option (`keras_net2net.deepen`:
identity layers or a zero-initialised residual block after one layer;
`keras_net2net.spans`: copies of a span of residual blocks) and made by the
student maker (`keras_net2net.rebuild.Rebuilder`), which knows nothing about
it but this protocol:

- `build(maker)`: makes the new layers, once every student layer exists and
  before the graph is cloned. It may run twice (an eager rerun of a deferred
  build, `keras_net2net.lazy`), so it starts from scratch each time.
- `apply(x, maker)`: calls them on `x`, the student tensor that the teacher
  layer `after` outputs, and returns the tensor that takes its place.
- `initial_weights(maker)`: gives them their first values, once the student's
  own weights are written (identities, zeroed writers, copied weights).

and three optional hooks: `watched_calls()` (teacher calls whose student
arguments `apply` reads, recorded by the maker in `maker.recorded`),
`chain()` (the layers as one flat chain, so that a Sequential student can hold
them; None where they are not one) and `anchored_variables()` (where the new
variables' optimizer slots start from).

The maker offers the insertion: `ctx` (the analysis), `plan`, `graph`,
`student_of` ({id(teacher layer): student layer}), `taken` (layer names in
use), `recorded`, `call(layer, *args, **kwargs)` (calls a student layer as
the clone does: a layer called so is watched and followed by its own
insertion) and `writer_noise` (None, or the symmetry-breaking noise of a
zeroed copy of a student variable).

A new kind of insertion is one subclass of `Insertion` and a line where the
`deepen=` option is read (`deepen.plan_insertions`):

```python
@dataclasses.dataclass
class DropInsertion(insertions.Insertion):
    # Dropout(rate) after the anchor: the identity at inference.
    rate: float = 0.1

    def build(self, maker):
        name = insertions.unique_name(f"{self.anchor.name}_drop", maker.taken)
        self.layers = [[keras.layers.Dropout(self.rate, name=name)]]

    def apply(self, x, maker):
        return self.layers[0][0](x)

    def initial_weights(self, maker):
        pass  # no weights

    def chain(self):
        return self.layers[0]
```
"""

import dataclasses

import keras
import numpy as np

from keras_net2net.graph import TensorKey

L = keras.layers


@dataclasses.dataclass
class Insertion:
    """New layers to insert after the call of `after`.

    Attributes:
        anchor: the teacher layer the request names (reported).
        after: the teacher layer whose output the new layers follow.
        mode: what is inserted, in the report's words ("identity",
            "residual", "block", "stack").
        count: how many blocks.
        pattern: the teacher layers the new ones are modelled on.
        activation: the activation of the inserted layers ("linear": none).
        exact_activation: whether that activation keeps the function exact.
        note: what the report says about it.
        tensor: `TensorKey` of the teacher tensor at the insertion point.
        layers: the built layers, one list per block, in call order.
        identity_bns: inserted identity BatchNorms, whose statistics
            `expand_model(data=...)` sets from data.
    """

    anchor: object
    after: object
    mode: str
    count: int
    pattern: list
    activation: str
    exact_activation: bool
    note: str = ""
    tensor: object = None
    layers: list = dataclasses.field(default_factory=list)
    identity_bns: list = dataclasses.field(default_factory=list)

    def build(self, maker):
        """Makes the new layers (repeatable: starts from scratch)."""
        raise NotImplementedError(type(self).__name__)

    def apply(self, x, maker):
        """Calls the new layers on the student tensor `x`; returns the result."""
        raise NotImplementedError(type(self).__name__)

    def initial_weights(self, maker):
        """Gives the new layers their first values."""
        raise NotImplementedError(type(self).__name__)

    def watched_calls(self):
        """Teacher `Call`s whose student arguments `apply` reads from
        `maker.recorded` (by teacher `TensorKey`)."""
        return []

    def chain(self):
        """The new layers as one flat chain, or None where they are not one
        (a residual block, a replayed span): a Sequential holds a chain."""
        return None

    def anchored_variables(self):
        """[(teacher variables, new variables)]: new variables whose
        optimizer slots start from those of the teacher variables."""
        return []


def record(call, args, kwargs, tensors):
    """Keeps the student tensors a watched call reads, by teacher tensor key:
    an insertion replaying that call reads the same ones where they come
    from outside what it replays."""
    keys = keras.tree.flatten((call.args, call.kwargs))
    values = keras.tree.flatten((args, kwargs))
    for k, v in zip(keys, values):
        if isinstance(k, TensorKey):
            tensors[k] = v


def unique_name(base, taken):
    """`base`, or `base_2`, `base_3`...: the first not in `taken` (added to it)."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def assign(layer, values):
    """Assigns `values` ({weight name: array or scalar}, broadcast) to the
    layer's weights of those names, in each weight's dtype."""
    for v in layer.weights:
        name = v.name
        if name in values:
            v.assign(np.broadcast_to(values[name], v.shape).astype(v.dtype))


def activation_of(layer):
    """Name of the activation a layer applies ('linear' if none)."""
    if type(layer) is L.ReLU:
        if layer.negative_slope or layer.threshold:
            return "leaky_relu"
        return "relu6" if layer.max_value == 6 else ("relu" if layer.max_value is None else "clipped_relu")
    if type(layer) is L.LeakyReLU:
        return "leaky_relu"
    if type(layer) is L.ELU:
        return "elu"
    if isinstance(layer, L.BatchNormalization):
        return "linear"
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "linear") if fn is not None else "linear"
