"""PARSeq: a ViT image encoder (keras_net2net.hub.vit, whose rules grow it)
and a `PARSeqDecoder` (one layer: a token embedding scaled by
sqrt(hidden_dim), a position-query table, pre-LN two-stream blocks of self
attention, cross attention over the image features and a ViT MLP, a final
LayerNorm) into a Dense head over the vocabulary.

Widths: the image encoder's `hidden_dim`, `num_heads`, `mlp_dim` (its own
family's rules; the config is the nested `image_encoder`) and the decoder's
`decoder_hidden_dim`, `num_decoder_heads`, `decoder_mlp_dim` (head dims
kept). keras_hub builds the cross attention's keys and values from the
decoder's width, so the two model widths must stay equal. The decoder
stream is its own group (cross-attention key/value rows follow the image
stream's mapping, divided by its counts). Pre-LN throughout: at non-integer
factors the decoder stream takes mean pads (its writers' columns mean-filled).

The decoder multiplies its token embeddings by sqrt(hidden_dim): the
student's table is scaled by sqrt(D / D') after the copy (`_finish`).

Deeper: `deepen=["decoder"]` appends identity decoder blocks (self- and
cross-attention outputs and `mlp/dense_2` zero: x + 0 + 0 + 0 = x, whatever
the content stream the block reads), `deepen=["vit_encoder"]` identity ViT
blocks; both rebuild the widened student with more layers.

Reaches keras_hub internals: `keras_hub.src.models.parseq.parseq_decoder`
(the decoder layer's class, for its rule).
"""

import math
import re

import keras_hub
import numpy as np
from keras_hub.src.models.parseq import parseq_decoder

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import families
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub import seq2seq
from keras_net2net.hub import vit
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import require_axis

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
_BLOCK = r"decoder_layer_\d+"
_WIDTH = "decoder_width"


class PARSeqDecoderRule(composite.CompositeRule):
    """PARSeqDecoder: produces the decoder width from token ids, reads the
    image features (`memory`) through its cross attentions."""

    residual = False
    norms = True
    inner = {
        # The stream, also an inner width so that one request names it and
        # the heads (`widen={"decoder": {"hidden_dim": ...}}`).
        "hidden_dim": composite.Inner(_WIDTH, lambda l: l.hidden_dim),
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads, config_key="num_heads"),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.hidden_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.mlp_dim, config_key="mlp_dim"),
    }
    specs = {
        "pos_query_embeddings": [(2, OUT, COPY, MEAN_FILL)],
        "token_embedding/embeddings": [(1, OUT, COPY, MEAN_FILL)],
        **hub_layers.attention_specs(f"{_BLOCK}/self_attention"),
        **seq2seq.cross_attention_specs(f"{_BLOCK}/cross_attention"),
        **{k: v for name in ("query_layer_norm", "content_layer_norm", "ln_1", "ln_2")
           for k, v in hub_layers.norm_specs(f"{_BLOCK}/{name}").items()},
        **hub_layers.ffn_specs(f"{_BLOCK}/mlp/dense_1", f"{_BLOCK}/mlp/dense_2"),
        **hub_layers.norm_specs("layer_norm"),
    }

    def propagate(self, ctx, call):
        memory = call.kwargs.get("memory", call.args[1] if len(call.args) > 1 else None)
        for key in call.inputs:
            if key != memory:
                ctx.groups.freeze_layout(ctx.layout(key), (
                    f"PARSeqDecoder {call.path!r} reads it as token ids or a mask"))
        mem = ctx.layout(memory) if memory is not None else None
        if memory is None or not require_axis(ctx, call, mem, ctx.rank(memory) - 1,
                                              role="image-feature width"):
            mem = None
        # The decoder stream: written by the embeddings, read by every block's
        # norms and projections (IN) and written back (OUT), one group.
        out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
        inner = composite.inner_roles(self, ctx, call, out)
        ctx.unify(out, inner.pop(_WIDTH), call.path)
        ctx.record_io(call, **{IN: out, OUT: out, seq2seq.MEMORY: mem}, **inner)

    def pad_constraints(self, solver, call, ins, outs, where):
        # Pre-LN inside: the decoder stream takes mean pads (its writers'
        # columns are mean-filled); the image features are read through
        # kernel rows only.
        for key in outs:
            solver.require(key, self.pad_kind, where)


ZERO = (r"(self|cross)_attention/attention_output/(kernel|bias)", r"mlp/dense_2/(kernel|bias)")
_NESTED = "image_encoder"


