"""Gemma: pre-norm decoder blocks with (1 + scale) RMS norms, grouped-query
attention with rotary embeddings and an explicit `head_dim`, a GeGLU
feed-forward of `intermediate_dim // 2` units, and a tied token embedding
whose output is multiplied by sqrt(hidden_dim).

Widths: `hidden_dim` (zero pads at non-integer factors: RMS norms read
them), `num_key_value_heads` (each copied with its query heads, so
`num_query_heads` = kv heads x the same repeats), `intermediate_dim` (the
GeGLU width is half of it, so it stays even). `head_dim` is a config key of
its own and is kept: rotary embeddings rotate each pair of head dims at a
frequency fixed by its index in the head, and queries are scaled by
1 / sqrt(head_dim).

Three things differ from Llama:
- The norms multiply by (1 + scale): the norm scale modes act on 1 + scale
  (`NORM_SCALE_ONE_PLUS`), so a tied final norm gets (1 + s') = (1 + s) / c.
- The embedding output is multiplied by sqrt(hidden_dim), which grows with the
  width: the copied embedding columns are multiplied by sqrt(D / D') so that
  the stream is the teacher's. The tied LM head reads those columns too, so
  the final norm's (1 + scale) is multiplied by sqrt(D' / D) (`finish_student`); the
  backbone output is the teacher's divided by the copy counts (as GPT-2's) and
  by sqrt(D / D'), which `readout` undoes.
- Gemma 2's post-attention / post-feed-forward norms (`use_post_*_norm`)
  normalise a writer's output into the stream: the writer's columns are
  copies (times the stream's 1 / sqrt(s) at non-integer factors, zero pads),
  whose mean square is the teacher's, so the norm's (1 + scale) is copied
  as it is. Soft-capped attention logits and final logits are unchanged
  (every score and logit is the teacher's). Sliding-window attention only
  masks positions, but Gemma 2 alternates it by block index, so identity
  blocks go after the last block or two at a time (`sliding_pattern`).
"""

import math

import keras_hub
import numpy as np
from keras_hub.src.models.gemma import gemma_decoder_block
from keras_hub.src.models.gemma import rms_normalization

from keras_net2net import errors
from keras_net2net.channels import Product
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.hub.families import check_factor
from keras_net2net.hub.families import is_number
from keras_net2net.hub.backbone import requested_width
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import NORM_SCALE_DIVIDED
from keras_net2net.rules.base import NORM_SCALE_DIVIDED_ONE_PLUS
from keras_net2net.rules.base import NORM_SCALE_ONE_PLUS
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import ZERO_FILL

KV, REPEATS, QUERY_HEADS = "kv_heads", "repeats", "query_heads"
HEAD_DIM, FFN = hub_layers.HEAD_DIM, hub_layers.FFN
# The GeGLU width (intermediate_dim // 2): not named "intermediate_dim",
# whose config value is twice it.
FFW_UNITS = "ffw_units"


class GemmaRMSNormRule(hub_layers.RMSNormLastAxis):
    """keras_hub's Gemma RMSNormalization: x / rms(x) * (1 + scale)."""

    _ONE_PLUS = {NORM_SCALE: NORM_SCALE_ONE_PLUS, NORM_SCALE_DIVIDED: NORM_SCALE_DIVIDED_ONE_PLUS}

    def weight_axes(self, layer, io):
        axes = super().weight_axes(layer, io)
        return {name: [(a, role, self._ONE_PLUS.get(mode, mode), *rest)
                       for a, role, mode, *rest in spec]
                for name, spec in axes.items() if name == self.scale_name}


