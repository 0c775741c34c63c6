"""T5Gemma: an encoder stack and a decoder stack of Gemma 2 style blocks
((1 + scale) RMS pre- and post-norms, grouped-query attention with an
explicit `head_dim`, rotary self attention, soft-capped logits, a gated
feed-forward of `intermediate_dim` units), each with its own token embedding
times sqrt(its width); the decoder blocks cross-attend to the encoder output
(keras_net2net.hub.seq2seq), and the decoder's embedding is tied to the LM
head of `T5GemmaSeq2SeqLM`.

Widths, each stack its own (`encoder_*`, `decoder_*`): the hidden width (a
group per stream, zero pads at non-integer factors: RMS norms read them),
the key-value heads (each copied with its query heads: the repeats are
kept), the feed-forward width. `head_dim` is kept (rotary frequencies, and
queries scaled by `query_pre_attn_scalar`, no head-dim term). Each embedding
is multiplied by sqrt(its width), so its copied columns are multiplied by
sqrt(D / D'); a tied LM head reads the decoder's columns too, so its final
norm's (1 + scale) (divided for the tie) takes sqrt(D' / D) back.

Deeper: a copy of the anchor block with its attention, cross-attention and
feed-forward output projections zero; the post-norms map 0 to 0, so the
block adds nothing. The stacks are independent (`encoder_num_layers`,
`decoder_num_layers`), and the inserted block takes its anchor's
`layer_types` entry, so no other block changes its attention.

keras_hub internals: the block classes (`keras_hub.src.models.t5gemma`),
whose sublayers the rules address by path. The backbone's final norms are
auto-named (a global counter), so layers pair by graph order
(`keras_net2net.hub.mit.pair_layers`).

Example:

```python
student = n2n.expand_model(t5gemma, widen=2.0,
                           deepen=["encoder_layer_1", "decoder_layer_0"])
```
"""

import math
import re

import keras_hub
import numpy as np
from keras_hub.src.models.t5gemma import t5gemma_decoder
from keras_hub.src.models.t5gemma import t5gemma_encoder

from keras_net2net import errors
from keras_net2net import graph as graph_lib
from keras_net2net import lazy
from keras_net2net.channels import Product
from keras_net2net.hub import gemma
from keras_net2net.hub import mit
from keras_net2net.hub import seq2seq
from keras_net2net.hub.backbone import build_student
from keras_net2net.hub.backbone import requested_width
from keras_net2net.hub.families import Family
from keras_net2net.hub.families import check_factor
from keras_net2net.hub.families import is_number
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE_ONE_PLUS
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import QUERY_DIMS
from keras_net2net.rules.base import ZERO_FILL

KV, REPEATS, QUERY_HEADS = gemma.KV, gemma.REPEATS, gemma.QUERY_HEADS
HEAD_DIM, FFN = gemma.HEAD_DIM, gemma.FFN
ENCODER, DECODER = "encoder_layer_{}", "decoder_layer_{}"
STACKS = ("encoder", "decoder")


def attention_specs(prefix, kv_rows=IN):
    """A T5Gemma/Gemma 3 style attention at `prefix`: EinsumDense query
    `(width, heads, head dim)`, key/value `(width, kv heads, head dim)`
    (rows from `kv_rows`: the encoder's stream in cross attention), output
    `(heads, head dim, width)`; biases where `attention_bias`."""
    return {
        f"{prefix}/query/kernel": [(0, IN, DIVIDE), (1, QUERY_HEADS, COPY),
                                   (2, HEAD_DIM, QUERY_DIMS)],
        f"{prefix}/query/bias": [(0, QUERY_HEADS, COPY), (1, HEAD_DIM, QUERY_DIMS)],
        f"{prefix}/(key|value)/kernel": [(0, kv_rows, DIVIDE), (1, KV, COPY), (2, HEAD_DIM, COPY)],
        f"{prefix}/(key|value)/bias": [(0, KV, COPY), (1, HEAD_DIM, COPY)],
        f"{prefix}/attention_output/kernel": [(0, QUERY_HEADS, DIVIDE), (1, HEAD_DIM, DIVIDE),
                                              (2, OUT, COPY, ZERO_FILL)],
        f"{prefix}/attention_output/bias": [(0, OUT, COPY, ZERO_FILL)],
    }


def sandwich_norm_specs(names):
    """Gemma 2 style norms: `pre_*` read the stream ((1 + scale) scaled for
    its pads), `post_*` normalise a writer's output (copied as it is: see
    keras_net2net.hub.gemma)."""
    pre = "|".join(f"{p}pre_{n}" for p, n in names)
    post = "|".join(f"{p}post_{n}" for p, n in names)
    return {f"({pre})/scale": [(0, IN, NORM_SCALE_ONE_PLUS)],
            f"({post})/scale": [(0, IN, COPY, ZERO_FILL)]}