def _targets(family, config, widen):
    """Decoder widths (head dim kept) and, under "image_encoder", the ViT's
    config with its widths grown by its own family's targets."""
    encoder = dict(config[_NESTED])
    inner = dict(encoder["config"])
    vit_family = families.family_of(keras_hub.models.ViTBackbone)
    own = {"hidden_dim": "decoder_hidden_dim", "num_heads": "num_decoder_heads",
           "mlp_dim": "decoder_mlp_dim"}
    if isinstance(widen, dict):
        unknown = sorted(set(widen) - set(own.values()))
        if unknown:
            raise errors.PlanError(
                f"Expected widen keys among {sorted(own.values())} for PARSeqBackbone (the "
                f"image encoder follows the decoder: keras_hub's cross attention reads it "
                f"with the decoder's width). Received: widen={widen!r}. Fix: name those keys.")
        widen_vit = {k: widen[v] for k, v in own.items() if v in widen}
    else:
        widen_vit = widen
    grown_vit = vit_family.targets or hub_backbone.default_targets
    vit_targets = grown_vit(vit_family, inner, widen_vit)
    dec_family = Family(family.backbone, embedding="decoder", keys={
        "hidden": "decoder_hidden_dim", "heads": "num_decoder_heads",
        "intermediate": "decoder_mlp_dim", "layers": "num_decoder_layers"})
    dec_widen = widen if not isinstance(widen, dict) else {
        v: widen[v] for v in own.values() if v in widen}
    targets = hub_backbone.default_targets(dec_family, config, dec_widen)
    if targets["hidden"] != vit_targets["hidden"]:
        raise errors.PlanError(
            f"Expected the image encoder and the decoder to keep one width (keras_hub's "
            f"cross attention reads the image features with the decoder's width). Received: "
            f"widen={widen!r} gives decoder_hidden_dim={targets['hidden']} and the ViT's "
            f"hidden_dim={vit_targets['hidden']}. Fix: widen=2.0, or widths with the same "
            f"head dim ({config['decoder_hidden_dim'] // config['num_decoder_heads']}) in both.")
    inner.update({"hidden_dim": vit_targets["hidden"], "num_heads": vit_targets["heads"],
                  "mlp_dim": vit_targets["intermediate"]})
    encoder["config"] = inner
    targets[_NESTED] = encoder
    return targets


def _request(ctx, family, config, targets):
    vit_config = targets[_NESTED]["config"]
    width, heads = vit_config["hidden_dim"], vit_config["num_heads"]
    return {"vit_patching_and_embedding": width,
            "vit_encoder": {"num_heads": heads, "head_dim": width // heads,
                            "intermediate_dim": vit_config["mlp_dim"]},
            "decoder": {"hidden_dim": targets["hidden"], "num_heads": targets["heads"],
                        "head_dim": targets["hidden"] // targets["heads"],
                        "intermediate_dim": targets["intermediate"]}}


def _finish(ctx, plan, teacher, student):
    """The decoder scales its token embeddings by sqrt(hidden_dim): the
    student's copied table by sqrt(D / D') computes the teacher's values."""
    table = student.get_layer("decoder").token_embedding.embeddings
    scale = math.sqrt(teacher.decoder_hidden_dim / student.decoder_hidden_dim)
    table.assign(table.numpy() * np.asarray(scale, table.dtype))


# Containers of blocks: (config holding the count, its key, block pattern).
_STACKS = ({"nested": True, "key": "num_layers", "block": r"(.*transformer_block_)(\d+)/(.*)",
            "first": 1, "zero": vit.ZERO},
           {"nested": False, "key": "num_decoder_layers", "block": r"(.*decoder_layer_)(\d+)/(.*)",
            "first": 0, "zero": ZERO})


def _append_blocks(task, student, inserts):
    """The widened student rebuilt with more blocks at the end of each
    container named (block_names order: the ViT encoder, the decoder); every
    weight copied by path, a new block a copy of its stack's last block with
    its writers zero."""
    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    counts = {}
    for index, stack in enumerate(_STACKS):
        holder = config[_NESTED]["config"] if stack["nested"] else config
        counts[index] = holder[stack["key"]]
        holder[stack["key"]] += inserts.get(index, 0)
    deeper, made = hub_backbone.build_student(task, backbone, config)
    # The head is auto-named (dense_<n>): keyed by the deeper one's name.
    head = re.compile("^" + re.escape(backbone.head.name) + "/")
    new_head = (deeper.backbone if task is not None else deeper).head.name + "/"
    source = {head.sub(new_head, v.path): v for v in student.weights}
    for variable in deeper.weights:
        old = source.get(variable.path)
        if old is None:
            old = _from_last_block(variable, source, counts, deeper)
        lazy.set_value(variable, old if isinstance(old, np.ndarray) else old.numpy())
    lazy.initialize_rest(deeper.variables + made)
    return deeper


def _from_last_block(variable, source, counts, deeper):
    for index, stack in enumerate(_STACKS):
        match = re.fullmatch(stack["block"], variable.path)
        last = stack["first"] + counts[index] - 1
        if match is None or int(match.group(2)) <= last:
            continue
        value = source[f"{match.group(1)}{last}/{match.group(3)}"].numpy()
        if any(re.fullmatch(z, match.group(3)) for z in stack["zero"]):
            value = np.zeros_like(value)
        return value
    raise errors.UnsupportedModelError(
        f"Expected the deeper {type(deeper).__name__} to hold the grown model's weights and "
        f"new blocks only. Received: a weight {variable.path!r} of neither. This is a bug in "
        f"keras-net2net's keras_hub support: please report it.")


TABLE = {parseq_decoder.PARSeqDecoder: PARSeqDecoderRule()}

FAMILIES = [Family(
    keras_hub.models.PARSeqBackbone, embedding="decoder",
    keys={"hidden": "decoder_hidden_dim", "heads": "num_decoder_heads",
          "intermediate": "decoder_mlp_dim", "layers": "num_decoder_layers"},
    block_names=lambda config: ["vit_encoder", "decoder"], identity="pre", zero=ZERO,
    targets=_targets, request=_request, finish=_finish, append_blocks=_append_blocks,
    pairs=mit.pair_layers)]
