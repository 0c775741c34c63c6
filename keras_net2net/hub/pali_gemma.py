"""PaliGemma: a ViT (`PaliGemmaVit`: patch embedding, pre-LN blocks, a final
LayerNorm, a Dense `image_classifier` into the text width) whose image tokens
are prefixed to the text tokens of a Gemma decoder (Gemma 1 or 2 blocks, a
tied embedding times sqrt(hidden_dim), a (1 + scale) final RMS norm).

Widths: the decoder's, as Gemma's (keras_net2net.hub.gemma: `hidden_dim`,
key-value heads with their query heads, `intermediate_dim`; `head_dim`
kept). The image tokens join the text stream by a concatenation on the
sequence axis, so the `image_classifier` Dense is one more writer of the
stream: its columns are copied (zero pads at non-integer factors), its rows
read the ViT's width, which is kept. The ViT's own widths (`vit_hidden_dim`,
`vit_num_heads`, `vit_intermediate_dim`) have no rule: its encoder is one
container layer (`PaliGemmaVitEncoder`) that produces its width from the
image and holds its inner widths too, which one layer request cannot name
both of; a request for them is refused, typed.

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
from keras_net2net.hub import gemma
from keras_net2net.hub.families import Family

VIT_KEYS = ("vit_hidden_dim", "vit_num_heads", "vit_intermediate_dim")


def _targets(family, config, widen):
    asked = [k for k in (widen if isinstance(widen, dict) else ()) if k in VIT_KEYS]
    if asked:
        raise errors.PlanError(
            f"Expected widen keys of PaliGemmaBackbone's decoder (hidden_dim, "
            f"num_key_value_heads, num_query_heads, intermediate_dim). Received: "
            f"widen={{{asked[0]!r}: {widen[asked[0]]!r}}}: the ViT's widths live in one "
            f"PaliGemmaVitEncoder container, which keras-net2net has no rule for (they are "
            f"kept). Fix: grow the decoder (e.g. widen=2.0), which reads the ViT through its "
            f"image_classifier Dense.")
    return gemma.grow_targets(family, config, widen)


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


TABLE = {pali_gemma_decoder_block.PaliGemmaDecoderBlock: gemma.GemmaDecoderRule()}

FAMILIES = [Family(
    keras_hub.models.PaliGemmaBackbone, embedding="token_embedding", block="decoder_block_{}",
    identity="pre", zero=gemma.ZERO, rotary=True, tied_norm="final_normalization",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"},
    targets=_targets, request=gemma.layer_request_of, finish=gemma.finish_student, pairs=_pairs,
    deepen_config=gemma.sliding_pattern(2, 1))]
