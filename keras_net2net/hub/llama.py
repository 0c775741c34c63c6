"""Llama: pre-norm RMS (`LlamaLayerNorm`) decoder blocks with grouped-query
attention, rotary position embeddings and a SwiGLU feed-forward; an untied
LM head by default.

Widths: `hidden_dim` (zero pads at non-integer factors: RMSNorm reads them),
`num_key_value_heads` (each copied with its query heads, so
`num_query_heads` = kv heads x the same repeats), `intermediate_dim`. The head
dim (hidden // query heads) is kept: rotary embeddings rotate each pair of
head dims at a frequency fixed by its index in the head, so a grown head dim
would move every old dim to another frequency. Growing heads only keeps every
rotation as it was.
"""

import keras_hub
from keras_hub.src.models.llama import llama_decoder
from keras_hub.src.models.llama import llama_layernorm

from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.backbone import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import ZERO_FILL
from keras_net2net.channels import Product

KV, REPEATS, QUERY_HEADS = "kv_heads", "repeats", "query_heads"
HEAD_DIM, FFN = hub_layers.HEAD_DIM, hub_layers.FFN


class LlamaDecoderRule(composite.CompositeRule):
    """LlamaTransformerDecoder: x + attention(rms(x)), x + swiglu(rms(x))."""

    norms = True
    pad_kind = "zero"
    epsilon_key = "layer_norm_epsilon"
    inner = {
        "num_key_value_heads": composite.Inner(KV, lambda l: l.num_key_value_heads,
                                               config_key="num_key_value_heads"),
        "num_repeats": composite.Inner(
            REPEATS, lambda l: l.num_query_heads // l.num_key_value_heads, on_request=True),
        "head_dim": composite.Inner(
            HEAD_DIM, lambda l: l._self_attention_layer._query_dense.kernel.shape[-1],
            on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        "self_attention/query/kernel": [(0, IN, DIVIDE), (1, QUERY_HEADS, COPY),
                                        (2, HEAD_DIM, QUERY_DIMS)],
        "self_attention/key/kernel": [(0, IN, DIVIDE), (1, KV, COPY), (2, HEAD_DIM, COPY)],
        "self_attention/value/kernel": [(0, IN, DIVIDE), (1, KV, COPY), (2, HEAD_DIM, COPY)],
        "self_attention/attention_output/kernel": [
            (0, QUERY_HEADS, DIVIDE), (1, HEAD_DIM, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
        "self_attention_layernorm/scale": [(0, IN, NORM_SCALE)],
        "feedforward_layernorm/scale": [(0, IN, NORM_SCALE)],
        "feedforward_intermediate_dense/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "feedforward_gate_dense/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "feedforward_output_dense/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, ZERO_FILL)],
    }

    def __init__(self, biases=False):
        if biases:  # Qwen: query/key/value biases (heads, head dim)
            self.specs = {
                **type(self).specs,
                "self_attention/query/bias": [(0, QUERY_HEADS, COPY), (1, HEAD_DIM, QUERY_DIMS)],
                "self_attention/key/bias": [(0, KV, COPY), (1, HEAD_DIM, COPY)],
                "self_attention/value/bias": [(0, KV, COPY), (1, HEAD_DIM, COPY)]}

    def derived_roles(self, inner):
        return {QUERY_HEADS: Product(inner[KV], inner[REPEATS])}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        config["num_query_heads"] = plan.width(io.layouts[QUERY_HEADS])
        return config


ZERO = (r"self_attention/attention_output/kernel", r"feedforward_output_dense/kernel")

TABLE = {llama_decoder.LlamaTransformerDecoder: LlamaDecoderRule(),
         llama_layernorm.LlamaLayerNorm: hub_layers.RMSNormLastAxis()}



def family(backbone):
    """The Family of a Llama-like backbone class (Llama, Mistral, Qwen):
    the same config keys, block names and identity block."""
    return Family(
        backbone, embedding="token_embedding", identity="pre", zero=ZERO,
        rotary=True, tied_norm="sequence_output_layernorm",
        keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
              "intermediate": "intermediate_dim", "layers": "num_layers",
              "query_heads": "num_query_heads"})


FAMILIES = [family(keras_hub.models.LlamaBackbone)]
