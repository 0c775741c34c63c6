"""MiT (SegFormer's Mix Transformer): stages of an overlapping patch
embedding (ZeroPadding2D, strided Conv2D, LayerNorm), pre-LN
`HierarchicalTransformerEncoder` blocks (efficient attention: flat q/k/v
Dense(D) reshaped to (heads, D // heads), keys and values read through a
stride-sr Conv2D and a LayerNorm; Mix-FFN: Dense(4D), depthwise 3x3 Conv2D,
GELU, Dense(D)), a LayerNorm and a Reshape to (h, w, D) per stage.

Widths: every stage's `hidden_dims[i]` and `layerwise_num_heads[i]` (head
dim D // heads kept, so the 1 / sqrt(head dim) scale stays); the Mix-FFN
width is 4 D (derived). Whole multiples only: each stage's patch embedding
ends in a LayerNorm, whose output cannot carry LEMON's mean pads, so a
non-integer factor is a typed PlanError naming the integer factor.

Sublayers are auto-named (`dense_3`, `layer_normalization_4`: global
counters), so the rules match weights by build order and the driver pairs
teacher and student layers by graph order (`pair_layers`). Deeper:
`deepen=["hierarchical_encoder_0_0"]` adds an identity block after that one
(its stage's `layerwise_depths` grows): a copy with the attention `proj` and
Mix-FFN `fc2` zero, appended by rebuilding (`_append_blocks`). Drop-path
rates are a linspace over all blocks, so they move a little (training only).
"""

import math
import re

import keras
import keras_hub
import numpy as np
from keras_hub.src.models.mit import mit_layers

from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net.channels import Product
from keras_net2net.graph import Graph
from keras_net2net.hub import layers as hub_layers
from keras_net2net.hub.families import Family
from keras_net2net.hub.families import is_number
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import NORM_SCALE
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import input_layout

HEADS, HEAD_DIM, FFN = hub_layers.HEADS, hub_layers.HEAD_DIM, hub_layers.FFN
QK = "heads_x_dim"


def _dense(role_in, role_out, divide=True):
    return [[(0, role_in, DIVIDE if divide else COPY), (1, role_out, COPY)],
            [(0, role_out, COPY)]]


def _norm(role):
    return [[(0, role, NORM_SCALE)], [(0, role, COPY)]]


class MiTBlockRule(composite.CompositeRule):
    """HierarchicalTransformerEncoder: x + attn(norm1(x)), x + mixffn(norm2(x))."""

    norms = True
    inner = {
        "num_heads": composite.Inner(HEADS, lambda l: l.num_heads),
        "head_dim": composite.Inner(HEAD_DIM, lambda l: l.project_dim // l.num_heads,
                                    on_request=True),
        "mix_ffn_dim": composite.Inner(FFN, lambda l: 4 * l.project_dim),
    }

    def derived_roles(self, inner):
        return {QK: Product(inner[HEADS], inner[HEAD_DIM])}

    def weight_axes(self, layer, io):
        specs = _norm(IN)  # norm1
        specs += _dense(IN, QK)  # q
        if layer.attn.sr_ratio > 1:
            keys = [[(2, IN, DIVIDE), (3, IN, COPY)], [(0, IN, COPY)]] + _norm(IN)
        else:
            keys = []
        specs += _dense(IN, QK) + _dense(IN, QK)  # k, v (read the sr output)
        specs += [[(0, QK, DIVIDE), (1, OUT, COPY)], [(0, OUT, COPY)]]  # proj
        specs += keys  # sr conv and its norm (built after proj)
        specs += _norm(IN)  # norm2
        specs += _dense(IN, FFN) + [[(2, FFN, COPY)], [(0, FFN, COPY)]]  # fc1, dwconv
        specs += [[(0, FFN, DIVIDE), (1, OUT, COPY)], [(0, OUT, COPY)]]  # fc2
        if len(specs) != len(layer.weights):
            raise errors.UnsupportedModelError(
                f"Expected {len(specs)} weights in {type(layer).__name__} {layer.name!r} (its "
                f"build order in keras_hub {keras_hub.__version__}). Received: "
                f"{len(layer.weights)}. Fix: grow a plain functional copy of the backbone.")
        return dict(enumerate(specs))

    def edit_config(self, config, io, plan):
        if io.layouts.get(IN) is not None:
            config["project_dim"] = plan.width(io.layouts[IN])
            config["num_heads"] = plan.width(io.layouts[HEADS])
        return config


class MiTEmbeddingRule(composite.CompositeRule):
    """OverlappingPatchingAndEmbedding: norm(conv(pad(x))) -> (b, h*w, D), a
    producer of the stage width that also reads the previous stage's."""

    residual = False
    width_key = "project_dim"

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if layout is not None and layout.axis != ctx.rank(call.inputs[0]) - 1:
            ctx.barrier(call, "it reads its input's channels on another axis")
            return
        out = ctx.produce(call, call.outputs[0], ctx.rank(call.outputs[0]) - 1)
        ctx.groups.require_blocks(out.segments[0].atom, 1, (
            f"{type(call.op).__name__} {call.path!r} ends in a LayerNorm over its output, whose "
            "output cannot carry mean pads: every channel must be copied equally"))
        ctx.record_io(call, **{IN: layout, OUT: out})

    def weight_axes(self, layer, io):
        return dict(enumerate([[(2, IN, DIVIDE), (3, OUT, COPY)], [(0, OUT, COPY)]]
                              + _norm(OUT)))


