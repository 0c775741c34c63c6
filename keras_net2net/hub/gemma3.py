"""Gemma 3: Gemma 2's blocks ((1 + scale) RMS pre- and post-norms, grouped-
query attention with rotary and soft-capped logits, a tied embedding times
sqrt(hidden_dim)) with QK-norm (a (1 + scale) RMS norm over the head dim of
every query and key head), a GeGLU of `intermediate_dim` units
(`gate_dim_reduction=1`), and five local (sliding-window, rotary wavelength
10k) blocks to one global (1M) block.

Widths as Gemma's (keras_net2net.hub.gemma): `hidden_dim`, kv heads with
their query heads, `intermediate_dim`; `head_dim` is kept (rotary), so the
QK-norm scales `(head_dim,)` are shared by every head, copied ones too, and
keep their values. Identity blocks go where no later block changes its
attention (local iff index % 6 < 5; the rotary wavelength follows it):
after the last block, six at a time, or wherever the moved blocks keep it. A Gemma 3 with a vision encoder is refused, typed: the encoder's
projection writes into the stream through layers with no rule yet.
"""

import functools

import keras_hub
from keras_hub.src.models.gemma3 import gemma3_decoder_block
from keras_hub.src.models.gemma3 import gemma3_layers

from keras_net2net import errors
from keras_net2net.hub import gemma
from keras_net2net.hub.families import Family



def _targets(family, config, widen):
    if config.get("vision_encoder") is not None:
        raise errors.UnsupportedModelError(
            f"Expected a text-only Gemma3Backbone (vision_encoder=None). Received: one with a "
            f"vision encoder, whose image embeddings are written into the model width through "
            f"layers keras-net2net has no rule for yet. Fix: grow the text-only Gemma3Backbone "
            f"with the same config and vision_encoder=None (its decoder weights are the "
            f"same), or a plain functional copy of it (the stream keeps its width).")
    if config.get("is_embedding_model"):
        raise errors.UnsupportedModelError(
            f"Expected a Gemma3Backbone with is_embedding_model=False. Received: an embedding "
            f"model, whose masked mean pooling of the stream has no rule yet. Fix: grow the "
            f"causal (is_embedding_model=False) backbone with the same decoder config.")
    return gemma.grow_targets(family, config, widen, reduction=1)


TABLE = {gemma3_decoder_block.Gemma3DecoderBlock: gemma.GemmaDecoderRule(),
         gemma3_layers.RMSNormalization: gemma.GemmaRMSNormRule()}

FAMILIES = [Family(
    keras_hub.models.Gemma3Backbone, embedding="token_embedding", block="decoder_block_{}",
    identity="pre", zero=gemma.ZERO, rotary=True, tied_norm="final_normalization",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"},
    targets=_targets, request=functools.partial(gemma.layer_request_of, reduction=1),
    finish=gemma.finish_student, deepen_config=gemma.sliding_pattern(6, 5))]
