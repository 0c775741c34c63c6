"""FNet: token, position and segment embeddings, a LayerNorm and a Dense
projection into post-LN `FNetEncoder` blocks: x = norm(x + Re(FFT2(x))) (a
Fourier transform over the tokens and over the hidden axis), then
norm(x + ffn(x)).

Widths: `intermediate_dim` only (any width: each block's feed-forward units
are copied, its output rows divided). `hidden_dim` is refused: the DFT over
the hidden axis does not commute with copying channels (a channel copied k
times turns the DFT of width kD into the old one at every k-th frequency and
zeros between, an interleaved layout where the residual holds a tiled one),
and a LayerNorm needs a per-channel copy, so no exact widening of the stream
exists. This family is therefore partial: it does not grow x2 into its own
class (`Family.partial`; benchmarks/hub_registry.py says "partial").

Deeper: refused. The Fourier sublayer has no weight to zero (x + Re(FFT2(x))
is never x) and the blocks are post-LN.

Reaches keras_hub internals: `keras_hub.src.layers.modeling.f_net_encoder`
(the block's class, for its rule).
"""

import math

import keras_hub
from keras_hub.src.layers.modeling import f_net_encoder

from keras_net2net import errors
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import IN

FFN = hub_layers.FFN
WHY = ("FNetEncoder mixes with a Fourier transform over the hidden axis: copied channels "
       "move to other frequencies, so no copy of the stream keeps it exact")


class FNetEncoderRule(composite.CompositeRule):
    """FNetEncoder: post-LN Fourier mixing, then a feed-forward; its stream
    keeps its width (`WHY`), its feed-forward units grow."""

    norms = True
    pre_norm = False
    inner = {"intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                                 config_key="intermediate_dim")}
    specs = {**hub_layers.ffn_specs("intermediate_dense", "output_dense"),
             **hub_layers.norm_specs("mixing_layer_norm"),
             **hub_layers.norm_specs("output_layer_norm")}

    def propagate(self, ctx, call):
        super().propagate(ctx, call)
        layout = ctx.io[id(call.op)].layouts.get(IN)
        ctx.groups.freeze_layout(layout, f"{WHY} ({call.path!r})")


_KEYS = {"hidden": "hidden_dim", "intermediate": "intermediate_dim", "layers": "num_layers"}


def _targets(family, config, widen):
    d, f = config["hidden_dim"], config["intermediate_dim"]
    if widen is None:
        return {"hidden": d, "intermediate": f}
    if isinstance(widen, dict):
        if set(widen) - {"intermediate_dim"}:
            raise errors.FrozenGroupError(
                f"Expected widen={{'intermediate_dim': ...}} for FNetBackbone, the one width "
                f"that grows exactly. Received: widen={widen!r}: {WHY}. Fix: "
                f"widen={{'intermediate_dim': {2 * f}}}.")
        return {"hidden": d, "intermediate": hub_backbone.requested_width(
            "intermediate_dim", widen["intermediate_dim"], f)}
    raise errors.FrozenGroupError(
        f"Expected every width of FNetBackbone to grow exactly. Received: widen={widen!r}, "
        f"but hidden_dim keeps its width: {WHY}. Fix: grow the feed-forward alone, "
        f"widen={{'intermediate_dim': {math.ceil(f * widen - 1e-9) if isinstance(widen, (int, float)) else 2 * f}}}.")


def _request(ctx, family, config, targets):
    return {family.block.format(i): {"intermediate_dim": targets["intermediate"]}
            for i in range(config["num_layers"])}


TABLE = {f_net_encoder.FNetEncoder: FNetEncoderRule()}

FAMILIES = [Family(
    keras_hub.models.FNetBackbone, embedding="embedding_projection", block="f_net_layer_{}",
    keys=_KEYS, targets=_targets, request=_request, partial=WHY,
    identity=("its Fourier sublayer has no weight to zero (x + Re(FFT(x)) is never x) and "
              "its blocks are post-LN"))]