def _block_names(config):
    return [f"hierarchical_encoder_{i}_{k}" for i, depth in enumerate(config["layerwise_depths"])
            for k in range(depth)]


def _targets(family, config, widen):
    dims, heads = list(config["hidden_dims"]), list(config["layerwise_num_heads"])
    out = {"hidden_dims": dims, "layerwise_num_heads": heads}
    if widen is None:
        return out
    if not is_number(widen):
        raise errors.PlanError(
            f"Expected widen to be an integer factor (e.g. 2.0) for MiTBackbone, which grows "
            f"every stage's hidden_dims and layerwise_num_heads together. Received: "
            f"widen={widen!r}. Fix: widen=2.0.")
    if widen < 1 or abs(widen - round(widen)) > 1e-9:
        raise errors.PlanError(
            f"Expected an integer factor >= 1 for MiTBackbone: each stage's patch embedding ends "
            f"in a LayerNorm, whose output cannot carry the mean pads a non-integer width needs "
            f"(as a post-LN stream). Received: widen={widen!r}. Fix: widen="
            f"{float(max(2, math.ceil(widen)))} (the closest exact factor above).")
    f = int(round(widen))
    return {"hidden_dims": [d * f for d in dims], "layerwise_num_heads": [h * f for h in heads]}


def _request(ctx, family, config, targets):
    request = {}
    for i, (d, h) in enumerate(zip(targets["hidden_dims"], targets["layerwise_num_heads"])):
        request[f"patch_and_embed_{i}"] = d
        for k in range(config["layerwise_depths"][i]):
            request[f"hierarchical_encoder_{i}_{k}"] = {"num_heads": h, "mix_ffn_dim": 4 * d}
    return request


def _weighted(graph):
    return [(path, graph.layers[i]) for i, path in graph.paths.items()
            if not isinstance(graph.layers[i], keras.Model)
            and getattr(graph.layers[i], "weights", None)]  # ops (keras.ops.add) have none


def pair_layers(ctx, family, student, inserts):
    """{id(teacher layer): student layer} by graph order (auto names differ)."""
    teacher = _weighted(ctx.graph)
    mine = _weighted(Graph(student))
    ids = {id(layer): i for i, layer in ctx.graph.layers.items()}
    if len(teacher) != len(mine) or any(
            type(a) is not type(b) or len(a.weights) != len(b.weights)
            for (_, a), (_, b) in zip(teacher, mine)):
        raise errors.UnsupportedModelError(
            f"Expected the grown {type(student).__name__} to have the teacher's layers in the "
            f"same order. Received: {len(mine)} layers with weights for {len(teacher)}. This is "
            f"a bug in keras-net2net's keras_hub support: please report it.")
    return {ids[id(a)]: b for (_, a), (_, b) in zip(teacher, mine)}


ZERO_SPECS = ("proj", "fc2")


def _append_blocks(task, student, inserts):
    """Rebuilt with more blocks: layers copied in graph order, each new block
    a copy of its anchor with the attention `proj` and Mix-FFN `fc2` zero."""
    from keras_net2net.hub import backbone as hub_backbone

    backbone = student.backbone if task is not None else student
    config = backbone.get_config()
    names = _block_names(config)
    depths = list(config["layerwise_depths"])
    anchors = {}
    for index, count in inserts.items():
        stage = int(re.findall(r"\d+", names[index])[0])
        depths[stage] += count
        anchors[names[index]] = count
    config["layerwise_depths"] = depths
    deeper, made = hub_backbone.build_student(task, backbone, config)  # deferred: every value below
    old = [layer for _, layer in _weighted(Graph(student))]
    new = [layer for _, layer in _weighted(Graph(deeper))]
    j = 0
    for layer in old:
        copies = [layer] + [None] * anchors.get(layer.name, 0)
        for source in copies:
            target = new[j]
            j += 1
            src = source or layer
            for a, b in zip(src.weights, target.weights):
                lazy.set_value(b, a.numpy())
            if source is None:  # an identity block
                for sub in (target.attn.proj, target.mlp.fc2):
                    for variable in sub.weights:
                        variable.assign(np.zeros(variable.shape, variable.dtype))
    lazy.initialize_rest(deeper.variables + made)
    return deeper


TABLE = {mit_layers.HierarchicalTransformerEncoder: MiTBlockRule(),
         mit_layers.OverlappingPatchingAndEmbedding: MiTEmbeddingRule()}

FAMILIES = [Family(
    keras_hub.models.MiTBackbone, embedding="patch_and_embed_0",
    block="hierarchical_encoder_{}", block_names=_block_names, identity="pre",
    keys={"hidden": "hidden_dims", "heads": "layerwise_num_heads", "intermediate": "hidden_dims",
          "layers": "num_layers"},
    targets=_targets, request=_request, pairs=pair_layers, append_blocks=_append_blocks)]