class GemmaDecoderRule(composite.CompositeRule):
    """GemmaDecoderBlock: x + attention(rms(x)), x + geglu(rms(x))."""

    norms = True
    pad_kind = "zero"
    inner = {
        "num_key_value_heads": composite.Inner(KV, lambda l: l.num_key_value_heads,
                                               config_key="num_key_value_heads"),
        "num_repeats": composite.Inner(
            REPEATS, lambda l: l.num_query_heads // l.num_key_value_heads, on_request=True),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.head_dim, on_request=True),
        FFW_UNITS: composite.Inner(FFN, lambda l: l.intermediate_dim // _reduction(l)),
    }
    specs = {
        "pre_attention_norm/scale": [(0, IN, NORM_SCALE_ONE_PLUS)],
        "pre_ffw_norm/scale": [(0, IN, NORM_SCALE_ONE_PLUS)],
        "attention/query/kernel": [(0, QUERY_HEADS, COPY), (1, IN, DIVIDE),
                                   (2, HEAD_DIM, QUERY_DIMS)],
        "attention/key/kernel": [(0, KV, COPY), (1, IN, DIVIDE), (2, HEAD_DIM, COPY)],
        "attention/value/kernel": [(0, KV, COPY), (1, IN, DIVIDE), (2, HEAD_DIM, COPY)],
        "attention/attention_output/kernel": [
            (0, QUERY_HEADS, DIVIDE), (1, HEAD_DIM, DIVIDE), (2, OUT, COPY, ZERO_FILL)],
        "ffw_gating/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "ffw_gating_2/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "ffw_linear/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, ZERO_FILL)],
        # Gemma 2's post-norms normalise a writer's output before it joins the
        # stream: their output is a writer's, so their (1 + scale) is copied
        # as it is (no sqrt(s): the writer before them already carries the
        # stream's 1 / sqrt(s), which the norm's mean square undoes), pads 0.
        "post_attention_norm/scale": [(0, IN, COPY, ZERO_FILL)],
        "post_ffw_norm/scale": [(0, IN, COPY, ZERO_FILL)],
    }

    def derived_roles(self, inner):
        return {QUERY_HEADS: Product(inner[KV], inner[REPEATS])}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        config["num_query_heads"] = plan.width(io.layouts[QUERY_HEADS])
        config["head_dim"] = plan.width(io.layouts[HEAD_DIM])
        config["intermediate_dim"] = config.get("gate_dim_reduction", 2) * plan.width(
            io.layouts[FFN])
        return config


def _reduction(layer):
    """The GeGLU width is intermediate_dim // this (Gemma 1 and 2: 2, Gemma 3: 1)."""
    return getattr(layer, "gate_dim_reduction", 2)


def grow_targets(family, config, widen, reduction=2):
    """{"hidden", "heads" (kv), "query_heads", "intermediate"}: Gemma's head
    dim is its own config key, kept; hidden_dim is free of it. The GeGLU
    width is intermediate_dim // `reduction`."""
    name = family.backbone.__name__
    d, h, q, f = (config[k] for k in ("hidden_dim", "num_key_value_heads", "num_query_heads",
                                      "intermediate_dim"))
    r = q // h
    out = {"hidden": d, "heads": h, "query_heads": q, "intermediate": f}
    if widen is None:
        return out
    if is_number(widen):
        check_factor(widen)
        heads = math.ceil(h * widen - 1e-9)
        out = {"hidden": math.ceil(d * widen - 1e-9), "heads": heads, "query_heads": heads * r,
               "intermediate": reduction * math.ceil(f // reduction * widen - 1e-9)}
    elif isinstance(widen, dict):
        names = {"hidden_dim": "hidden", "num_key_value_heads": "heads",
                 "num_query_heads": "query_heads", "intermediate_dim": "intermediate"}
        for key, value in widen.items():
            if key == "head_dim":
                raise errors.PlanError(
                    f"Expected widen keys among {sorted(names)} for {name}: its head dim "
                    f"is kept (rotary embeddings fix the frequency of each head dim, and queries "
                    f"are scaled by 1 / sqrt(head_dim)). Received: widen={{'head_dim': "
                    f"{value!r}}}. Fix: grow num_key_value_heads (with num_query_heads) instead.")
            if key not in names:
                raise errors.PlanError(
                    f"Expected widen keys among {sorted(names)} for {name}. Received: "
                    f"widen={{{key!r}: {value!r}}}. Fix: name one of those config keys (layers "
                    f"grow with deepen=).")
            out[names[key]] = requested_width(key, value, out[names[key]])
        if "num_query_heads" in widen and "num_key_value_heads" not in widen:
            out["heads"] = out["query_heads"] // r
        out["query_heads"] = out["heads"] * r if "num_query_heads" not in widen \
            else out["query_heads"]
        if out["query_heads"] != out["heads"] * r:
            raise errors.PlanError(
                f"Expected num_query_heads = num_key_value_heads x {r} (each kv head keeps its "
                f"{r} query heads). Received: num_query_heads={out['query_heads']} and "
                f"num_key_value_heads={out['heads']}. Fix: num_query_heads="
                f"{out['heads'] * r}.")
        if out["intermediate"] % reduction:
            raise errors.PlanError(
                f"Expected an even intermediate_dim (GemmaDecoderBlock uses intermediate_dim "
                f"// 2 units). Received: widen={{'intermediate_dim': {out['intermediate']}}}. "
                f"Fix: intermediate_dim={out['intermediate'] + 1}.")
    else:
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'hidden_dim': {2 * d}}}. Received: widen={widen!r} ({type(widen).__name__}).")
    if not config.get("query_head_dim_normalize", True) and \
            out["hidden"] // out["query_heads"] != d // q:
        raise errors.PlanError(
            f"Expected hidden_dim // num_query_heads to stay {d // q}: with "
            f"query_head_dim_normalize=False GemmaAttention scales queries by 1 / sqrt(hidden_dim"
            f" // num_query_heads). Received: hidden_dim={out['hidden']} and num_query_heads="
            f"{out['query_heads']}. Fix: hidden_dim={out['query_heads'] * (d // q)}.")
    return out


def layer_request_of(ctx, family, config, targets, reduction=2):
    request = {family.embedding: targets["hidden"]}
    inner = {"num_key_value_heads": targets["heads"], FFW_UNITS: targets["intermediate"] // reduction}
    for name in family.blocks(config):
        request[name] = inner
    return request


def finish_student(ctx, plan, teacher, student, one_plus=True):
    """The sqrt(hidden_dim) embedding scale: columns times sqrt(D / D'), the
    tied final norm's (1 + scale) times sqrt(D' / D) (its scale, where the
    norm multiplies by the scale itself: `one_plus=False`, Gemma 4)."""
    ratio = math.sqrt(teacher.hidden_dim / student.hidden_dim)
    if ratio == 1.0:
        return
    table = student.token_embedding.embeddings
    table.assign((np.asarray(table.numpy(), np.float64) * ratio).astype(table.dtype))
    scale = student.get_layer("final_normalization").scale
    one = 1.0 if one_plus else 0.0
    value = (one + np.asarray(scale.numpy(), np.float64)) / ratio - one
    scale.assign(value.astype(scale.dtype))
    for layer_id, layer in ctx.graph.layers.items():
        if layer is teacher.get_layer("final_normalization") and layer_id in ctx.io:
            ctx.io[layer_id].extra["readout_scale"] = ratio


def sliding_pattern(period, local, key="use_sliding_window_attention",
                    block="decoder_block_{}"):
    """A `deepen_config` for backbones whose blocks alternate local
    (sliding-window) and global attention by index: block i is local iff
    i % period < local (Gemma 2: period 2, local 1; Gemma 3: period 6, local
    5, and each block's rotary wavelength follows it). An identity block is
    exact anywhere, but it moves every later block to another index: an
    insertion is refused where a moved block would change its attention.

    Args:
        period, local: the pattern, as above.
        key: the config key that switches the pattern on.
        block: the block name, with "{}" for its index.

    Returns:
        function (config, new config, inserts) raising `PlanError` for an
        insertion that changes a block's attention.
    """
    def is_local(i):
        return i % period < local

    def check(config, new_config, inserts):
        if not config.get(key):
            return
        last = config["num_layers"] - 1
        for anchor, count in sorted(inserts.items()):
            moved = [i for i in range(anchor + 1, last + 1)
                     if is_local(i) != is_local(i + sum(c for a, c in inserts.items() if a < i))]
            if moved:
                name, last_name = block.format(anchor), block.format(last)
                raise errors.PlanError(
                    f"Expected identity blocks that leave every block's attention as it is: "
                    f"with {key}={config[key]!r} the blocks alternate sliding-window (local) and "
                    f"global attention by index (period {period}), so the insertion moves "
                    f"{block.format(moved[0])!r} to the other attention. Received: "
                    f"deepen={{{name!r}: {count}}}. Fix: deepen={{{name!r}: "
                    f"{period * max(1, -(-count // period))}}} (whole periods) or "
                    f"deepen=[{last_name!r}], which stay exact.")
    return check


ZERO = (r"attention/attention_output/kernel", r"ffw_linear/kernel")

TABLE = {gemma_decoder_block.GemmaDecoderBlock: GemmaDecoderRule(),
         rms_normalization.RMSNormalization: GemmaRMSNormRule()}

FAMILIES = [Family(
    keras_hub.models.GemmaBackbone, embedding="token_embedding", block="decoder_block_{}",
    identity="pre", zero=ZERO, rotary=True, tied_norm="final_normalization",
    keys={"hidden": "hidden_dim", "heads": "num_key_value_heads",
          "intermediate": "intermediate_dim", "layers": "num_layers",
          "query_heads": "num_query_heads"},
    targets=grow_targets, request=layer_request_of, finish=finish_student,
    deepen_config=sliding_pattern(2, 1))]
