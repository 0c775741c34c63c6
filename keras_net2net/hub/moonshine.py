"""Moonshine: an audio front end (Conv1D, tanh, a GroupNormalization with one
group, a Conv1D of twice the filters, GELU, a Conv1D, GELU) into pre-LN
encoder blocks with partial rotary attention and a final LayerNorm; a token
embedding into pre-LN decoder blocks (rotary self attention, cross attention
over the encoder output, a SwiGLU feed-forward) and a final LayerNorm.

Widths: `hidden_dim` (= `filter_dim`: the third convolution writes the
encoder stream), the front end's filters (the first convolution's, and the
second's, twice as many), the encoder and decoder heads (`encoder_num_heads`,
`decoder_num_heads`: the head dim, hidden_dim // heads, is kept, so every
rotary frequency stays), and the feed-forward width, which keras_hub derives
as hidden_dim x `feedforward_expansion_factor` (it grows with hidden_dim;
`intermediate_dim` is stored but read by no layer, and grows by the factor
too). The SwiGLU's first projection holds its value and gate halves side by
side: the axis is (half, unit) with the half never grown. The encoder and
decoder streams are two groups (cross-attention key/value rows follow the
encoder's). Integer factors only: the group norm needs every filter copied
equally, and the encoder stream is written through GELU (no mean pad).

Deeper: encoder and decoder blocks, each stack on its own
(`encoder_num_layers`, `decoder_num_layers`), each new block a copy of its
anchor with its attention, cross-attention and feed-forward outputs zero.

Reaches keras_hub internals: `keras_hub.src.models.moonshine` (the block,
mask and position layers' classes, for their rules).
"""

import re

import keras_hub
from keras_hub.src.models.moonshine import moonshine_backbone
from keras_hub.src.models.moonshine import moonshine_decoder
from keras_hub.src.models.moonshine import moonshine_encoder

from keras_net2net import errors
from keras_net2net.channels import Product
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import seq2seq
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import Rule

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
HALF, HALVES = "swiglu_half", "half_x_units"
ENCODER, DECODER = "encoder_block_{}", "decoder_block_{}"


def _ffn_specs(mlp, swiglu):
    specs = hub_layers.ffn_specs(f"{mlp}/dense_1", f"{mlp}/dense_2")
    if swiglu:  # dense_1 writes [value | gate]: (half, unit), half outer
        specs[f"{mlp}/dense_1/kernel"] = [(0, IN, DIVIDE), (1, HALVES, COPY)]
        specs[f"{mlp}/dense_1/bias"] = [(0, HALVES, COPY)]
    return specs


