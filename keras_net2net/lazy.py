"""Student variables made without drawing initial values that are overwritten.

Nearly every variable of a student is overwritten as soon as it exists: the
teacher's weights, rewritten, go into it. Keras draws each one's initial value
when it is created (`add_weight`), and for a large student that drawing is
most of its build time (NASNetMobile x2: 4.3 s of 13.7 s, for 1,139 values
thrown away). Keras can defer it: a variable created in
`keras.StatelessScope(initialize_variables=False)` holds no value until it is
initialized. The student is built in such a scope, each variable the teacher
gives a value is initialized directly with that value (`set_value`), and only
the rest (inserted layers, seed-generator states, metrics) draws its own
(`initialize_rest`).

Deferred variables are initialized after the scope, still inside
`expand_model`, so in the caller's context: a student grown under
`tf.distribute.Strategy.scope()` gets distributed variables as before. Where
Keras lacks the hooks, where the caller is itself in a stateless scope, or
where the build cannot run deferred (a stateful RNN makes its state variables
from values, which a stateless scope refuses), the student is built eagerly,
as without this module.

```python
student, made = lazy.build(type(backbone).from_config, config)
for variable, value in zip(student.weights, values):
    lazy.set_value(variable, value)
lazy.initialize_rest(student.variables + made)
```
"""

import contextlib
import random

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net._keras import in_stateless_scope

# Off: every student is built eagerly, as before (the tests compare the two).
ENABLED = True

_SUPPORTED = []


def _supported():
    """Whether this Keras defers a variable's value the way this module
    relies on (private hooks, read through `keras_net2net._keras`). Checked
    once, on a probe variable. TensorFlow and JAX only: those are the backends it was checked against (a torch
    layer registers its parameters when built, which a stateless scope skips)."""
    if not _SUPPORTED:
        ok = False
        try:
            if keras.backend.backend() not in ("tensorflow", "jax"):
                raise NotImplementedError(keras.backend.backend())
            with keras.StatelessScope(initialize_variables=False):
                probe = keras.Variable(initializer="zeros", shape=(1,), name="lazy_probe")
            ok = _keras.defers_values(probe) and any(v is probe for v in _pending())
            _forget({id(probe)})
        except Exception:  # noqa: BLE001 - any other Keras: build eagerly
            ok = False
        _SUPPORTED.append(ok)
    return _SUPPORTED[0]


def _pending():
    return _keras.pending_variables()


def _forget(ids):
    """Drops variables from Keras' global list by identity (`list.remove`
    compares with `==`, an elementwise op on variables). Others stay: they
    are someone else's (a caller's own stateless scope)."""
    pending = _pending()
    if pending and ids:
        pending[:] = [v for v in pending if id(v) not in ids]


def _is_deferred(variable):
    return _keras.is_deferred(variable)


class Made:
    """What a `deferred()` block did: whether it deferred at all (`active`),
    the variables created in it, still deferred (`variables`), and whether an
    assignment inside it was held back by the scope (`assigned`: eager code
    would have kept it)."""

    def __init__(self):
        self.active, self.variables, self.assigned = False, [], False


@contextlib.contextmanager
def deferred():
    """Defers the initial values of the variables created inside it.

    A no-op (variables are initialized as they are created) when this Keras
    lacks the hooks, when `ENABLED` is off, or inside a caller's stateless
    scope, where Keras' own rules apply.

    Yields:
        A `Made`, filled on exit.

    Example:

    ```python
    with lazy.deferred() as made:
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
    lazy.initialize_rest(made.variables)
    ```
    """
    made = Made()
    if not ENABLED or in_stateless_scope() or not _supported():
        yield made
        return
    made.active = True
    before = {id(v) for v in _pending()}
    scope = keras.StatelessScope(initialize_variables=False)
    try:
        with scope:
            yield made
    finally:
        made.variables = [v for v in _pending() if id(v) not in before]
        made.assigned = bool(scope.state_mapping)


def build(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` with its variables deferred, and those variables.

    Falls back to an eager second run of `fn` (which must be repeatable)
    where the deferred one fails (a stateful RNN creates variables from
    values) or assigns a variable (the scope would drop the assignment): the
    eager run gives what it gives today, its errors included.

    Returns:
        `(result, variables)`: the variables still to initialize (`set_value`,
        `initialize_rest`); [] where the run was eager.

    Example:

    ```python
    student, made = lazy.build(keras.models.clone_model, model)
    ```
    """
    made = Made()
    # Layers draw their initializers' seeds from Python's random when made:
    # the eager rerun draws the seeds an eager first run would have.
    seeds = random.getstate(), np.random.get_state()
    try:
        with deferred() as made:
            out = fn(*args, **kwargs)
        if not made.assigned:
            return out, made.variables
    except Exception:  # noqa: BLE001 - rerun eagerly, which raises its own errors
        if not made.active:
            raise
    _forget({id(v) for v in made.variables})
    random.setstate(seeds[0])
    np.random.set_state(seeds[1])
    return fn(*args, **kwargs), []


def set_value(variable, value):
    """Gives `variable` the value `value`: its first value if it is deferred
    (no initial value drawn), else `assign`.

    Args:
        variable: a `keras.Variable`.
        value: an array of its shape; converted to its dtype as `assign`
            converts it (float32 variables of a mixed_float16 model stay
            float32).

    Raises:
        ValueError: `value` has another shape.

    Example:

    ```python
    lazy.set_value(student_layer.kernel, np.ones((3, 4), "float32"))
    ```
    """
    if not _is_deferred(variable) or in_stateless_scope():
        variable.assign(value)
        return
    value = _keras.convert_for(variable, value)
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(
            f"Expected a value of the variable's shape. Received: value.shape={value.shape} "
            f"for variable {variable.path!r} of shape {variable.shape}.")
    _keras.initialize_deferred(variable, value)
    # Off Keras' list at once: its next initialize_all_variables() (any
    # stateless scope's exit) raises on an initialized variable.
    pending = _pending()
    for i, v in enumerate(pending):
        if v is variable:
            del pending[i]
            break


def initialize_rest(variables):
    """Initializes, each with its own initializer, those of `variables` still
    deferred, and takes all of them off Keras' global list.

    Inside a caller's stateless scope it does nothing: that scope initializes
    them on its exit, as Keras does.

    Example:

    ```python
    lazy.initialize_rest(student.variables + made)
    ```
    """
    if in_stateless_scope():
        return
    ids = set()
    for variable in variables:
        if id(variable) in ids:
            continue
        ids.add(id(variable))
        if _is_deferred(variable):
            _keras.initialize_deferred(variable)
    _forget(ids)