MLP = {"mlp/(gate_proj|up_proj)/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
       "mlp/down_proj/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, ZERO_FILL)]}

INNER = {
    "num_key_value_heads": composite.Inner(KV, lambda l: l.num_key_value_heads,
                                           config_key="num_key_value_heads"),
    "num_repeats": composite.Inner(
        REPEATS, lambda l: l.num_attention_heads // l.num_key_value_heads, on_request=True),
    "head_dim": composite.Inner(HEAD_DIM, lambda l: l.head_dim, on_request=True),
    "intermediate_size": composite.Inner(FFN, lambda l: l.intermediate_size,
                                         config_key="intermediate_size"),
}


class T5GemmaEncoderRule(composite.CompositeRule):
    """T5GemmaEncoderLayer: x + post(attn(pre(x))), x + post(mlp(pre(x)))."""

    norms = True
    pad_kind = "zero"
    inner = INNER
    width_key = "hidden_size"
    specs = {**attention_specs("self_attention"),
             **sandwich_norm_specs([("", "self_attention_layernorm"),
                                    ("", "feedforward_layernorm")]),
             **MLP}

    def derived_roles(self, inner):
        return {QUERY_HEADS: Product(inner[KV], inner[REPEATS])}

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        config["num_attention_heads"] = plan.width(io.layouts[QUERY_HEADS])
        if io.layouts.get(IN) is not None:
            config["hidden_size"] = plan.width(io.layouts[IN])
        return config


class T5GemmaDecoderRule(T5GemmaEncoderRule):
    """T5GemmaDecoderLayer: the encoder block's sublayers with a cross
    attention between them, called on (stream, encoder output): its keys
    and values read the encoder's stream (`seq2seq.MEMORY`)."""

    specs = {**attention_specs("self_attention"),
             **attention_specs("cross_attention", kv_rows=seq2seq.MEMORY),
             **sandwich_norm_specs([("decoder_", "self_attention_layernorm"),
                                    ("decoder_", "cross_attention_layernorm"),
                                    ("decoder_", "feedforward_layernorm")]),
             **MLP}

    def propagate(self, ctx, call):
        stream, memory = call.args[0]
        seq2seq.propagate_with_memory(self, ctx, call, memory, stream=stream)

    def pad_constraints(self, solver, call, ins, outs, where):
        seq2seq.stream_pad_constraints(self, solver, call, ins, outs, where, call.args[0][1])

    def edit_config(self, config, io, plan):
        config = super().edit_config(config, io, plan)
        if io.layouts.get(seq2seq.MEMORY) is not None:
            config["cross_attention_hidden_size"] = plan.width(io.layouts[seq2seq.MEMORY])
        return config


def _keys(stack):
    return {"hidden": f"{stack}_hidden_dim", "kv": f"{stack}_num_key_value_heads",
            "query": f"{stack}_num_attention_heads", "ffn": f"{stack}_intermediate_dim"}


def grow_targets(family, config, widen):
    """Every width key of both stacks; "hidden"/"heads"/"intermediate" (the
    driver's names) are the encoder's."""
    out = {key: config[key] for stack in STACKS for key in _keys(stack).values()}
    if widen is not None and not is_number(widen) and not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'encoder_hidden_dim': {2 * config['encoder_hidden_dim']}}}. Received: "
            f"widen={widen!r} ({type(widen).__name__}).")
    if is_number(widen):
        check_factor(widen)
        widen = {key: float(widen) for key in out if "attention_heads" not in key}
    for key, value in (widen or {}).items():
        if key not in out or "attention_heads" in key:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(k for k in out if 'attention_heads' not in k)}"
                f" for {family.backbone.__name__} (query heads follow their key-value heads; "
                f"head_dim is kept: rotary frequencies). Received: widen={{{key!r}: {value!r}}}. "
                f"Fix: name one of those config keys (layers grow with deepen=).")
        out[key] = requested_width(key, value, config[key])
    for stack in STACKS:
        k = _keys(stack)
        out[k["query"]] = out[k["kv"]] * (config[k["query"]] // config[k["kv"]])
    if out["encoder_hidden_dim"] != config["encoder_hidden_dim"] and \
            config["cross_attention_hidden_size"] == config["encoder_hidden_dim"]:
        out["cross_attention_hidden_size"] = out["encoder_hidden_dim"]
    e = _keys("encoder")
    out["hidden"], out["heads"], out["intermediate"] = (
        out.pop(e["hidden"]), out.pop(e["kv"]), out.pop(e["ffn"]))
    return out


def _stack_targets(targets, stack):
    k = _keys(stack)
    if stack == "encoder":
        return targets["hidden"], targets["heads"], targets["intermediate"]
    return targets[k["hidden"]], targets[k["kv"]], targets[k["ffn"]]


def layer_request(ctx, family, config, targets):
    request = {}
    for stack, block in zip(STACKS, (ENCODER, DECODER)):
        hidden, kv, ffn = _stack_targets(targets, stack)
        request[f"{stack}_token_embedding"] = hidden
        for i in range(config[f"{stack}_num_layers"]):
            request[block.format(i)] = {"num_key_value_heads": kv, "intermediate_size": ffn}
    return request


def block_names(config):
    return ([ENCODER.format(i) for i in range(config["encoder_num_layers"])] +
            [DECODER.format(i) for i in range(config["decoder_num_layers"])])


def finish_student(ctx, plan, teacher, student):
    """Each embedding's output is multiplied by sqrt(its width): its copied
    columns times sqrt(D / D'); a decoder norm divided for a tied LM head
    (keras_net2net.rules.composite) takes sqrt(D' / D) back in (1 + scale)."""
    for stack, name in zip(STACKS, ("token_embedding", "decoder_token_embedding")):
        ratio = math.sqrt(getattr(teacher, f"{stack}_hidden_dim") /
                          getattr(student, f"{stack}_hidden_dim"))
        if ratio == 1.0:
            continue
        table = getattr(student, name).embeddings
        table.assign((np.asarray(table.numpy(), np.float64) * ratio).astype(table.dtype))
        if stack != "decoder":
            continue
        io = next((ctx.io.get(i) for i, layer in ctx.graph.layers.items()
                   if layer is teacher.decoder_norm), None)
        if io is not None and io.extra.get("tied_divide"):
            scale = student.decoder_norm.scale
            value = (1.0 + np.asarray(scale.numpy(), np.float64)) / ratio - 1.0
            scale.assign(value.astype(scale.dtype))


ZERO = (r"(self|cross|merged)_attention/attention_output/(kernel|bias)", r"mlp/down_proj/kernel")


def append_blocks(task, student, inserts):
    """The widened student rebuilt with more blocks in either stack; each
    inserted block takes its anchor's weights (writers zero) and its
    `layer_types` entry."""
    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    n_enc = config["encoder_num_layers"]
    stacks = []
    for stack, block, start in (("encoder", ENCODER, 0), ("decoder", DECODER, n_enc)):
        n = config[f"{stack}_num_layers"]
        mine = {i - start: c for i, c in inserts.items() if start <= i < start + n}
        types = []
        for i, kind in enumerate(config[f"{stack}_layer_types"]):
            types += [kind] * (1 + mine.get(i, 0))
        config[f"{stack}_layer_types"] = types
        config[f"{stack}_num_layers"] = len(types)
        stacks.append((block, n, mine))
    deeper, made = build_student(task, backbone, config)
    new_backbone = deeper.backbone if task is not None else deeper
    rest = [(a, b) for a, b in zip(_outside_blocks(backbone), _outside_blocks(new_backbone))]
    seq2seq.write_deeper(backbone, new_backbone, stacks, rest, ZERO)
    lazy.initialize_rest(deeper.variables + made)
    return deeper


def _outside_blocks(backbone):
    """The layers with weights outside the blocks, in graph order."""
    graph = graph_lib.Graph(backbone)
    return [graph.layers[i] for i in graph.layers
            if getattr(graph.layers[i], "weights", None) and
            not re.fullmatch(r"(en|de)coder_layer_\d+", graph.layers[i].name)]


TABLE = {t5gemma_encoder.T5GemmaEncoderLayer: T5GemmaEncoderRule(),
         t5gemma_decoder.T5GemmaDecoderLayer: T5GemmaDecoderRule()}

FAMILIES = [Family(
    keras_hub.models.T5GemmaBackbone, embedding="encoder_token_embedding", block=ENCODER,
    keys={"hidden": "encoder_hidden_dim", "heads": "encoder_num_key_value_heads",
          "intermediate": "encoder_intermediate_dim", "layers": "encoder_num_layers"},
    block_names=block_names, identity="pre", zero=ZERO, rotary=True,
    targets=grow_targets, request=layer_request, finish=finish_student,
    pairs=mit.pair_layers, append_blocks=append_blocks)]
