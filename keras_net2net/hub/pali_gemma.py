"""PaliGemma: a ViT (`PaliGemmaVit`: patch embedding, pre-LN blocks, a final
LayerNorm, a Dense `image_classifier` into the text width) whose image tokens
are prefixed to the text tokens of a Gemma decoder (Gemma 1 or 2 blocks, a
tied embedding times sqrt(hidden_dim), a (1 + scale) final RMS norm).

Widths: the decoder's, as Gemma's (keras_net2net.hub.gemma: `hidden_dim`,
key-value heads with their query heads, `intermediate_dim`; `head_dim`
kept). The image tokens join the text stream by a concatenation on the
sequence axis, so the `image_classifier` Dense is one more writer of the
stream (zero pads at non-integer factors). The ViT's widths
(`vit_hidden_dim`, `vit_num_heads` with the head dim kept,
`vit_intermediate_dim`) grow by whole multiples: its encoder container
(`PaliGemmaVitEncoder`, one rule: `VitEncoderRule`) normalises with
LayerNorms, for which no pad kind is worked out; so `widen=2.0` grows both,
`widen=1.5` the decoder only, and a non-multiple `vit_hidden_dim` is
refused, typed. The container produces the ViT's width and holds its inner
widths, so the request names it twice: by name (its width) and by path (its
heads and MLP width).

Deeper: decoder blocks, as Gemma's (identity blocks whose attention output
and GeGLU output projections are zero; with sliding windows, only insertions
that keep every block's local / global attention).

keras_hub internals: `PaliGemmaDecoderBlock` (a `GemmaDecoderBlock`
subclass; the same rule).

Example:

```python
student = n2n.expand_model(pali_gemma, widen=2.0, deepen=["decoder_block_1"])
```
"""

import re

import keras_hub
from keras_hub.src.models.pali_gemma import pali_gemma_decoder_block
from keras_hub.src.models.pali_gemma import pali_gemma_vit as vit_lib

from keras_net2net import errors
from keras_net2net import makers
from keras_net2net.hub.backbone import block_renamer
from keras_net2net.channels import Product
from keras_net2net.hub import gemma
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.backbone import requested_width
from keras_net2net.hub.families import is_number
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import OUT
from keras_net2net.hub.families import Family

VIT_KEYS = ("vit_hidden_dim", "vit_num_heads", "vit_intermediate_dim")
HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
_BLOCK = r"encoder_block_\d+"
QKV = "qkv"  # the flat (heads, head dim) axis of the ViT's projections


class VitEncoderRule(composite.CompositeRule):
    """PaliGemmaVitEncoder: patch embedding and positions, pre-LN blocks
    (LayerNorm, attention with flat (width, heads x head dim) projections,
    LayerNorm, a GELU MLP), a final LayerNorm: a producer of the ViT's width
    with its heads and MLP width inside. LayerNorms everywhere, and no pad
    kind worked out for them: whole copies only."""

    residual = False
    width_key = "hidden_dim"
    inner = {
        # Named as the backbone's config keys (the decoder's are its blocks').
        "vit_num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "vit_head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                        on_request=True),
        "vit_intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                                config_key="intermediate_dim"),
    }
    specs = {
        "encoder_embeddings/embedding_conv/kernel": [(3, OUT, COPY)],
        "encoder_embeddings/embedding_conv/bias": [(0, OUT, COPY)],
        "encoder_embeddings/position_embedding/embeddings": [(1, OUT, COPY)],
        f"{_BLOCK}/multi_head_attention/(query|key|value)_proj/kernel": [(0, OUT, DIVIDE),
                                                                         (1, QKV, COPY)],
        f"{_BLOCK}/multi_head_attention/(query|key|value)_proj/bias": [(0, QKV, COPY)],
        f"{_BLOCK}/multi_head_attention/out_proj/kernel": [(0, QKV, DIVIDE), (1, OUT, COPY)],
        f"{_BLOCK}/mlp_dense_1/kernel": [(0, OUT, DIVIDE), (1, FFN, COPY)],
        f"{_BLOCK}/mlp_dense_1/bias": [(0, FFN, COPY)],
        f"{_BLOCK}/mlp_dense_2/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY)],
        # Whole copies: a LayerNorm's mean and variance are the teacher's.
        f"({_BLOCK}/(layer_norm_[12]|multi_head_attention/out_proj|mlp_dense_2)"
        f"|encoder_layer_norm)/(gamma|beta|bias)": [(0, OUT, COPY)],
    }

    def derived_roles(self, inner):
        return {QKV: Product(inner[HEADS], inner[HEAD_DIM])}

    def propagate(self, ctx, call):
        super().propagate(ctx, call)
        out = ctx.layout(call.outputs[0])
        if out is not None:
            ctx.groups.require_blocks(out.segments[0].atom, 1, (
                f"PaliGemmaVitEncoder {call.path!r} normalises its width with LayerNorms, so "
                "every channel must be copied equally (an integer widening factor)"))


