"""SmolLM3 (`SmolLM3Backbone`, also exported as `SmolLMBackbone`): Llama's
blocks (RMS pre-norm, grouped-query attention, SwiGLU) written with flat
projections: query/key/value are Dense layers `(width, heads x head dim)`
(optionally biased), the output an EinsumDense `(heads, head dim, width)`;
rotary embeddings are switched off in some blocks ("NoPE",
`rope_layer_enabled_list`), and the embedding is tied to the LM head through
the final `sequence_output_layernorm`.

Widths: `hidden_dim` (zero pads at non-integer factors: RMS norms read
them), `num_key_value_heads` (each copied with its query heads, so
`num_attention_heads` = kv heads x the same repeats), `intermediate_dim`. The
head dim is `hidden_dim // num_attention_heads` and is kept (rotary), so the
model width grows with the heads. A flat projection's axis is the pair
(head, head dim) (`Product`). Deepening inserts an identity block (attention
and down projections zero) and a copy of its anchor's entries in the
per-block lists `rope_layer_enabled_list` and `layer_types`, so every block
keeps its own.
"""

import keras_hub
from keras_hub.src.models.smollm3 import smollm3_layers

from keras_net2net.channels import Product
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

KV, REPEATS, QUERY_HEADS = "kv_heads", "repeats", "query_heads"
HEAD_DIM, FFN = hub_layers.HEAD_DIM, hub_layers.FFN
Q_FLAT, KV_FLAT = "query_heads_x_dims", "kv_heads_x_dims"


class SmolLM3DecoderRule(composite.CompositeRule):
    """SmolLM3DecoderLayer: x + o(attention(rms(x))), x + swiglu(rms(x))."""

    norms = True
    pad_kind = "zero"
    inner = {
        "num_key_value_heads": composite.Inner(KV, lambda l: l.self_attn.num_key_value_heads),
        "num_repeats": composite.Inner(
            REPEATS, lambda l: l.self_attn.num_key_value_groups, on_request=True),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.self_attn.head_dim, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.mlp.intermediate_size),
    }
    specs = {
        "self_attn/q_proj/kernel": [(0, IN, DIVIDE), (1, Q_FLAT, COPY)],
        "self_attn/q_proj/bias": [(0, Q_FLAT, COPY)],
        "self_attn/k_proj/kernel": [(0, IN, DIVIDE), (1, KV_FLAT, COPY)],
        "self_attn/k_proj/bias": [(0, KV_FLAT, COPY)],
        "self_attn/v_proj/kernel": [(0, IN, DIVIDE), (1, KV_FLAT, COPY)],
        "self_attn/v_proj/bias": [(0, KV_FLAT, COPY)],
        "input_layernorm/scale": [(0, IN, NORM_SCALE)],
        "post_attention_layernorm/scale": [(0, IN, NORM_SCALE)],
        "mlp/gate_proj/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "mlp/gate_proj/bias": [(0, FFN, COPY)],
        "mlp/up_proj/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "mlp/up_proj/bias": [(0, FFN, COPY)],
        "mlp/down_proj/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, ZERO_FILL)],
        "mlp/down_proj/bias": [(0, OUT, COPY, ZERO_FILL)],
    }
    # The output projection is built in the attention's constructor, before
    # Keras gives it a path below the block: its kernel's path is
    # "o_proj/kernel", found by identity instead.
    output_spec = [(0, QUERY_HEADS, DIVIDE), (1, HEAD_DIM, DIVIDE), (2, OUT, COPY, ZERO_FILL)]

    def derived_roles(self, inner):
        query = Product(inner[KV], inner[REPEATS])
        return {QUERY_HEADS: query, Q_FLAT: Product(query, inner[HEAD_DIM]),
                KV_FLAT: Product(inner[KV], inner[HEAD_DIM])}

    def weight_axes(self, layer, io):
        axes = super().weight_axes(layer, io)
        for index, variable in enumerate(layer.weights):
            if variable is layer.self_attn.o_proj.kernel:
                axes[index] = self.output_spec
        return axes


def _deepen_lists(config, new_config, inserts):
    """The per-block lists get a copy of each anchor's entry per inserted
    block (an identity block computes x whatever its entry)."""
    n = config["num_layers"]
    for key in ("rope_layer_enabled_list", "layer_types"):
        old = list(config[key])
        new = []
        for i, entry in enumerate(old):
            new.append(entry)
            if i < n:
                new.extend([entry] * inserts.get(i, 0))
        new_config[key] = new


ZERO = (r"(self_attn/)?o_proj/kernel", r"mlp/down_proj/(kernel|bias)")

TABLE = {smollm3_layers.SmolLM3DecoderLayer: SmolLM3DecoderRule()}

FAMILIES = [Family(
    keras_hub.models.SmolLM3Backbone, embedding="token_embedding", identity="pre",
    zero=ZERO, rotary=True, tied_norm="sequence_output_layernorm",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_attention_heads"},
    deepen_config=_deepen_lists)]
