"""GPT-NeoX: parallel pre-LN blocks x + attention(ln1(x)) + ffn(ln2(x)) with
partial rotary embeddings (the first `rotary_percentage` of each head dim),
a fused query/key/value kernel `(width, heads, 3 x head dim)`, a flat output
projection `(heads x head dim, width)`, and a tied LM head reading the final
`layer_norm`.

Widths: `hidden_dim` (mean pads at non-integer factors: pre-LN), `num_heads`
(head dim kept: rotary, and the fused kernel splits each head's last axis at
the head dim), `intermediate_dim`. A copied head copies its fused slice whole;
the flat output rows follow `Product(heads, head dim)` and are divided by the
copy counts. An inserted block zeroes the attention output and feed-forward
output projections: x + 0 + 0 = x.
"""

import keras_hub
from keras_hub.src.models.gpt_neo_x import gpt_neo_x_decoder

from keras_net2net import _keras
from keras_net2net.channels import Product
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
FLAT = "heads_x_dims"  # a (heads, head dim) pair flattened: h * head dim + d


class GPTNeoXDecoderRule(composite.CompositeRule):
    norms = True
    epsilon_key = "layer_norm_epsilon"
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(
            HEAD_DIM, lambda l: _keras.self_attention(l).attn_head_size, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        "self_attention/query_key_value/kernel": [(0, IN, DIVIDE), (1, HEADS, COPY)],
        "self_attention/query_key_value/bias": [(0, HEADS, COPY)],
        "self_attention/attention_output/kernel": [(0, FLAT, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
        "self_attention/attention_output/bias": [(0, OUT, COPY, MEAN_FILL)],
        **hub_layers.norm_specs("self_attention_layer_norm"),
        **hub_layers.norm_specs("feedforward_layer_norm"),
        **hub_layers.ffn_specs("feedforward_intermediate_dense", "feedforward_output_dense"),
    }

    def derived_roles(self, inner):
        return {FLAT: Product(inner[HEADS], inner[HEAD_DIM])}


ZERO = (r"self_attention/attention_output/(kernel|bias)",
        r"feedforward_output_dense/(kernel|bias)")

TABLE = {gpt_neo_x_decoder.GPTNeoXDecoder: GPTNeoXDecoderRule()}

FAMILIES = [Family(keras_hub.models.GPTNeoXBackbone, embedding="token_embedding",
                   tied_norm="layer_norm", identity="pre", zero=ZERO, rotary=True)]
