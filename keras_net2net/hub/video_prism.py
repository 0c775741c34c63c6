"""VideoPrism (vision): frames folded into the batch, a patch Dense plus a
spatial position table, a pre-LN `spatial_encoder` (blocks and a final
LayerNorm), a temporal position table added after regrouping tokens by
patch (B x patches, frames, width), a pre-LN `temporal_encoder`, and the
factorised decoding back to (B, frames, patches, width).

Widths: `hidden_dim` (one stream through both encoders: the reshapes keep
the width last), `num_heads` (head dim kept: EinsumDense q/k/v `(width,
heads, head dim)` copy whole heads, the 1 / sqrt(head dim) scale and the
optional logit soft cap see the teacher's scores), `intermediate_dim`.
Whole multiples only: the spatial encoder's final LayerNorm writes the
temporal encoder's stream, and a LayerNorm's output carries zero pads at
the teacher's scale where a padded stream needs mean pads at 1 / sqrt(s)
(at integer factors nothing is padded). The text tower (`num_text_layers`
> 0) is refused typed: its embedding adds sinusoidal positions whose
frequencies follow `hidden_dim`, so no wider text stream copies the old one.

Deeper: each encoder is one container (as ViT's), so
`deepen=["spatial_encoder"]` / `["temporal_encoder"]` appends identity
blocks at its end (copies of its last block with `mha/output` and
`mlp/dense_2` zero). Reaches keras_hub internals
(`keras_hub.src.models.video_prism.video_prism_layers`) for the layer
classes.
"""

import re

import keras_hub
from keras_hub.src.models.video_prism import video_prism_layers as vp_layers

from keras_net2net import errors
from keras_net2net.channels import Layout
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub import swin
from keras_net2net.hub import vit
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import require_axis

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
_BLOCK = r"transformer_block_\d+"
LAYERS = {"spatial_encoder": "num_spatial_layers", "temporal_encoder": "num_temporal_layers"}
ZERO = (r"mha/output/(kernel|bias)", r"mlp/dense_2/(kernel|bias)")


def _attention_specs(prefix):
    """hub_layers' MultiHeadAttention specs, VideoPrism's sublayer names."""
    return {key.replace("attention_output", "output"): spec
            for key, spec in hub_layers.attention_specs(prefix).items()}


class EncoderRule(vit.ViTEncoderRule):
    """VideoPrismEncoder: pre-LN blocks x + mha(ln_1(x)), x + mlp(ln_2(x)),
    then (with `use_final_layernorm`) ln."""

    inner = {**vit.ViTEncoderRule.inner,
             "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                                 config_key="intermediate_dim")}
    specs = {
        **_attention_specs(f"{_BLOCK}/mha"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_1"),
        **hub_layers.norm_specs(f"{_BLOCK}/ln_2"),
        **hub_layers.ffn_specs(f"{_BLOCK}/mlp/dense_1", f"{_BLOCK}/mlp/dense_2"),
        **hub_layers.norm_specs("ln"),
    }

    def refuse(self, layer):
        if any(block.mha.use_per_dim_scale for block in layer.encoder_layers):
            return "its attention scales queries per dim (a weight of the head dim); kept"
        return None


class PatchEmbeddingRule(composite.CompositeRule):
    """VideoPrismPatchingAndEmbedding: flattened patches through a Dense plus
    a position table: the producer of the stream."""

    residual = False
    width_key = "hidden_dim"
    specs = {"patch_embedding/kernel": [(1, OUT, COPY, MEAN_FILL)],
             "patch_embedding/bias": [(0, OUT, COPY, MEAN_FILL)],
             "position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}


class TemporalEmbeddingRule(composite.CompositeRule):
    """VideoPrismTemporalEmbedding: tokens regrouped by patch (the width stays
    last), plus a `(frames, width)` table: a writer on the stream."""

    specs = {"temporal_position_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)]}
    width_key = "hidden_dim"

    def edit_config(self, config, io, plan):
        if io.layouts.get(IN) is not None:
            config["hidden_dim"] = plan.width(io.layouts[IN])
        return config


class FactorizedDecodingRule(composite.CompositeRule):
    """VideoPrismFactorizedDecoding: (B x patches, frames, width) to (B,
    frames, patches, width): a move, the width last on both sides."""

    def propagate(self, ctx, call):
        stream = call.inputs[0]
        layout = ctx.layout(stream)
        out_key = call.outputs[0]
        if not require_axis(ctx, call, layout, ctx.rank(stream) - 1, role="model-width"):
            ctx.fresh(out_key, ctx.rank(out_key) - 1, call.path, frozen=(
                f"{type(call.op).__name__} {call.path!r} writes the width it reads, "
                "which is kept"))
            return
        out = Layout(ctx.rank(out_key) - 1, layout.segments)
        ctx.layouts[out_key] = out
        ctx.record_io(call, **{IN: layout, OUT: out})

    def edit_config(self, config, io, plan):
        return TemporalEmbeddingRule.edit_config(self, config, io, plan)


def targets(family, config, widen):
    """`default_targets` at whole multiples only (module docstring)."""
    if config.get("num_text_layers", 0) > 0:
        raise errors.UnsupportedModelError(
            f"Expected a vision-only VideoPrismBackbone (num_text_layers=0). Received: "
            f"num_text_layers={config['num_text_layers']}: its text embedding "
            f"(VideoPrismEmbedding) adds sinusoidal positions whose frequencies are set by "
            f"hidden_dim, so a wider text stream holds other frequencies, no copies of the old "
            f"ones; and its VideoPrismAttenTokenPoolingLayer has no growth rule. Fix: grow a "
            f"vision-only VideoPrismBackbone with the same vision config and copy its weights "
            f"into the vision tower.")
    out = hub_backbone.default_targets(family, config, widen)
    mit.integer_factor(
        "VideoPrismBackbone", out["hidden"] / config["hidden_dim"] if widen is not None else 1,
        "hidden_dim with num_heads (intermediate_dim grows by any amount)",
        "the spatial encoder's final LayerNorm writes the temporal encoder's stream, and a "
        "LayerNorm's output takes no mean pads")
    return out


def append_blocks(task, student, inserts):
    """Identity blocks at the end of each named encoder (module docstring)."""
    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    names = list(LAYERS)
    counts = {names[i]: config[LAYERS[names[i]]] for i in inserts}

    def deeper(config):
        for i, count in inserts.items():
            config[LAYERS[names[i]]] += count
        return config

    def source_of(path):
        match = re.fullmatch(rf"(.*({'|'.join(counts)})/transformer_block_)(\d+)/(.*)", path)
        if match is None:
            return None
        rest = match.group(4)
        return (f"{match.group(1)}{counts[match.group(2)] - 1}/{rest}",
                any(re.fullmatch(z, rest) for z in ZERO))
    return swin.append_by_path(task, student, deeper, source_of)


TABLE = {vp_layers.VideoPrismEncoder: EncoderRule(),
         vp_layers.VideoPrismPatchingAndEmbedding: PatchEmbeddingRule(),
         vp_layers.VideoPrismTemporalEmbedding: TemporalEmbeddingRule(),
         vp_layers.VideoPrismFactorizedDecoding: FactorizedDecodingRule()}

FAMILIES = [Family(
    keras_hub.models.VideoPrismBackbone, embedding="spatial_patching_and_embedding",
    block_names=lambda config: list(LAYERS), identity="pre", zero=ZERO, targets=targets,
    keys={"hidden": "hidden_dim", "heads": "num_heads", "intermediate": "intermediate_dim",
          "layers": "num_spatial_layers"},
    append_blocks=append_blocks)]
