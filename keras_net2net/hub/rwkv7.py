"""RWKV-7: a token embedding into pre-LN `RWKV7_Block`s: a time mix (token
shift mixes per channel, receptance/key/value projections into heads x
head_size channels, low-rank decay / in-context-rate / value-residual / gate
paths, a per-head generalised delta-rule recurrence, a per-head group norm,
the output projection) and a channel mix (token shift, relu^2 feed-forward);
a final LayerNorm and a Dense head.

Widths: `hidden_size` (the stream and, with the head size kept, the heads:
hidden_size = heads x head_size) and `intermediate_dim`. A copied head copies
its receptance/key/value columns, its decay, rate, k_k, k_a and r_k entries,
its low-rank write columns and its group-norm channels: its state evolves
as the original's, and the output projection divides its rows. Every block
shares one head mapping: block 0's values (`v_first`) are mixed into every
later block's. The low-rank ranks are kept. Integer factors only: block 0
replaces the stream by its initial LayerNorm's output, so no pad kind suits
every norm that reads it.

Deeper: a copy of a block after the first (block 0 alone holds the initial
norm and no value-residual path) with its output projection and
feed-forward output zero: x + 0 + 0 = x, `v_first` passed on.

Reaches keras_hub internals: `keras_hub.src.models.rwkv7.rwkv7_layer` (the
block's class, for its rule).
"""

import math

import keras_hub
from keras_hub.src.models.rwkv7 import rwkv7_layer

from keras_net2net import errors
from keras_net2net.channels import Layout
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
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
CHANNELS = "head_channels"  # heads x head_size, head-major
TM, CM = "RWKV_TIME_MIX", "RWKV_CMIX"


class RWKV7BlockRule(composite.CompositeRule):
    """RWKV7_Block: x + time_mix(ln1(x)), x + channel_mix(ln2(x))."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.hidden_size // l.head_size),
        "head_size": composite.Inner(HEAD_DIM, lambda l: l.head_size, on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim,
                                            config_key="intermediate_dim"),
    }
    specs = {
        f"{TM}/x_[rwkvag]": [(0, IN, COPY)],
        f"{TM}/(w0|a0|v0|k_k|k_a)": [(0, CHANNELS, COPY)],
        f"{TM}/(w1|a1|v1|g1)": [(0, IN, DIVIDE)],
        f"{TM}/(w2|a2|v2|g2)": [(1, CHANNELS, COPY)],
        f"{TM}/r_k": [(0, HEADS, COPY)],
        f"{TM}/(receptance|key|value)/kernel": [(0, IN, DIVIDE), (1, CHANNELS, COPY)],
        f"{TM}/output_layer/kernel": [(0, CHANNELS, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
        f"{TM}/group_normalization(_\\d+)?/(gamma|beta)": [(0, CHANNELS, COPY)],
        f"{CM}/time_mix_k": [(0, IN, COPY)],
        f"{CM}/dense_k/kernel": [(0, IN, DIVIDE), (1, FFN, COPY)],
        f"{CM}/dense_v/kernel": [(0, FFN, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
        **{k: v for n in ("init_norm", "att_norm", "ffn_norm")
           for k, v in hub_layers.norm_specs(n).items()},
    }

    def derived_roles(self, inner):
        (heads,) = inner[HEADS].segments
        return {CHANNELS: Layout(None, (type(heads)(heads.atom, heads.width,
                                                    inner[HEAD_DIM].size),))}

    def propagate(self, ctx, call):
        v_first = _v_first(call)
        seq2seq.propagate_with_memory(self, ctx, call, v_first)
        channels = ctx.io[id(call.op)].layouts[CHANNELS]
        out = call.outputs[1]
        ctx.layouts[out] = Layout(ctx.rank(out) - 1, channels.segments)
        if v_first is not None:  # block 0's values: one head mapping for all
            ctx.unify(ctx.layout(v_first), ctx.layouts[out], call.path)

    def pad_constraints(self, solver, call, ins, outs, where):
        if call.op.use_initial_norm:
            raise ValueError(
                f"{where} replaces the stream by its initial LayerNorm's output (zero "
                "pads), which its own and later blocks' norms read as the stream (mean "
                "pads): no pad kind keeps both exact")
        for key in (composite.first_tensor(call), call.outputs[0]):
            solver.require(key, self.pad_kind, where)


def _v_first(call):
    value = call.args[1] if len(call.args) > 1 else call.kwargs.get("v_first")
    return value if isinstance(value, TensorKey) else None


def _targets(family, config, widen):
    d, k, f = config["hidden_size"], config["head_size"], config["intermediate_dim"]
    if widen is None:
        return {"hidden": d, "intermediate": f}
    if families.is_number(widen):
        families.check_factor(widen)
        return {"hidden": math.ceil(d // k * widen - 1e-9) * k,
                "intermediate": math.ceil(f * widen - 1e-9)}
    if not isinstance(widen, dict) or set(widen) - {"hidden_size", "intermediate_dim"}:
        raise errors.PlanError(
            f"Expected widen to be a factor or a dict of 'hidden_size' and "
            f"'intermediate_dim' for RWKV7Backbone. Received: widen={widen!r}. Fix: e.g. "
            f"widen={{'hidden_size': {2 * d}}}.")
    hidden = hub_backbone.requested_width("hidden_size", widen.get("hidden_size", d), d)
    if hidden % k:
        raise errors.PlanError(
            f"Expected hidden_size to be a multiple of head_size {k} (hidden_size = heads x "
            f"head_size, and the head size is kept). Received: hidden_size={hidden}. Fix: "
            f"hidden_size={math.ceil(hidden / k) * k}.")
    return {"hidden": hidden, "intermediate": hub_backbone.requested_width(
        "intermediate_dim", widen.get("intermediate_dim", f), f)}


def _request(ctx, family, config, targets):
    request = {"token_embedding": targets["hidden"]}
    for i in range(config["num_layers"]):
        request[family.block.format(i)] = {
            "num_heads": targets["hidden"] // config["head_size"],
            "intermediate_dim": targets["intermediate"]}
    return request


def _not_first(config, new_config, inserts):
    if 0 in inserts:
        last = config["num_layers"] - 1
        raise errors.PlanError(
            f"Expected deepen to name a block after the first: rwkv_layer_0 alone holds the "
            f"initial norm and no value-residual weights, so a copy of it is no block of the "
            f"class at another index. Received: deepen after 'rwkv_layer_0'. Fix: "
            f"deepen=['rwkv_layer_{max(last, 1)}']" + ("" if last else " (with 2+ blocks)") + ".")


ZERO = (f"{TM}/output_layer/kernel", f"{CM}/dense_v/kernel")

TABLE = {rwkv7_layer.RWKV7_Block: RWKV7BlockRule()}

FAMILIES = [Family(
    keras_hub.models.RWKV7Backbone, embedding="token_embedding", block="rwkv_layer_{}",
    keys={"hidden": "hidden_size", "intermediate": "intermediate_dim", "layers": "num_layers"},
    identity="pre", zero=ZERO, targets=_targets, request=_request, deepen_config=_not_first)]
