"""RoFormer V2: post-norm encoder blocks rms(x + attention(x)),
rms(x + ffn(x)) with rotary embeddings, flat query/key/value/output Dense
projections `(width, heads x head_size)`, a `head_size` config key free of
the width, no biases by default, and token + segment embeddings added and
RMS-normalised.

Widths: `hidden_dim` and `num_heads` grow by the factor, `head_size` is
kept (rotary; the attention writes heads x head_size channels into the
stream, so hidden_dim = num_heads x head_size holds before and after), `intermediate_dim` grows; integer factors only (post-norm
blocks take no pads). RMS norms over copies compute the teacher's norm
(the mean square of copies is the teacher's), so their scales are copied.
No identity block: a post-norm block computes rms(x) even with its writers
zero, and the LayerNorm hand-over the BERT family uses needs a shift, which
these RMS norms lack; deepening is refused, typed. RoformerV2MaskedLM's own
head has no rule yet (a typed FrozenGroupError); the text classifier grows.
"""

import math

import keras_hub
from keras_hub.src.models.roformer_v2 import roformer_v2_attention
from keras_hub.src.models.roformer_v2 import roformer_v2_encoder

from keras_net2net import errors
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import esm
from keras_net2net.hub import families
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE


class RoformerV2EncoderRule(esm.ESMEncoderRule):
    pre_norm = False
    specs = {**{k: v for k, v in esm.ESMEncoderRule.specs.items() if "norm" not in k},
             "attention_norm/scale": [(0, IN, NORM_SCALE)],
             "feedforward_norm/scale": [(0, IN, NORM_SCALE)]}


def _targets(family, config, widen):
    """hidden_dim and num_heads by the factor, head_size kept."""
    d, h, f = config["hidden_dim"], config["num_heads"], config["intermediate_dim"]
    out = {"hidden": d, "heads": h, "intermediate": f}
    if widen is None:
        return out
    if families.is_number(widen):
        families.check_factor(widen)
        return {"hidden": math.ceil(d * widen - 1e-9), "heads": math.ceil(h * widen - 1e-9),
                "intermediate": math.ceil(f * widen - 1e-9)}
    names = {"hidden_dim": "hidden", "num_heads": "heads", "intermediate_dim": "intermediate"}
    if not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'hidden_dim': {2 * d}}}. Received: widen={widen!r} ({type(widen).__name__}).")
    for key, value in widen.items():
        if key not in names:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(names)} for RoformerV2Backbone (head_size "
                f"is kept: rotary embeddings fix the frequency of each head dim). Received: "
                f"widen={{{key!r}: {value!r}}}. Fix: name one of those config keys.")
        out[names[key]] = hub_backbone.requested_width(key, value, out[names[key]])
    return out


def _request(ctx, family, config, targets):
    request = {family.embedding: targets["hidden"], "segment_embedding": targets["hidden"]}
    for name in family.blocks(config):
        request[name] = {"num_heads": targets["heads"], "intermediate_dim": targets["intermediate"]}
    return request


TABLE = {roformer_v2_encoder.RoformerV2Encoder: RoformerV2EncoderRule(),
         roformer_v2_attention.RoformerNorm: hub_layers.RMSNormLastAxis()}

FAMILIES = [Family(
    keras_hub.models.RoformerV2Backbone, embedding="token_embedding",
    identity=("its post-norm blocks compute rms(x) even with their writers zero, and "
              "the LayerNorm hand-over of post-norm identity blocks needs a shift, which its "
              "RMS norms lack, so no block of its class is the identity"),
    rotary=True, targets=_targets, request=_request)]