def _vit_path(ctx):
    return next(ctx.graph.paths[i] for i, layer in ctx.graph.layers.items()
                if isinstance(layer, vit_lib.PaliGemmaVitEncoder))


def _targets(family, config, widen):
    vit = {k: v for k, v in (widen.items() if isinstance(widen, dict) else ())
           if k in VIT_KEYS}
    text = {k: v for k, v in widen.items() if k not in VIT_KEYS} \
        if isinstance(widen, dict) else widen
    targets = gemma.grow_targets(family, config, text or None)
    if is_number(widen) and float(widen).is_integer():  # the ViT's LayerNorms: whole copies
        vit = {"vit_hidden_dim": int(widen) * config["vit_hidden_dim"],
               "vit_num_heads": int(widen) * config["vit_num_heads"],
               "vit_intermediate_dim": int(widen) * config["vit_intermediate_dim"]}
    for key, value in list(vit.items()):
        vit[key] = requested_width(key, value, config[key])
    if "vit_hidden_dim" in vit and "vit_num_heads" not in vit:
        vit["vit_num_heads"] = vit["vit_hidden_dim"] // (
            config["vit_hidden_dim"] // config["vit_num_heads"])
    hidden = vit.get("vit_hidden_dim", config["vit_hidden_dim"])
    if hidden % config["vit_hidden_dim"]:
        raise errors.PlanError(
            f"Expected vit_hidden_dim to grow by a whole multiple: PaliGemmaVitEncoder "
            f"normalises it with LayerNorms (no pad kind is worked out for them). Received: "
            f"vit_hidden_dim={hidden} from {config['vit_hidden_dim']}. Fix: vit_hidden_dim="
            f"{-(-hidden // config['vit_hidden_dim']) * config['vit_hidden_dim']}.")
    heads = vit.get("vit_num_heads", config["vit_num_heads"])
    if hidden % heads or hidden // heads != config["vit_hidden_dim"] // config["vit_num_heads"]:
        k = config["vit_hidden_dim"] // config["vit_num_heads"]
        raise errors.PlanError(
            f"Expected vit_hidden_dim // vit_num_heads to stay {k} (PaliGemma's ViT derives "
            f"its head dim from them). Received: vit_hidden_dim={hidden} and vit_num_heads="
            f"{heads}. Fix: vit_num_heads={hidden // k} with vit_hidden_dim a multiple of {k}.")
    return {**targets, **vit}


def _request(ctx, family, config, targets):
    request = gemma.layer_request_of(ctx, family, config, targets)
    path = _vit_path(ctx)
    request[path.split("/")[-1]] = targets.get("vit_hidden_dim", config["vit_hidden_dim"])
    request[path] = {key: targets.get(key, config[key])
                     for key in ("vit_num_heads", "vit_intermediate_dim")}
    return request


def _pairs(ctx, family, student, inserts):
    """By path, blocks after an insertion moved down, and the ViT (a nested
    model, auto-named: `pali_gemma_vit_1` in the student) under its new name."""
    teacher = next(layer for layer in ctx.graph.layers.values()
                   if isinstance(layer, vit_lib.PaliGemmaVit))
    backbone = student.backbone if isinstance(student, keras_hub.models.Task) else student
    vit = re.compile(f"(^|/){re.escape(teacher.name)}(?=/|$)")
    rename = block_renamer(family, inserts)
    return makers.pair_by_path(ctx, student, lambda path: rename(
        vit.sub(lambda m: m.group(1) + backbone.vit_encoder.name, path)))


TABLE = {pali_gemma_decoder_block.PaliGemmaDecoderBlock: gemma.GemmaDecoderRule(),
         vit_lib.PaliGemmaVitEncoder: VitEncoderRule()}

FAMILIES = [Family(
    keras_hub.models.PaliGemmaBackbone, embedding="token_embedding", block="decoder_block_{}",
    identity="pre", zero=gemma.ZERO, rotary=True, tied_norm="final_normalization",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"},
    targets=_targets, request=_request, finish=gemma.finish_student, pairs=_pairs,
    deepen_config=gemma.sliding_pattern(2, 1))]
