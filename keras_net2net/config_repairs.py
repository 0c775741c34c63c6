"""Keras layers whose own config round trip fails, and how to re-create them.

`carry.recreate` makes a student layer from its teacher's config; a few Keras
layers write configs their constructors reject. Each repair maps such a config
to the constructor arguments the user could have passed, and sets what the
constructor derives back to the teacher's exact values once the layer exists.
Check each against the installed Keras: once Keras fixes its round trip, the
repair is not needed (it is then never used: `needs_repair` asks Keras first).
"""

import keras


def _symmetric_factor(value):
    """RandomShear keeps `x_factor=0.2` as (-0.2, 0.2) and writes that pair in
    its config, but its constructor refuses a pair with a negative bound; the
    pair of a number f is (-f, f), so f re-creates it."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and min(value) < 0:
        return max(abs(v) for v in value)
    return value


def _random_shear(config):
    config = dict(config)
    exact = {key: tuple(config[key]) for key in ("x_factor", "y_factor")
             if isinstance(config.get(key), (list, tuple))}
    for key in exact:
        config[key] = _symmetric_factor(config[key])

    def restore(layer):
        for key, value in exact.items():  # the teacher's bounds, bit for bit
            setattr(layer, key, value)
    return config, restore


_REPAIRS = {}
if hasattr(keras.layers, "RandomShear"):
    _REPAIRS[keras.layers.RandomShear] = _random_shear


def from_config(cls, config):
    """`cls.from_config(config)` for a class whose round trip Keras breaks,
    repaired; None for any other class (the caller goes on as before).

    Args:
        cls: the layer class.
        config: the (edited) config of the teacher's layer.

    Returns:
        The new layer, or None.
    """
    repair = _REPAIRS.get(cls)
    if repair is None:
        return None
    config, restore = repair(config)
    layer = cls.from_config(config)
    restore(layer)
    return layer
