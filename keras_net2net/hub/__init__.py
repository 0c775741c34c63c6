"""keras_hub models grow into bigger models of the same class.

A plugin of the core (`keras_net2net.makers`): the core never imports this
package; it imports it by name, and calls `activate()`, once keras_hub is
imported already (`sys.modules`), so the core never needs keras_hub.
`activate()` registers the rules for keras_hub's layers
(keras_net2net.hub.layers), the backbone families (one module each) and the
two makers of config-made students: `hub.cnn` (EfficientNet, MobileNet) and
`hub.backbone` (every registered family).

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
    """Registers the keras_hub layer rules, backbone families and makers
    once; returns this package, or None when keras_hub is not imported (or
    fails to import).

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
        from keras_net2net.hub import backbone
        from keras_net2net.hub import bart
        from keras_net2net.hub import bert
        from keras_net2net.hub import clip
        from keras_net2net.hub import cnn
        from keras_net2net.hub import convnets
        from keras_net2net.hub import deberta_v3
        from keras_net2net.hub import deit
        from keras_net2net.hub import dinov2
        from keras_net2net.hub import dinov3
        from keras_net2net.hub import dual_encoder
        from keras_net2net.hub import electra
        from keras_net2net.hub import esm
        from keras_net2net.hub import f_net
        from keras_net2net.hub import families
        from keras_net2net.hub import gemma
        from keras_net2net.hub import gemma3
        from keras_net2net.hub import gemma4
        from keras_net2net.hub import gpt2
        from keras_net2net.hub import gpt_oss
        from keras_net2net.hub import hgnetv2
        from keras_net2net.hub import layers
        from keras_net2net.hub import llama
        from keras_net2net.hub import mistral
        from keras_net2net.hub import mit
        from keras_net2net.hub import mixtral
        from keras_net2net.hub import mobilenetv5
        from keras_net2net.hub import moe
        from keras_net2net.hub import moonshine
        from keras_net2net.hub import neox
        from keras_net2net.hub import opt
        from keras_net2net.hub import pali_gemma
        from keras_net2net.hub import parseq
        from keras_net2net.hub import phi3
        from keras_net2net.hub import qwen
        from keras_net2net.hub import qwen3
        from keras_net2net.hub import qwen3_5
        from keras_net2net.hub import qwen3_5_moe
        from keras_net2net.hub import refusals
        from keras_net2net.hub import retinanet
        from keras_net2net.hub import roberta
        from keras_net2net.hub import roformer_v2
        from keras_net2net.hub import rwkv7
        from keras_net2net.hub import sam
        from keras_net2net.hub import segmentation
        from keras_net2net.hub import siglip
        from keras_net2net.hub import smollm3
        from keras_net2net.hub import swin
        from keras_net2net.hub import t5
        from keras_net2net.hub import t5gemma
        from keras_net2net.hub import t5gemma2
        from keras_net2net.hub import video_prism
        from keras_net2net.hub import vit
        from keras_net2net.hub import vit_det
        from keras_net2net.hub import whisper
        from keras_net2net.hub import xlnet
    except ImportError:  # a keras_hub this package does not know
        return None
    from keras_net2net import makers
    from keras_net2net import rules

    rules.register_table(layers.TABLE)
    rules.register_table(cnn.TABLE)
    for module in (gpt2, bert, albert, roberta, electra, opt, llama, mistral, mixtral, moe, qwen,
                   qwen3, phi3, neox, alibi, gemma, vit, mit, gemma3, smollm3, esm, deberta_v3,
                   gpt_oss, roformer_v2, deit, dinov2, dinov3, convnets, bart, t5, whisper,
                   vit_det, swin, sam, video_prism, segmentation, t5gemma, pali_gemma, t5gemma2,
                   gemma4, clip, siglip, hgnetv2, mobilenetv5, parseq, moonshine, xlnet, qwen3_5,
                   qwen3_5_moe, f_net, rwkv7):
        rules.register_table(getattr(module, "TABLE", {}))
        families.register(module.FAMILIES)
    for module in (hgnetv2, mobilenetv5, retinanet):
        convnets.register_specs(module.SPECS)
    # Consulted in this order: composites on a sub-backbone and typed refusals
    # first, then the CNN backbones, the dual encoders, then every family.
    makers.register_maker(segmentation.MAKER)
    makers.register_maker(refusals.MAKER)
    makers.register_maker(convnets.MAKER)
    makers.register_maker(cnn.MAKER)
    makers.register_maker(dual_encoder.MAKER)
    makers.register_maker(backbone.MAKER)
    _ACTIVE.append(sys.modules[__name__])
    return _ACTIVE[0]