class MoonshineBlockRule(composite.CompositeRule):
    """A Moonshine encoder or decoder block. Weights are keyed by the
    block's attribute holding their sublayer (`norm1/gamma`), since the
    decoder's sublayers are auto-named with a global counter."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.head_dim, on_request=True),
        # hidden_dim x feedforward_expansion_factor (not `intermediate_dim`).
        "feedforward_width": composite.Inner(
            FFN, lambda l: l.hidden_dim * l.feedforward_expansion_factor),
        "swiglu_half": composite.Inner(HALF, lambda l: 2, on_request=True),
    }

    def __init__(self, attention, norms, mlp, cross=None):
        self.attributes = (attention, *norms, mlp) + ((cross,) if cross else ())
        self.mlp = mlp
        self.specs = {**hub_layers.attention_specs(attention),
                      **{k: v for n in norms for k, v in hub_layers.norm_specs(n).items()}}
        if cross:
            self.specs.update(seq2seq.cross_attention_specs(cross))

    def derived_roles(self, inner):
        return {HALVES: Product(inner[HALF], inner[FFN])}

    def weight_axes(self, layer, io):
        specs = {**self.specs, **_ffn_specs(self.mlp, layer.use_swiglu_activation)}
        keys = dict((id(v), key) for key, v in own_weights(layer, self.attributes))
        axes = {}
        for index, variable in enumerate(layer.weights):
            spec = next((s for p, s in specs.items() if re.fullmatch(p, keys[id(variable)])),
                        None)
            if spec is not None:
                axes[index] = spec
        return axes


class MoonshineDecoderRule(MoonshineBlockRule):
    """MoonshineDecoderBlock: self attention, cross attention over
    `encoder_sequence` (the `MEMORY` role), SwiGLU feed-forward."""

    def propagate(self, ctx, call):
        seq2seq.propagate_with_memory(self, ctx, call, seq2seq.memory_of(call, "encoder_sequence"))

    def pad_constraints(self, solver, call, ins, outs, where):
        seq2seq.stream_pad_constraints(self, solver, call, ins, outs, where,
                                       seq2seq.memory_of(call, "encoder_sequence"))


_ENCODER_PARTS = ("self_attention_layer", ("self_attention_layer_norm", "feedforward_layer_norm"),
                  "feedforward")
_DECODER_PARTS = ("self_attention", ("norm1", "norm2", "norm3"), "ff", "cross_attention")


def own_weights(block, attributes=None):
    """[(attribute/path below the sublayer, variable)] of a Moonshine block."""
    if attributes is None:
        parts = _DECODER_PARTS if isinstance(block, moonshine_decoder.MoonshineDecoderBlock) \
            else _ENCODER_PARTS
        attributes = (parts[0], *parts[1], *parts[2:])
    out = []
    for name in attributes:
        sublayer = getattr(block, name)
        out += [(f"{name}/{v.path[len(sublayer.path) + 1:]}", v) for v in sublayer.weights]
    return out


class ShapeReaderRule(Rule):
    """A layer that reads only its input's shape (a mask from lengths,
    position ids): its outputs carry no channels."""

    def propagate(self, ctx, call):
        for key in call.outputs:
            ctx.layouts[key] = None


ZERO = (r"(self_attention(_layer)?|cross_attention)/attention_output/(kernel|bias)",
        r"(feedforward|ff)/dense_2/(kernel|bias)")

TABLE = {
    moonshine_encoder.MoonshineEncoderBlock: MoonshineBlockRule(*_ENCODER_PARTS),
    moonshine_decoder.MoonshineDecoderBlock: MoonshineDecoderRule(*_DECODER_PARTS),
    moonshine_backbone.ComputeAttentionMask: ShapeReaderRule(),
    moonshine_backbone.Arange: ShapeReaderRule(),
}

_KEYS = {"hidden": "hidden_dim", "heads": "encoder_num_heads",
         "intermediate": "intermediate_dim", "layers": "encoder_num_layers"}


def _targets(family, config, widen):
    """The encoder's targets by the default rule (head dim kept), the
    decoder's heads for the same width, `filter_dim` = hidden_dim."""
    d = config["hidden_dim"]
    if isinstance(widen, dict):
        names = {"hidden_dim", "encoder_num_heads", "decoder_num_heads", "intermediate_dim"}
        if set(widen) - names:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(names)} for MoonshineBackbone (filter_dim "
                f"follows hidden_dim). Received: widen={widen!r}. Fix: name those keys.")
        widen = dict(widen)
        decoder_heads = widen.pop("decoder_num_heads", None)
    targets = hub_backbone.default_targets(family, config, widen)
    k = d // config["decoder_num_heads"]
    heads = targets["hidden"] // k if targets["hidden"] % k == 0 else None
    if isinstance(widen, dict) and decoder_heads is not None:
        heads = hub_backbone.requested_width("decoder_num_heads", decoder_heads,
                                             config["decoder_num_heads"])
    if heads is None or heads * k != targets["hidden"]:
        raise errors.PlanError(
            f"Expected decoder heads of dim {k} (hidden_dim // decoder_num_heads: rotary "
            f"embeddings fix each head dim's frequency). Received: hidden_dim="
            f"{targets['hidden']} and decoder_num_heads={heads}. Fix: hidden_dim a multiple "
            f"of {k}, decoder_num_heads = hidden_dim // {k}.")
    targets.update(decoder_num_heads=heads, filter_dim=targets["hidden"])
    return targets


def _request(ctx, family, config, targets):
    d, f = targets["hidden"], config["feedforward_expansion_factor"]
    request = {"conv1": d, "conv2": 2 * d, "conv3": d, "token_embedding": d}
    for i in range(config["encoder_num_layers"]):
        request[ENCODER.format(i)] = {"num_heads": targets["heads"], "feedforward_width": d * f}
    for i in range(config["decoder_num_layers"]):
        request[DECODER.format(i)] = {"num_heads": targets["decoder_num_heads"],
                                      "feedforward_width": d * f}
    return request


def _blocks(config):
    return ([ENCODER.format(i) for i in range(config["encoder_num_layers"])] +
            [DECODER.format(i) for i in range(config["decoder_num_layers"])])


FAMILIES = [Family(
    keras_hub.models.MoonshineBackbone, embedding="token_embedding", keys=_KEYS,
    rotary=True, block=ENCODER, block_names=_blocks, identity="pre", zero=ZERO,
    targets=_targets, request=_request,
    # conv1 (127, stride 64), conv2 (7, 3), conv3 (3, 2): 3000 samples give 6 frames.
    input_lengths={"encoder_input_values": 3000, "encoder_padding_mask": 3000},
    append_blocks=seq2seq.make_append_blocks(
        ZERO, own_weights, stacks=(ENCODER, DECODER),
        layers=("encoder_num_layers", "decoder_num_layers")))]
