"""ViTDet (and SAM's image encoder): a patch Conv2D, an absolute position
table, pre-LN `WindowedTransformerEncoder` blocks (windowed or global
attention with decomposed relative positions), and a neck (Conv2D 1x1,
LayerNorm, Conv2D 3x3, LayerNorm) to `num_output_channels`.

Widths: `hidden_size` (the stream; mean pads at non-integer factors: the
blocks are pre-LN and the neck reads it through a convolution),
`num_heads`, `intermediate_dim`. The head dim (hidden_size // num_heads) is
kept: the relative position tables `(2 size - 1, head dim)` are shared by
all heads, so copied heads read them unchanged, while a grown head dim would
need them rescaled against the query's QUERY_DIMS scale; a request that
changes it is a typed PlanError. The neck keeps `num_output_channels` (its
output is the interface SAM's prompt encoder and mask decoder read) unless
`widen={"num_output_channels": n}` names it (whole multiples: the neck's
LayerNorms read it; the grown output is read back through its mapping).

keras_hub auto-names the blocks and their sublayers (global counters), so
the block rule reads weights by build order, layers pair by graph order
(`mit.pair_layers`), and blocks are named by index: `deepen=["block_1"]`
adds an identity block (a copy with the attention projection and the MLP's
last Dense zero) after the second block, with the anchor's attention kind
(`global_attention_layer_indices` shifted). Reaches keras_hub internals
(`keras_hub.src.models.vit_det.vit_layers`) for the layer classes.
"""

import keras
import keras_hub
import numpy as np
from keras_hub.src.models.vit_det import vit_layers

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.channels import Product
from keras_net2net.graph import Graph
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub import mit
from keras_net2net.hub.families import Family
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import MEAN_FILL
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import ZERO_FILL

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
QKV, QKV_PART, HEADS_X_DIM = "qkv_x_heads_x_dim", "q_k_or_v", "heads_x_dim"
KEYS = {"hidden": "hidden_size", "heads": "num_heads", "intermediate": "intermediate_dim",
        "layers": "num_layers"}


def fused_qkv_roles(inner):
    """A fused qkv Dense's output axis `(3, heads, head dim)` and the
    projection's input axis `(heads, head dim)`, flattened."""
    return {QKV: Product(Product(inner[QKV_PART], inner[HEADS]), inner[HEAD_DIM]),
            HEADS_X_DIM: Product(inner[HEADS], inner[HEAD_DIM])}


def norm(role=IN):
    return [[(0, role, NORM_SCALE)], [(0, role, COPY, ZERO_FILL)]]


def dense(role_in, role_out, bias=True, fill=None):
    out = (1, role_out, COPY) + ((fill,) if fill else ())
    specs = [[(0, role_in, DIVIDE), out]]
    return specs + ([[(0, role_out, COPY) + ((fill,) if fill else ())]] if bias else [])


class WindowedBlockRule(composite.CompositeRule):
    """WindowedTransformerEncoder: x + attn(ln1(x)), x + mlp(ln2(x)); the
    fused qkv Dense is `(width, 3 x heads x head dim)`, the projection
    `(heads x head dim, width)`."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.project_dim // l.num_heads,
                                    on_request=True),
        "intermediate_dim": composite.Inner(FFN, lambda l: l.intermediate_dim),
        QKV_PART: composite.Inner(QKV_PART, lambda l: 3, on_request=True),
    }

    def derived_roles(self, inner):
        return fused_qkv_roles(inner)

    def weight_axes(self, layer, io):
        specs = norm() + norm()  # layer_norm1, layer_norm2 (built first)
        specs += dense(IN, QKV, bias=layer.use_bias)
        specs += [[(0, HEADS_X_DIM, DIVIDE), (1, OUT, COPY, MEAN_FILL)],
                  [(0, OUT, COPY, MEAN_FILL)]]  # projection
        if layer.use_rel_pos:
            specs += [[], []]  # rel_pos_h, rel_pos_w: (positions, head dim), kept
        specs += dense(IN, FFN) + dense(FFN, OUT, fill=MEAN_FILL)
        if len(specs) != len(layer.weights):
            raise errors.UnsupportedModelError(
                f"Expected {len(specs)} weights in {type(layer).__name__} {layer.name!r} (its "
                f"build order in keras_hub {keras_hub.__version__}). Received: "
                f"{len(layer.weights)}. Fix: grow a plain functional copy of the backbone.")
        return {i: spec for i, spec in enumerate(specs) if spec}

    def edit_config(self, config, io, plan):
        if io.layouts.get(IN) is not None:
            config["project_dim"] = plan.width(io.layouts[IN])
        for key, role in (("num_heads", HEADS), ("intermediate_dim", FFN)):
            if io.layouts.get(role) is not None:
                config[key] = plan.width(io.layouts[role])
        return config


class PatchEmbeddingRule(composite.CompositeRule):
    """ViTDetPatchingAndEmbedding: a strided Conv2D, the producer of the
    stream (`embed_dim`)."""

    residual = False
    width_key = "embed_dim"
    specs = {"(.*/)?kernel": [(3, OUT, COPY, MEAN_FILL)],
             "(.*/)?bias": [(0, OUT, COPY, MEAN_FILL)]}


class AddPositionRule(hub_layers.PositionEmbeddingRule):
    """AddPositionalEmbedding: x + a `(1, h, w, width)` table, a writer."""

    weights = {"pos_embed": [(3, OUT, COPY)]}


def _blocks(graph):
    """The teacher's WindowedTransformerEncoder layers in graph order."""
    return [c.op for c in graph.calls if isinstance(c.op, vit_layers.WindowedTransformerEncoder)]


