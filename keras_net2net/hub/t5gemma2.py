"""T5Gemma 2: T5Gemma's two stacks (keras_net2net.hub.t5gemma) with Gemma 3's
QK-norm (a (1 + scale) RMS norm over the head dim, shared by every head:
kept, as the head dim is), a rotary wavelength per block from its
`layer_types` entry, and decoder blocks whose one *merged* attention reads
the decoder's stream and the encoder's output through the same key and value
kernels: the two streams are one group (one width, one mapping).

Widths as T5Gemma's; `encoder_hidden_dim` and `decoder_hidden_dim` grow
together (a request that parts them is refused by the plan, typed). Deeper:
as T5Gemma's (an inserted block takes its anchor's `layer_types` entry, so
its rotary wavelength, and no other block's changes). A T5Gemma2Backbone with
a vision encoder is refused, typed.

keras_hub internals: the block classes (`keras_hub.src.models.t5gemma2`).

Example:

```python
student = n2n.expand_model(t5gemma2, widen=2.0, deepen=["decoder_layer_1"])
```
"""

import dataclasses

import keras_hub
from keras_hub.src.models.t5gemma2 import t5gemma2_decoder
from keras_hub.src.models.t5gemma2 import t5gemma2_encoder

from keras_net2net import errors
from keras_net2net.hub import t5gemma


class T5Gemma2DecoderRule(t5gemma.T5GemmaDecoderRule):
    """T5Gemma2DecoderLayer: x + post(merged(pre(x), encoder)), x +
    post(mlp(pre(x))); the merged attention's keys and values read both
    streams, so the encoder's is unified with the decoder's."""

    specs = {**t5gemma.attention_specs("merged_attention"),
             **t5gemma.sandwich_norm_specs([("decoder_", "self_attention_layernorm"),
                                            ("decoder_", "feedforward_layernorm")]),
             **t5gemma.MLP}

    def propagate(self, ctx, call):
        stream, memory = call.args[0]
        mine, theirs = ctx.layout(stream), ctx.layout(memory)
        if mine is not None and theirs is not None:
            ctx.unify(mine, theirs, call.path)
        super().propagate(ctx, call)


def _targets(family, config, widen):
    if config.get("vision_encoder") is not None:
        raise errors.UnsupportedModelError(
            "Expected a text-only T5Gemma2Backbone (vision_encoder=None). Received: one with "
            "a vision encoder, whose image embeddings are interleaved into the encoder's "
            "stream through layers keras-net2net has no rule for yet. Fix: grow the text-only "
            "T5Gemma2Backbone with the same config and vision_encoder=None (its text weights "
            "are the same).")
    targets = t5gemma.grow_targets(family, config, widen)
    if targets["hidden"] != targets["decoder_hidden_dim"]:
        raise errors.PlanError(
            f"Expected encoder_hidden_dim == decoder_hidden_dim: T5Gemma2's merged attention "
            f"reads both streams with one key and one value kernel. Received: widen={widen!r}, "
            f"which asks for encoder_hidden_dim={targets['hidden']} and decoder_hidden_dim="
            f"{targets['decoder_hidden_dim']}. Fix: ask for both at the same width, or a factor.")
    return targets


TABLE = {t5gemma2_encoder.T5Gemma2EncoderLayer: t5gemma.T5GemmaEncoderRule(),
         t5gemma2_decoder.T5Gemma2DecoderLayer: T5Gemma2DecoderRule()}

FAMILIES = [dataclasses.replace(t5gemma.FAMILIES[0], backbone=keras_hub.models.T5Gemma2Backbone,
                                targets=_targets)]
