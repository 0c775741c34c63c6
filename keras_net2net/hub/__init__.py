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
    """Registers the keras_hub layer rules and backbone families once; returns
    this package (its `handles` and `grow`), or None when keras_hub is not
    imported (or fails to import).

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
        from keras_net2net.hub import albert
        from keras_net2net.hub import alibi
        from keras_net2net.hub import bart
        from keras_net2net.hub import bert
        from keras_net2net.hub import cnn
        from keras_net2net.hub import electra
        from keras_net2net.hub import families
        from keras_net2net.hub import gemma
        from keras_net2net.hub import gpt2
        from keras_net2net.hub import layers
        from keras_net2net.hub import llama
        from keras_net2net.hub import mistral
        from keras_net2net.hub import mit
        from keras_net2net.hub import mixtral
        from keras_net2net.hub import moe
        from keras_net2net.hub import neox
        from keras_net2net.hub import opt
        from keras_net2net.hub import phi3
        from keras_net2net.hub import qwen
        from keras_net2net.hub import qwen3
        from keras_net2net.hub import roberta
        from keras_net2net.hub import t5
        from keras_net2net.hub import vit
        from keras_net2net.hub import whisper
    except ImportError:  # a keras_hub this package does not know
        return None
    from keras_net2net import rules

    rules.register_table(layers.TABLE)
    rules.register_table(cnn.TABLE)
    for module in (gpt2, bert, albert, roberta, electra, opt, llama, mistral, mixtral,
                   moe, qwen, qwen3, phi3, neox, alibi, gemma, vit, mit):
        rules.register_table(getattr(module, "TABLE", {}))
        families.register(module.FAMILIES)
    for module in (bart, t5, whisper):  # encoder-decoders (hub/seq2seq.py)
        rules.register_table(getattr(module, "TABLE", {}))
        families.register(module.FAMILIES)
    _ACTIVE.append(sys.modules[__name__])
    return _ACTIVE[0]


def handles(model):
    """Whether `model` is a keras_hub Backbone or Task (grown by `grow`)."""
    from keras_net2net.hub import backbone

    return backbone.handles(model)


def grow(model, widen=None, deepen=None, **kwargs):
    """Grows a keras_hub backbone or task into one of the same class: the
    CNN backbones by `hub.cnn`, the others by `hub.backbone` (see their
    `grow`). Call `activate()` first; `keras_net2net.expand_model` does."""
    from keras_net2net.hub import backbone
    from keras_net2net.hub import cnn

    driver = cnn if cnn.handles(model) else backbone
    return driver.grow(model, widen, deepen, **kwargs)
