"""Shrink and perturb (Ash & Adams, 2020) for a grown model.

`w <- shrink x w + perturb x w0` for every trainable weight, `w0` a fresh
initialisation of the same architecture (`keras.models.clone_model` re-runs
each layer's initialiser). Warm-started networks can train more slowly than
fresh ones; shrinking the inherited weights and mixing in fresh ones is the
published remedy. Not function-preserving: the model computes something else
afterwards, and reports that use it say `exact: false`.

Example:
>>> import keras
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="ones")])
>>> _ = shrink_perturb(model, shrink=0.5, perturb=0.0)
>>> model.layers[0].kernel.numpy().ravel().tolist()
[0.5, 0.5]
"""

import keras


def problem(shrink, perturb):
    """What is wrong with shrink-and-perturb settings, or None.

    Example:
    >>> problem(0.9, 0.1) is None
    True
    >>> "Received: shrink=0" in problem(0, 0.1)
    True
    """
    try:
        ok = 0.0 < float(shrink) <= 1.0 and float(perturb) >= 0.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return (f"Expected shrink in (0, 1] and perturb >= 0 (w <- shrink x w + "
                f"perturb x a fresh initialisation). Received: shrink={shrink!r}, "
                f"perturb={perturb!r}. Fix: e.g. shrink=0.9, perturb=0.1.")
    return None


def shrink_perturb(model, shrink, perturb, *, seed=None):
    """Shrinks `model`'s trainable weights and adds fresh ones, in place.

    Args:
        model: a built Keras model.
        shrink: the factor on the current weights, in (0, 1].
        perturb: the factor on a fresh initialisation, >= 0.
        seed: seeds the fresh initialisation (`keras.utils.set_random_seed`);
            None: the global random state as it is.

    Returns:
        `model`.

    Raises:
        ValueError: for settings outside those ranges.
    """
    message = problem(shrink, perturb)
    if message:
        raise ValueError(message)
    if seed is not None:
        keras.utils.set_random_seed(seed)
    fresh = keras.models.clone_model(model)
    for variable, initial in zip(model.trainable_variables, fresh.trainable_variables):
        variable.assign(shrink * variable + perturb * initial)
    return model
