"""T5: one token embedding shared by an encoder stack and a decoder stack of
`T5TransformerLayer`s: pre-norm RMS blocks (`T5LayerNorm`, no mean, no
shift), attention without 1 / sqrt(d) whose q/k/v kernels are
`(width, heads x head dim)` flattened, relative position buckets (a
`(buckets, heads)` table in each stack's first block, whose bias every later
block of the stack reuses), cross attention in the decoder blocks (keras_net2net.
hub.seq2seq) and a gated (or plain) feed-forward.

Widths: `hidden_dim` (both streams: one group; zero pads at non-integer
factors, RMS norms read them), `num_heads` (the head dim, `key_value_dim`, is
kept: each copied head copies its query, key and value columns and its
bucket column), `intermediate_dim`. The blocks of a stack share one head
mapping: they add the bias of the first block's heads to their own heads'
scores.

Deeper: one encoder block and one decoder block (num_layers counts both),
each a copy of its anchor with its attention, cross-attention and
feed-forward output projections zero: x + 0 + 0 + 0 = x. An inserted block is
never a stack's first, so it reuses the bias as the blocks after it do.

Example:

```python
t5 = keras_hub.models.T5Backbone(vocabulary_size=50, num_layers=2, num_heads=2,
                                 hidden_dim=16, intermediate_dim=32)
n2n.expand_model(t5, widen=1.5)   # a T5Backbone, hidden_dim 24, num_heads 3
```
"""

import math
import re

import keras_hub
import numpy as np
from keras_hub.src.models.t5 import t5_layer_norm
from keras_hub.src.models.t5 import t5_transformer_layer

from keras_net2net import errors
from keras_net2net.channels import Product
from keras_net2net.graph import TensorKey
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import families
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import seq2seq
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
QKV = "qkv"  # the flattened (heads, head dim) axis of T5's q/k/v kernels
_NORM = r"t5_layer_norm(_\d+)?"  # auto-named: a global counter


class T5LayerRule(composite.CompositeRule):
    """T5TransformerLayer: x + attn(rms(x)) [+ cross(rms(x), encoder)] +
    ffn(rms(x)); its second output is the position bias the next block of
    the stack reads (heads on axis 1), so the two share one head mapping."""

    norms = True
    pad_kind = "zero"
    epsilon_key = "layer_norm_epsilon"
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.self_attention.num_heads),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.self_attention.key_value_dim,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.input_projector.units),
    }
    specs = {
        "embeddings": [(1, HEADS, COPY)],  # the relative position buckets (first block)
        "(self|cross)_attention/query_projector/kernel": [(0, IN, DIVIDE), (1, QKV, COPY)],
        "self_attention/(key|value)_projector/kernel": [(0, IN, DIVIDE), (1, QKV, COPY)],
        "cross_attention/(key|value)_projector/kernel": [(0, seq2seq.MEMORY, DIVIDE),
                                                         (1, QKV, COPY)],
        "(self|cross)_attention/output_projector/kernel": [(0, QKV, DIVIDE),
                                                           (1, OUT, COPY, ZERO_FILL)],
        f"{_NORM}/weight": [(0, IN, NORM_SCALE)],
        "(input|gate)_projector/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        "output_projector/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, ZERO_FILL)],
    }

    def derived_roles(self, inner):
        return {QKV: Product(inner[HEADS], inner[HEAD_DIM])}

    def propagate(self, ctx, call):
        seq2seq.propagate_with_memory(self, ctx, call,
                                      seq2seq.memory_of(call, "encoder_hidden_states"))
        bias = call.kwargs.get("position_bias")
        producer = ctx.graph.producers.get(bias) if isinstance(bias, TensorKey) else None
        if producer is None:
            return
        theirs = ctx.inner_atoms.get(id(producer.op), {}).get("num_heads")
        mine = ctx.inner_atoms.get(id(call.op), {}).get("num_heads")
        if theirs is None or mine is None:  # read from a layer without heads: keep them
            ctx.groups.freeze(mine if mine is not None else theirs, (
                f"T5TransformerLayer {call.path!r} adds a position bias of unknown heads"))
            return
        ctx.groups.union(theirs, mine, call.path)

    def pad_constraints(self, solver, call, ins, outs, where):
        seq2seq.stream_pad_constraints(self, solver, call, ins, outs, where,
                                       seq2seq.memory_of(call, "encoder_hidden_states"))


