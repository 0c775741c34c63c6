"""Falcon (keras_hub's, Falcon-RW) and BLOOM: pre-LN decoder blocks with ALiBi
attention biases, separate query/key/value kernels `(width, heads, head
dim)`, a flat output projection `(heads x head dim, width)`, a tied LM head.

ALiBi adds a per-head slope times the distance to the scores; the slopes are
a function of the number of heads, so a copied head would move every old
head to another slope. The heads are kept and the head dim grows instead
(`hidden_dim // num_heads`): query dims are kept once and scaled by
sqrt(d' / d), their copies zero (rules.base.QUERY_DIMS), key and value dims
copied, so every score, and the bias added to it, is the teacher's. Widths:
`hidden_dim` (a multiple of the heads; BLOOM's embedding LayerNorm needs
whole multiples), `intermediate_dim`. Falcon adds ALiBi before scaling the
scores by 1 / sqrt(head dim), so its head dim cannot grow either: only its
feed-forward width grows (and it deepens). An inserted block zeroes the
attention output and feed-forward output projections.
"""

import math

import keras_hub
from keras_hub.src.models.bloom import bloom_decoder
from keras_hub.src.models.falcon import falcon_transformer_decoder

from keras_net2net import errors
from keras_net2net.channels import Product
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import families
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
FLAT = "heads_x_dims"


class AlibiDecoderRule(composite.CompositeRule):
    """x + attention(ln1(x)), then x + ffn(ln2(x)), heads kept."""

    norms = True
    epsilon_key = "layer_norm_epsilon"

    def __init__(self, attention, names):
        ln1, ln2, ffn_in, ffn_out = names
        def query(layer):  # (width, heads, head dim)
            return next(v for v in layer.weights
                        if v.path.endswith(f"{attention}/query_dense/kernel")).shape

        self.inner = {
            "num_heads": composite.Inner(HEADS, lambda l: int(query(l)[1]), on_request=True),
            "head_dim": composite.Inner(HEAD_DIM, lambda l: int(query(l)[2]), on_request=True),
            "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                                config_key="intermediate_dim"),
        }
        specs = {}
        for name, dims in (("query", QUERY_DIMS), ("key", COPY), ("value", COPY)):
            specs[f"{attention}/{name}_dense/kernel"] = [
                (0, IN, DIVIDE), (1, HEADS, COPY), (2, HEAD_DIM, dims)]
            specs[f"{attention}/{name}_dense/bias"] = [(0, HEADS, COPY), (1, HEAD_DIM, dims)]
        specs[f"{attention}/output_dense/kernel"] = [(0, FLAT, DIVIDE), (1, OUT, COPY, MEAN_FILL)]
        specs[f"{attention}/output_dense/bias"] = [(0, OUT, COPY, MEAN_FILL)]
        self.specs = {**specs, **hub_layers.norm_specs(ln1), **hub_layers.norm_specs(ln2),
                      **hub_layers.ffn_specs(ffn_in, ffn_out)}

    def derived_roles(self, inner):
        return {FLAT: Product(inner[HEADS], inner[HEAD_DIM])}


def _targets(family, config, widen):
    """Heads kept (ALiBi slopes), the head dim grows with hidden_dim."""
    hk, nk = family.keys["hidden"], family.keys["heads"]
    d, n, f = config[hk], config[nk], config["intermediate_dim"]
    if isinstance(widen, dict) and nk in widen and widen[nk] not in (n, 1.0, 1):
        raise errors.PlanError(
            f"Expected {nk} to stay {n} for {family.backbone.__name__}: ALiBi gives each head "
            f"a slope fixed by the number of heads, so more heads would move the old ones to "
            f"other slopes. Received: widen={{{nk!r}: {widen[nk]!r}}}. Fix: grow {hk} (the head "
            f"dim grows with it) and intermediate_dim.")
    if families.is_number(widen):
        families.check_factor(widen)
        hidden = n * math.ceil(d // n * widen - 1e-9)
        return {"hidden": hidden, "heads": n, "intermediate": math.ceil(f * widen - 1e-9)}
    out = {"hidden": d, "heads": n, "intermediate": f}
    if widen is None:
        return out
    if not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{{hk!r}: {2 * d}}}. Received: widen={widen!r} ({type(widen).__name__}).")
    for key, value in widen.items():
        if key not in (hk, "intermediate_dim", nk):
            raise errors.PlanError(
                f"Expected widen keys among {[hk, 'intermediate_dim']} for "
                f"{family.backbone.__name__}. Received: widen={{{key!r}: {value!r}}}. Fix: name "
                f"one of those config keys (layers grow with deepen=).")
        if key != nk:
            name = "hidden" if key == hk else "intermediate"
            out[name] = hub_backbone.requested_width(key, value, out[name])
    if out["hidden"] % n:
        raise errors.PlanError(
            f"Expected {hk} to be a multiple of {nk}={n} (kept: ALiBi). Received: "
            f"{hk}={out['hidden']}. Fix: {hk}={n * math.ceil(out['hidden'] / n)}.")
    return out


def _falcon_targets(family, config, widen):
    """Falcon adds ALiBi before the 1 / sqrt(head dim) scaling, so neither
    more heads (other slopes) nor a longer head dim (a smaller bias) keeps
    the scores: only the feed-forward width grows."""
    out = _targets(family, config, widen)
    if out["hidden"] != config["hidden_dim"]:
        raise errors.PlanError(
            f"Expected a FalconBackbone growth that keeps hidden_dim={config['hidden_dim']}. "
            f"Received: widen={widen!r}: Falcon's attention adds its ALiBi bias before scaling "
            f"the scores by 1 / sqrt(head_dim), and the slopes are fixed by num_attention_heads, "
            f"so neither more heads nor a longer head dim keeps the scores exact. Fix: widen="
            f"{{'intermediate_dim': {2 * config['intermediate_dim']}}} and deepen=[...] "
            f"(identity blocks), which stay exact.")
    return out


def _request(ctx, family, config, targets):
    request = {family.embedding: targets["hidden"]}
    inner = {"head_dim": targets["hidden"] // targets["heads"],
             "intermediate_dim": targets["intermediate"]}
    for name in family.blocks(config):
        request[name] = inner
    return request


FALCON_ZERO = (r"attention/output_dense/(kernel|bias)", r"dense_4h_to_h/(kernel|bias)")
BLOOM_ZERO = (r"self_attention/output_dense/(kernel|bias)", r"mlp_output_dense/(kernel|bias)")

TABLE = {
    falcon_transformer_decoder.FalconTransformerDecoder: AlibiDecoderRule(
        "attention",
        ("input_layernorm", "post_attention_layernorm", "dense_h_to_4h", "dense_4h_to_h")),
    bloom_decoder.BloomDecoder: AlibiDecoderRule(
        "self_attention",
        ("pre_attention_layernorm", "post_attention_layernorm", "mlp_intermediate_dense",
         "mlp_output_dense")),
}

_KEYS = {"hidden": "hidden_dim", "heads": "num_heads", "intermediate": "intermediate_dim",
         "layers": "num_layers"}
FAMILIES = [
    Family(keras_hub.models.FalconBackbone, embedding="token_embedding",
           tied_norm="final_layernorm", identity="pre", zero=FALCON_ZERO,
           keys={**_KEYS, "heads": "num_attention_heads"}, targets=_falcon_targets,
           request=_request),
    Family(keras_hub.models.BloomBackbone, embedding="token_embedding",
           tied_norm="final_layernorm", identity="pre", zero=BLOOM_ZERO, keys=_KEYS,
           targets=_targets, request=_request),
]
