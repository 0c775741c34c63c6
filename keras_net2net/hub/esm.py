"""ESM / ESM-2 (`ESMBackbone`, also exported as `ESM2Backbone`): protein
language model encoders with pre-LN blocks x + o(attention(ln(x))),
x + ffn(ln(x)), flat query/key/value/output Dense projections `(width,
heads x head dim)`, rotary position embeddings (or an absolute position
table), and a final `output_layer_norm`.

Widths: `hidden_dim` (mean pads at non-integer factors: LayerNorms read
them), `num_heads` (the head dim `hidden_dim // num_heads` is kept: rotary),
`intermediate_dim`. A flat projection's axis is the pair (head, head dim)
(`Product`). An inserted block zeroes the attention output and feed-forward
output projections: x + 0 + 0 = x. The masked protein LM's head is keras_hub's
MaskedLMHead (keras_net2net.hub.layers).
"""

import keras_hub
from keras_hub.src.models.esm import esm_encoder

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
FLAT = "heads_x_dims"


class ESMEncoderRule(composite.CompositeRule):
    """ESMEncoder: pre-LN, flat attention projections."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.heads, config_key="heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.head_size, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_size,
                                            config_key="intermediate_size"),
    }
    specs = {
        **{f"attention_layer/{n}_dense_layer/kernel": [(0, IN, DIVIDE), (1, FLAT, COPY)]
           for n in "qkv"},
        **{f"attention_layer/{n}_dense_layer/bias": [(0, FLAT, COPY)] for n in "qkv"},
        "attention_layer/o_dense_layer/kernel": [(0, FLAT, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
        "attention_layer/o_dense_layer/bias": [(0, OUT, COPY, MEAN_FILL)],
        **hub_layers.norm_specs("attention_norm"),
        **hub_layers.norm_specs("ffn_norm"),
        **hub_layers.ffn_specs("feedforward_intermediate_dense", "feedforward_output_dense"),
    }

    def derived_roles(self, inner):
        return {FLAT: Product(inner[HEADS], inner[HEAD_DIM])}


ZERO = (r"attention_layer/o_dense_layer/(kernel|bias)", r"feedforward_output_dense/(kernel|bias)")

TABLE = {esm_encoder.ESMEncoder: ESMEncoderRule()}

FAMILIES = [Family(keras_hub.models.ESMBackbone, embedding="token_embedding", identity="pre",
                   zero=ZERO, rotary=True, also_hidden=())]
