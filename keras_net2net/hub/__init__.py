"""keras_hub models grow into bigger models of the same class.

Loaded only when keras_hub is imported already (`keras_net2net.expand_model`
looks at `sys.modules`), so the core never needs keras_hub. `activate()`
registers the rules for keras_hub's layers (keras_net2net.hub.layers) and the
backbone families (one module each).

Example:

```python
import keras_hub, keras_net2net as n2n
teacher = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                        hidden_dim=16, intermediate_dim=32,
                                        max_sequence_length=16)
student = n2n.expand_model(teacher, widen=2.0)   # a GPT2Backbone, hidden_dim 32
```
"""

import sys

_ACTIVE = []


def activate():
    """Registers the keras_hub rules once; returns the `backbone` module, or
    None when keras_hub is not imported (or fails to import).

    Example:

    ```python
    from keras_net2net import hub
    hub.activate()
    ```
    """
    if _ACTIVE:
        return _ACTIVE[0]
    if sys.modules.get("keras_hub") is None:
        return None
    try:
        from keras_net2net.hub import backbone
        from keras_net2net.hub import layers
    except ImportError:  # a keras_hub this package does not know
        return None
    from keras_net2net import rules

    rules.register_table(layers.TABLE)
    backbone.families()  # registers the families' own layer rules
    _ACTIVE.append(backbone)
    return backbone