class T5LayerNormRule(hub_layers.RMSNormLastAxis):
    """T5LayerNorm: x * rsqrt(mean(x^2) + epsilon) * weight."""

    scale_name = "weight"


TABLE = {t5_transformer_layer.T5TransformerLayer: T5LayerRule(),
         t5_layer_norm.T5LayerNorm: T5LayerNormRule()}

ZERO = (r"(self|cross)_attention/output_projector/kernel", r"output_projector/kernel")


def _own_weights(block):
    """A block's weights keyed by path below it, its norms by their order
    (their names carry a global counter)."""
    out, norms = [], 0
    prefix = block.name + "/"
    for variable in block.weights:
        key = variable.path.split(prefix, 1)[1] if prefix in variable.path else variable.name
        if re.fullmatch(f"{_NORM}/weight", key):
            key, norms = f"norm_{norms}/weight", norms + 1
        out.append((key, variable))
    return out


def _free_head_dim(config):
    k = config.get("key_value_dim")
    return k is not None and k != config["hidden_dim"] // config["num_heads"]


def _targets(family, config, widen):
    """The default targets, where the head dim is hidden_dim // num_heads;
    where the config sets `key_value_dim` apart from that, it is kept and
    the widths grow by the factor each."""
    if not _free_head_dim(config):
        return hub_backbone.default_targets(family, config, widen)
    d, h, f = config["hidden_dim"], config["num_heads"], config["intermediate_dim"]
    if widen is None:
        return {"hidden": d, "heads": h, "intermediate": f}
    if families.is_number(widen):
        families.check_factor(widen)
        return {key: math.ceil(v * widen - 1e-9)
                for key, v in (("hidden", d), ("heads", h), ("intermediate", f))}
    if not isinstance(widen, dict):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 or a dict of config keys, e.g. "
            f"{{'hidden_dim': {2 * d}}}. Received: widen={widen!r} ({type(widen).__name__}).")
    names = {"hidden_dim": "hidden", "num_heads": "heads", "intermediate_dim": "intermediate"}
    out = {"hidden": d, "heads": h, "intermediate": f}
    for key, value in widen.items():
        if key not in names:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(names)} for T5Backbone (its key_value_dim "
                f"is kept). Received: widen={{{key!r}: {value!r}}}. Fix: name one of those "
                f"config keys (layers grow with deepen=).")
        out[names[key]] = hub_backbone.requested_width(key, value, out[names[key]])
    return out


def _request(ctx, family, config, targets):
    """The layer request, the head dim left out (kept: `key_value_dim`)."""
    request = hub_backbone.layer_request(ctx, family, config, targets)
    for name in family.blocks(config):
        request[name] = {k: v for k, v in request[name].items() if k != "head_dim"}
    return request


def _finish(ctx, plan, teacher, student):
    """A tied T5Seq2SeqLM multiplies the decoder's output by hidden_dim **
    -0.5 before its reverse embedding, and the student by its own (larger)
    hidden_dim ** -0.5: its final decoder norm (divided for the tied head,
    keras_net2net.rules.composite.tied_source) takes sqrt(D' / D) back."""
    factor = math.sqrt(student.hidden_dim / teacher.hidden_dim)
    for layer_id, layer in ctx.graph.layers.items():
        io = ctx.io.get(layer_id)
        if layer.name == "decoder_output_layer_norm" and io is not None and \
                io.extra.get("tied_divide") and factor != 1.0:
            weight = student.get_layer(layer.name).weight
            weight.assign(weight.numpy() * np.asarray(factor, weight.dtype))


FAMILIES = [Family(
    keras_hub.models.T5Backbone, embedding="token_embedding",
    block=seq2seq.ENCODER, block_names=seq2seq.two_stacks, identity="pre", zero=ZERO,
    targets=_targets, request=_request, finish=_finish,
    append_blocks=seq2seq.make_append_blocks(ZERO, _own_weights))]
