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

import dataclasses
import math
import re

import keras_hub
from keras_hub.src.models.llama import llama_decoder
from keras_hub.src.models.llama import llama_layernorm

from keras_net2net import errors
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import families
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
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


def _query_kernel(layer):
    """The query projection kernel `(width, query heads, head dim)` of a
    Llama-like block, whatever its attention sublayer is called."""
    for variable in layer.weights:
        if re.search(r"(^|/)(query|query_dense)/kernel$", variable.path):
            return variable
    raise ValueError(f"no query kernel in {layer.name!r}")


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
        "head_dim": composite.Inner(HEAD_DIM, lambda l: _query_kernel(l).shape[-1],
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

    def __init__(self, biases=False, rename=None, specs=None, inner=None):
        """Args:
            biases: query/key/value biases `(heads, head dim)` (Qwen).
            rename: {sublayer name in Llama: its name here} (Phi-3's
                `attention`, `pre_attention_layernorm`, ...).
            specs: further weight specs (a mixture-of-experts FFN).
            inner: further inner widths {name: Inner}.
        """
        table = dict(type(self).specs)
        if biases:
            table.update({
                "self_attention/query/bias": [(0, QUERY_HEADS, COPY), (1, HEAD_DIM, QUERY_DIMS)],
                "self_attention/key/bias": [(0, KV, COPY), (1, HEAD_DIM, COPY)],
                "self_attention/value/bias": [(0, KV, COPY), (1, HEAD_DIM, COPY)]})
        for old, new in (rename or {}).items():
            table = {re.sub(f"^{old}/", f"{new}/", k): v for k, v in table.items()}
        table.update(specs or {})
        self.specs = table
        self.inner = {**type(self).inner, **(inner or {})}

    def derived_roles(self, inner):
        return {QUERY_HEADS: Product(inner[KV], inner[REPEATS])}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        config["num_query_heads"] = plan.width(io.layouts[QUERY_HEADS])
        return config


ZERO = (r"self_attention/attention_output/kernel", r"feedforward_output_dense/kernel")

TABLE = {llama_decoder.LlamaTransformerDecoder: LlamaDecoderRule(),
         llama_layernorm.LlamaLayerNorm: hub_layers.RMSNormLastAxis()}



def family(backbone, zero=ZERO, head_dim_key=False, inner_widths=()):
    """The Family of a Llama-like backbone class (Llama, Mistral, Qwen, Phi-3,
    Mixtral, ...): the same config keys, block names and identity block.

    Args:
        backbone: the class.
        zero: weights zeroed in an inserted block.
        head_dim_key: the config holds `head_dim`, which may differ from
            hidden_dim // num_query_heads (Qwen 3): it is kept, and hidden_dim
            grows by the factor on its own.
        inner_widths: further config keys of widths inside the blocks that
            grow with the factor (`moe_intermediate_dim`).
    """
    return Family(
        backbone, embedding="token_embedding", identity="pre", zero=zero,
        rotary=True, tied_norm="sequence_output_layernorm",
        keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
              "intermediate": "intermediate_dim", "layers": "num_layers",
              "query_heads": "num_query_heads"},
        extra={key: None for key in inner_widths},
        targets=_targets if head_dim_key or inner_widths else None,
        request=_request if head_dim_key or inner_widths else None)


def _own_head_dim(config):
    k = config.get("head_dim")
    return k is not None and k != config["hidden_dim"] // config["num_query_heads"]


def _targets(family, config, widen):
    """Targets where the config's `head_dim` is free of the model width: the
    head dim is kept (rotary), kv heads (with their query heads) and the
    widths grow by the factor each."""
    if not _own_head_dim(config):
        return hub_backbone.default_targets(family, config, widen)
    d, h, q, f = (config[k] for k in ("hidden_dim", "num_key_value_heads", "num_query_heads",
                                      "intermediate_dim"))
    r = q // h
    extras = {key: config[key] for key in family.extra}
    out = {"hidden": d, "heads": h, "query_heads": q, "intermediate": f, **extras}
    name = family.backbone.__name__
    if widen is None:
        return out
    if families.is_number(widen):
        families.check_factor(widen)
        heads = math.ceil(h * widen - 1e-9)
        return {"hidden": math.ceil(d * widen - 1e-9), "heads": heads, "query_heads": heads * r,
                "intermediate": math.ceil(f * widen - 1e-9),
                **{key: math.ceil(v * widen - 1e-9) for key, v in extras.items()}}
    if not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'hidden_dim': {2 * d}}}. Received: widen={widen!r} ({type(widen).__name__}).")
    names = {"hidden_dim": "hidden", "num_key_value_heads": "heads",
             "num_query_heads": "query_heads", "intermediate_dim": "intermediate",
             **{key: key for key in extras}}
    for key, value in widen.items():
        if key not in names:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(names)} for {name} (its head_dim is kept: "
                f"rotary embeddings fix the frequency of each head dim). Received: "
                f"widen={{{key!r}: {value!r}}}. Fix: name one of those config keys (layers grow "
                f"with deepen=).")
        out[names[key]] = hub_backbone.requested_width(key, value, out[names[key]])
    if "num_query_heads" in widen and "num_key_value_heads" not in widen:
        out["heads"] = out["query_heads"] // r
    if "num_query_heads" not in widen:
        out["query_heads"] = out["heads"] * r
    if out["query_heads"] != out["heads"] * r:
        raise errors.PlanError(
            f"Expected num_query_heads = num_key_value_heads x {r} (each kv head keeps its {r} "
            f"query heads). Received: num_query_heads={out['query_heads']} and "
            f"num_key_value_heads={out['heads']}. Fix: num_query_heads={out['heads'] * r}.")
    return out


def _request(ctx, family, config, targets):
    """The layer request; `family.extra` here are widths inside the blocks
    (mixture-of-experts FFN widths), requested of every block by config key."""
    if not _own_head_dim(config):
        request = hub_backbone.layer_request(
            ctx, dataclasses.replace(family, extra={}), config, targets)
    else:
        request = {family.embedding: targets["hidden"]}
        inner = {"num_key_value_heads": targets["heads"],
                 "intermediate_dim": targets["intermediate"]}
        for name in family.blocks(config):
            request[name] = inner
    for name in family.blocks(config):
        request[name] = {**request[name], **{key: targets[key] for key in family.extra}}
    return request


# Public for families built on Llama's (Qwen 3.5): their own targets wrap these.
grow_targets, layer_request_of = _targets, _request

FAMILIES = [family(keras_hub.models.LlamaBackbone)]
