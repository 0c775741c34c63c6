"""The registry: one table from layer (or op) class to the rule that grows it.

Rule modules that delegate to another layer's rule (a wrapper, a composite
layer) look it up here; `keras_net2net.rules` fills the table. Lookup is by
exact class: a user subclass of a Keras layer may override `call`, so it is
treated as unknown (a barrier) unless registered with `register_rule`.
"""

import keras

_TABLE = {}
_USER_TABLE = {}


def register_rule(layer_class, rule):
    """Registers `rule` for layers of exactly `layer_class` (custom layers).

    Args:
        layer_class: the class of the custom layer.
        rule: a `keras_net2net.rules.Rule` instance.

    Example:

    ```python
    from keras_net2net import rules
    rules.register_rule(MyScale, rules.channelwise.PassThroughRule())
    ```
    """
    _USER_TABLE[layer_class] = rule


def register_table(table):
    """Adds {layer class: rule} of an optional library (keras_net2net.hub)."""
    _TABLE.update(table)


def rule_for(op):
    """The rule for `op`, or None when the toolkit does not know it."""
    cls = type(op)
    return _USER_TABLE.get(cls) or _TABLE.get(cls)


def kinds_where(fact):
    """Sorted class names of the layers whose rule has `fact` set (e.g.
    "deepenable"), for messages that list what would do."""
    table = {**_TABLE, **_USER_TABLE}
    return sorted({cls.__name__ for cls, rule in table.items()
                   if rule_for_class(cls) is rule and getattr(rule, fact, False)})


def rule_for_class(cls):
    """The rule registered for exactly `cls`, or None."""
    return _USER_TABLE.get(cls) or _TABLE.get(cls)


def unknown_reason(op):
    if isinstance(op, keras.Model):
        return (f"{type(op).__name__} is a subclassed keras.Model, whose graph is hidden in "
                "Python code; it keeps the width of what it reads (rebuild it with the "
                "functional API to grow through it)")
    if isinstance(op, keras.layers.Lambda):
        return "Lambda layers hide their computation; they keep the width of what they read"
    return (f"{type(op).__name__} is not a layer kind the toolkit knows; "
            "register a rule with keras_net2net.rules.register_rule to grow through it")
