"""Mistral: Llama's blocks (RMS pre-norm, grouped-query attention, rotary,
SwiGLU) with sliding-window attention, which masks positions only, so widths
grow as Llama's do (keras_net2net.hub.llama), with the head dim
`hidden_dim // num_query_heads` kept (rotary). A config whose `head_dim` is
set to something else (Mistral-Nemo) is refused, typed: not grown yet.
"""

import dataclasses

import keras_hub
from keras_hub.src.models.mistral import mistral_layer_norm
from keras_hub.src.models.mistral import mistral_transformer_decoder

from keras_net2net import errors
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import llama

TABLE = {mistral_transformer_decoder.MistralTransformerDecoder: llama.LlamaDecoderRule(),
         mistral_layer_norm.MistralLayerNormalization: hub_layers.RMSNormLastAxis()}



def _targets(family, config, widen):
    """Llama's targets, where the head dim is hidden // query heads."""
    k = config.get("head_dim")
    if k is not None and k != config["hidden_dim"] // config["num_query_heads"]:
        raise errors.UnsupportedModelError(
            f"Expected a MistralBackbone whose head_dim is None or hidden_dim // "
            f"num_query_heads. Received: head_dim={k} with hidden_dim={config['hidden_dim']} "
            f"and num_query_heads={config['num_query_heads']}: a head dim free of the model "
            f"width is not grown for Mistral yet. Fix: grow a plain functional copy of it "
            f"(its blocks keep their width), or one with head_dim=None.")
    return hub_backbone.default_targets(family, config, widen)


FAMILIES = [dataclasses.replace(llama.family(keras_hub.models.MistralBackbone),
                                targets=_targets)]