def block_names(config):
    return [f"block_{i}" for i in range(config["num_layers"])]


def targets(family, config, widen):
    """`default_targets`, refusing a request that changes the head dim; the
    neck's `num_output_channels` grows only when named (whole multiples:
    the neck's LayerNorms read it)."""
    neck = config["num_output_channels"]
    if isinstance(widen, dict) and "num_output_channels" in widen:
        widen = dict(widen)
        neck = hub_backbone.requested_width(
            "num_output_channels", widen.pop("num_output_channels"), config["num_output_channels"])
        if neck % config["num_output_channels"]:
            raise errors.PlanError(
                f"Expected num_output_channels to grow by a whole multiple: the neck of "
                f"{family.backbone.__name__} normalises it with LayerNorms, whose outputs "
                f"cannot carry pads. Received: widen={{'num_output_channels': {neck}}}. Fix: "
                f"num_output_channels={2 * config['num_output_channels']}.")
    out = hub_backbone.default_targets(family, config, widen)
    k = config["hidden_size"] // config["num_heads"]
    if out["hidden"] != out["heads"] * k:
        raise errors.PlanError(
            f"Expected the head dim (hidden_size // num_heads) of {family.backbone.__name__} "
            f"to stay {k}: its relative position tables (2 * size - 1, head dim) are shared "
            f"by all heads and read by the unscaled queries, so a grown head dim has no exact "
            f"copy. Received: hidden_size={out['hidden']} and num_heads={out['heads']}. Fix: "
            f"num_heads={out['hidden'] // k if out['hidden'] % k == 0 else '...'} with "
            f"hidden_size a multiple of {k} (e.g. widen=2.0).")
    return {**out, "num_output_channels": neck}


def request(ctx, family, config, targets):
    """The per-layer request: the patch embedding and every block by the
    teacher's own (auto) names, and the neck's convolutions (the graph's
    only Conv2D calls: the patch one lives inside its layer) where named."""
    embedding = next(c.op for c in ctx.graph.calls
                     if isinstance(c.op, vit_layers.ViTDetPatchingAndEmbedding))
    inner = {"num_heads": targets["heads"], "intermediate_dim": targets["intermediate"]}
    out = {embedding.name: targets["hidden"], **{b.name: inner for b in _blocks(ctx.graph)}}
    neck = targets.get("num_output_channels", config["num_output_channels"])
    if neck != config["num_output_channels"]:
        out.update({c.op.name: neck for c in ctx.graph.calls
                    if isinstance(c.op, keras.layers.Conv2D)})
    return out


ZERO = ("projection", "mlp")  # the attention output and the MLP's last Dense


def identity_block(block):
    """Zero the writers of a copied block: x + 0 + 0 = x."""
    for variable in block.attention.projection.weights + \
            block.mlp_block.dense_net.layers[-1].weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))


def deeper_config(config, inserts):
    """`num_layers` and `global_attention_layer_indices` with `inserts`
    ({block index: count}) added, each new block of its anchor's kind."""
    config = dict(config)
    old = list(config["global_attention_layer_indices"])
    shift = [sum(c for a, c in inserts.items() if a < i) for i in range(config["num_layers"])]
    new = [i + shift[i] for i in old if i < config["num_layers"]]
    for anchor, count in inserts.items():
        if anchor in old:
            new += [anchor + shift[anchor] + t for t in range(1, count + 1)]
    config["global_attention_layer_indices"] = sorted(new)
    config["num_layers"] += sum(inserts.values())
    return config


def copy_deeper(old_model, new_model, inserts, zero_new, new_blocks_of=None):
    """Writes `old_model`'s weights into the deeper `new_model` layer by
    layer in graph order; after the i-th block of `_blocks` come
    `inserts[i]` copies of it, passed to `zero_new`."""
    old_blocks = {id(b): i for i, b in enumerate(_blocks(Graph(old_model)))}
    old = [layer for _, layer in mit.weighted_layers(Graph(old_model))]
    new = [layer for _, layer in mit.weighted_layers(Graph(new_model))]
    j = 0
    for layer in old:
        for t in range(1 + inserts.get(old_blocks.get(id(layer)), 0)):
            target = new[j]
            j += 1
            for a, b in zip(layer.weights, target.weights):
                lazy.set_value(b, a.numpy())
            if t:
                zero_new(target)
    if j != len(new):
        raise errors.UnsupportedModelError(
            f"Expected the deeper {type(new_model).__name__} to hold the grown model's layers "
            f"and new blocks only. Received: {len(new)} layers with weights for {j}. This is a "
            f"bug in keras-net2net's keras_hub support: please report it.")


def append_blocks(task, student, inserts):
    """The widened student rebuilt with identity blocks after the anchors."""
    backbone = student.backbone if task is not None else student
    config = deeper_config(backbone.get_config(), inserts)
    deeper, made = hub_backbone.build_student(task, backbone, config)  # deferred
    copy_deeper(student, deeper, inserts, identity_block)
    lazy.initialize_rest(deeper.variables + made)
    return deeper


TABLE = {vit_layers.WindowedTransformerEncoder: WindowedBlockRule(),
         vit_layers.ViTDetPatchingAndEmbedding: PatchEmbeddingRule(),
         vit_layers.AddPositionalEmbedding: AddPositionRule()}

FAMILIES = [Family(
    keras_hub.models.ViTDetBackbone, embedding="vi_t_det_patching_and_embedding",
    block="block_{}", block_names=block_names, identity="pre", keys=KEYS, targets=targets,
    request=request, pairs=mit.pair_layers, append_blocks=append_blocks)]

