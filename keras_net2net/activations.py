"""The one table of facts about activation functions.

Growth asks three questions of an activation: does it act on one channel at
a time (`elementwise`), is it idempotent (`idempotent`: a copy inserted after
it is exact), and what does it make of zero (`value_at_zero`,
`maps_zero_to_zero`: a zero pad, a zeroed branch or a dead unit stays zero
through it). Every module asks here; none keeps a table of its own.

"Maps 0 to 0" is decided by evaluating the function at zero, not by name: a
name table goes stale (Keras' `sparse_plus` is 0.25 at 0) and knows nothing
of lambdas or of `keras.ops.gelu`, which a config round trip would not even
keep (it comes back as `keras.activations.gelu`).
"""

import functools

import keras
import numpy as np

# Activations that do not act on one channel at a time.
NOT_ELEMENTWISE = frozenset({"softmax", "log_softmax", "glu", "sparsemax"})
# Activations φ with φ(φ(x)) == φ(x): an inserted copy after them is exact.
IDEMPOTENT = frozenset({"linear", "relu", "relu6", "hard_tanh"})


def name(fn):
    """Serialised name of an activation (`None` is "linear"; a function
    without a `__name__` gives None)."""
    if fn is None:
        return "linear"
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__name__", None)


def elementwise(fn):
    """Whether `fn` (a name, a callable or None) acts on each element alone."""
    return name(fn) not in NOT_ELEMENTWISE


def idempotent(fn):
    """Whether φ(φ(x)) == φ(x) for the activation `fn` (name or callable)."""
    return name(fn) in IDEMPOTENT


def value_at_zero(fn):
    """max |fn(0)| of an element-wise activation, or None where it is unknown.

    Args:
        fn: a Keras activation name, a callable (an activation function, a
            lambda, a layer's `call`), or None (linear).

    Returns:
        A float (of a one-element input, also for an activation that acts
        across channels: see `maps_zero_to_zero`), or None for a name Keras
        does not know or a function that fails on a zero vector.

    Example:

    ```python
    from keras_net2net import activations
    assert activations.value_at_zero("sigmoid") == 0.5
    ```
    """
    if fn is None:
        return 0.0
    if isinstance(fn, dict):  # a serialised activation
        fn = keras.activations.get(fn)
    if isinstance(fn, str):
        return _named_value_at_zero(fn)
    key = name(fn)
    if key and _is_keras_activation(key, fn):  # the same answer for the same function
        return _named_value_at_zero(key)
    return _evaluate(fn)


def maps_zero_to_zero(fn):
    """Whether the activation `fn` (name, callable or None) acts on each
    element alone and maps 0 to 0.

    Example:

    ```python
    import keras
    from keras_net2net import activations
    assert activations.maps_zero_to_zero(keras.ops.gelu)
    assert not activations.maps_zero_to_zero("sigmoid")
    ```
    """
    return elementwise(fn) and value_at_zero(fn) == 0.0


def _is_keras_activation(key, fn):
    try:
        return keras.activations.get(key) is fn
    except (ValueError, TypeError):
        return False


@functools.lru_cache(maxsize=None)
def _named_value_at_zero(key):
    try:
        fn = keras.activations.get(key)
    except (ValueError, TypeError):
        return None
    return _evaluate(fn)


def _evaluate(fn):
    try:
        y = fn(keras.ops.zeros((1,), dtype="float32"))
        return float(np.max(np.abs(keras.ops.convert_to_numpy(y))))
    except Exception:  # noqa: BLE001 - a function that cannot say is unknown
        return None
