"""Dual encoders (CLIP, SigLIP, MetaCLIP 2): a vision tower and a text tower,
each a keras_hub Backbone of its own, pooled and projected into one space
where a head takes the cosine similarity of every image-text pair.

The towers grow by their own families (one `Family` each, in the family
modules: `tower_family`); the composite backbone grows by `DualEncoderMaker`,
which analyses the whole graph (the towers are nested functional models, so
the towers' layer rules see it as one graph), asks each tower for the widths
its family derives from the request, and writes the towers' configs back into
the composite's nested config. The student is the composite's own class.

The similarity head normalises both embeddings (L2) and multiplies them: the
two embeddings are one channel group (channel i of the image meets channel i
of the text), which grows by equal copies (k copies scale both norms by
sqrt(k): the cosine is the teacher's) or with zero pads (they add nothing to
a norm or a dot product). The logit scale and bias are scalars, kept.

Deeper: identity blocks (a copy of the anchor block with its attention output
and second MLP projection zero: x + 0 + 0 = x, pre-LN blocks) are added by
rebuilding the widened student with more blocks and copying every weight by
path (`block_inserter`).

Reaches keras_hub internals (`keras_hub.src.models.*`) through the family
modules that register the layer rules.
"""

import copy
import math
import re

import keras
import numpy as np

from keras_net2net import analysis
from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net import makers
from keras_net2net import options
from keras_net2net import plan as plan_lib
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import families
from keras_net2net.hub import mit
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import ZERO_FILL
from keras_net2net.rules.base import Rule
from keras_net2net.rules.base import input_layout

TOWERS = ("vision_encoder", "text_encoder")


class PoolerRule(Rule):
    """A layer that picks one token of the stream (the class token, the end
    of text): the channels pass on, one axis up."""

    pads = "same"  # picking a token keeps its pads

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        out = call.outputs[0]
        if layout is not None and layout.axis != ctx.rank(call.inputs[0]) - 1:
            ctx.barrier(call, "it reads its input's channels on another axis than the last")
            return
        ctx.layouts[out] = None if layout is None else layout.moved(ctx.rank(out) - 1)


class SimilarityHeadRule(Rule):
    """The head of a dual encoder: logits = scale * cos(image, text) (+ bias).
    Both embeddings become one group (the dot product pairs their channels),
    grown by equal copies or zero pads; the logits (over the batch) are kept."""

    constrains_reads = True  # padding asks it how it reads pads

    def propagate(self, ctx, call):
        keys = call.inputs[:2]
        layouts = [ctx.layout(k) for k in keys]
        for key in call.outputs:
            ctx.fresh(key, ctx.rank(key) - 1, call.path,
                      frozen=f"{type(call.op).__name__} {call.path!r}: logits over the batch")
        reason = None
        if any(l is None or l.axis != ctx.rank(k) - 1 for l, k in zip(layouts, keys)):
            reason = "reads an embedding whose channels are kept or not on the last axis"
        elif not ctx.unify(layouts[0], layouts[1], call.path):
            reason = "cannot line up the image and text embeddings channel by channel"
        if reason:
            for layout in layouts:
                ctx.groups.freeze_layout(layout, f"{type(call.op).__name__} {call.path!r} {reason}")
            return
        atom = layouts[0].segments[0].atom
        ctx.groups.require_blocks(atom, 1, (
            f"{type(call.op).__name__} {call.path!r} takes the cosine of the two embeddings, "
            "so every channel must be copied equally (an integer factor, or zero pads)"))
        ctx.norm_calls.append((atom, call))  # may take zero pads (keras_net2net.padding)
        ctx.record_io(call, **{IN: layouts[0]})

    def pad_constraints(self, solver, call, ins, outs, where):
        for key in ins:  # zero pads add nothing to a norm or a dot product
            solver.require(key, ZERO_FILL, where)


def block_inserter(block_pattern, zero):
    """An `append_blocks(task, student, inserts)` for towers whose blocks are
    layers named `...{block_pattern}` with an index (CLIP's
    `encoder_block_3`): the widened student rebuilt with more blocks, every
    weight copied by path (later blocks moved down), each new block a copy of
    its anchor with the weights matching `zero` (regexes below the block)
    zero. `inserts` here is {(tower config path, block index): count}, the
    tower config path a tuple of keys into the model's config (() for a
    tower grown alone).

    Example:

    ```python
    append = block_inserter("encoder_block_", (r"dense_2/(kernel|bias)",))
    ```
    """

    def append(task, student, inserts):
        backbone = student.backbone if task is not None else student
        config = backbone.get_config()
        moves = {}  # tower name -> {old index: new index}, anchors -> new indices
        for (where, anchor), count in sorted(inserts.items()):
            tower = _at(config, where)
            n = tower["num_layers"]
            moves.setdefault(tower["name"], {"n": n, "at": {}})["at"][anchor] = count
        for where in {w for w, _ in inserts}:
            tower = _at(config, where)
            spec = moves[tower["name"]]
            added = sum(spec["at"].values())
            index = tower.get("intermediate_output_index")
            if index is not None:  # the same block's output, wherever it moved
                tower["intermediate_output_index"] = index + sum(
                    c for a, c in spec["at"].items() if a < index)
            tower["num_layers"] = spec["n"] + added
        deeper, made = hub_backbone.build_student(task, backbone, config)  # deferred
        source = {_unnumbered(v.path): v for v in student.weights}
        pattern = re.compile(rf"(^|.*/)(?P<tower>[^/]+)_{re.escape(block_pattern)}(?P<i>\d+)/(?P<rest>.*)")
        for variable in deeper.weights:
            path, value = _unnumbered(variable.path), None
            match = pattern.fullmatch(path)
            if match is not None and match.group("tower") in moves:
                old, new_block = _source_block(moves[match.group("tower")]["at"],
                                               int(match.group("i")))
                path = (f"{match.group(1)}{match.group('tower')}_{block_pattern}{old}/"
                        f"{match.group('rest')}")
                if path in source:
                    value = source[path].numpy()
                    if new_block and any(re.fullmatch(z, match.group("rest")) for z in zero):
                        value = np.zeros_like(value)
            elif path in source:
                value = source[path].numpy()
            if value is None:
                raise errors.UnsupportedModelError(
                    f"Expected the deeper {type(deeper).__name__} to hold the grown model's "
                    f"weights and new blocks only. Received: a weight {variable.path!r} of "
                    f"neither. This is a bug in keras-net2net's keras_hub support: please "
                    f"report it.")
            lazy.set_value(variable, value)
        lazy.initialize_rest(deeper.variables + made)
        return deeper
    return append


def _unnumbered(path):
    """A weight created without a name is "variable_<global counter>"
    (SigLIP's pooling probe): one per layer, so the layer's path names it."""
    return re.sub(r"/variable(_\d+)?$", "/variable", path)


def _at(config, where):
    for key in where:
        config = config[key]["config"]
    return config


def _source_block(anchors, new_index):
    """(the grown model's block index a deeper block copies, whether it is a
    new one), with `anchors` {old index: blocks added after it}."""
    index = 0
    for old in range(new_index + 1):
        if index == new_index:
            return old, False
        for t in range(anchors.get(old, 0)):
            index += 1
            if index == new_index:
                return old, True
        index += 1
    raise AssertionError("unreachable: a block index past the model")


def tower_family(backbone, embedding, block, zero, extra_targets=None, also=()):
    """The `Family` of a tower grown alone: layers found by class (their
    names carry the tower's name when it has one, `from_config` always gives
    one), paired by graph order, deepened by `block_inserter`.

    Args:
        backbone: the tower class.
        embedding: the class of the layer producing the stream.
        block: the class of its blocks.
        zero: regexes of the block weights an identity block zeroes.
        extra_targets: function (config, targets) adding config keys that
            follow the widths (the text tower's `embedding_dim`).
        also: classes of other layers with the blocks' inner widths
            (SigLIP's attention-pooling head).

    Example:

    ```python
    tower_family(keras_hub.models.CLIPTextEncoder, TokenAndPositionEmbedding, CLIPEncoderLayer,
                 ZERO)
    ```
    """
    def targets(family, config, widen):
        out = hub_backbone.default_targets(family, config, _tower_widen(widen, config))
        if extra_targets is not None:
            extra_targets(config, out)
        return out

    def request(ctx, family, config, targets):
        return tower_request(ctx, ctx.graph.model, targets, embedding, block, also)

    def block_names(config):
        n, name = config["num_layers"], config.get("name")
        return [f"encoder_block_{i}" for i in range(n)] + [
            f"{name}_encoder_block_{i}" for i in range(n)]

    def append(task, student, inserts):
        n = (student.backbone if task is not None else student).get_config()["num_layers"]
        return inserter(task, student, {((), i % n): c for i, c in inserts.items()})

    inserter = block_inserter("encoder_block_", zero)
    return families.Family(backbone, embedding="embedding", block="encoder_block_{}",
                           block_names=block_names, identity="pre", zero=zero,
                           targets=targets, request=request, pairs=mit.pair_layers,
                           append_blocks=append)


def _tower_widen(widen, config):
    """A dict request may name `embedding_dim` (text towers): it follows
    `hidden_dim`, so only that key is checked."""
    if isinstance(widen, dict) and "embedding_dim" in widen:
        rest = {k: v for k, v in widen.items() if k != "embedding_dim"}
        rest.setdefault("hidden_dim", widen["embedding_dim"])
        return rest
    return widen


def tower_request(ctx, tower, targets, embedding, block, also=()):
    """{layer path: width or inner widths} of one tower's layers, found by
    class below `tower` (a tower, or the whole model when grown alone)."""
    inner = {"num_heads": targets["heads"], "head_dim": targets["hidden"] // targets["heads"],
             "intermediate_dim": targets["intermediate"]}
    mine = {id(layer) for layer in _layers_below(tower)}
    request = {}
    for layer_id, layer in ctx.graph.layers.items():
        if layer_id not in mine:
            continue
        path = ctx.graph.paths[layer_id]
        if isinstance(layer, embedding):
            request[path] = targets["hidden"]
        elif isinstance(layer, (block,) + tuple(also)):
            request[path] = dict(inner)
    return request


def _layers_below(model):
    out = []
    for layer in model.layers:
        out.append(layer)
        if isinstance(layer, keras.Model):
            out.extend(_layers_below(layer))
    return out


class DualEncoderMaker(hub_backbone.BackboneMaker):
    """Grows a dual-encoder backbone (CLIPBackbone, SigLIPBackbone,
    MetaCLIP2Backbone) into one of its class.

    Requests (`expand_model`'s `widen` and `deepen`):
        widen: a factor >= 1 (both towers: width, heads, MLP; the shared
            space `projection_dim` too where the class has one), or
            {"vision_encoder": tower request, "text_encoder": tower request,
            "projection_dim": width or factor}, a tower request as its own
            family takes (e.g. {"hidden_dim": 32}); a tower left out keeps
            its widths.
        deepen: a block's name or path ("clip_vision_encoder/encoder_block_1"),
            a list of them or {name: count}: identity blocks after each.

    Raises (from `plan`):
        PlanError: an invalid request.
        FrozenGroupError: a width that would not grow exactly.

    Example:

    ```python
    student = n2n.expand_model(clip_backbone, widen=2.0,
                               deepen=["clip_text_encoder/encoder_block_0"])
    ```
    """

    def handles(self, model):
        return type(model) in _SPECS

    def probe(self, model):
        return probe(model)

    def plan_config(self, model, request):
        widen, spec = request.widen, _SPECS[type(model)]
        config = model.get_config()
        ctx = analysis.analyze(model, grow_outputs=True)
        inserts = self._inserts(ctx, model, spec, request.deepen)
        layers, new_config = self._widths(ctx, model, spec, config, widen)
        if new_config == config and not inserts:
            raise errors.PlanError(
                f"Expected at least one width or block to grow. Received: widen={widen!r} and "
                f"deepen={request.deepen!r}. Fix: e.g. widen=2.0.")
        widths, skipped = plan_lib.resolve_widths(ctx, layers, strict=False)
        if skipped:
            what, why = skipped[0]
            raise errors.FrozenGroupError(
                f"Expected every width of {type(model).__name__} to grow exactly. Received: "
                f"widen={widen!r}, but {what!r} keeps its width: {why}. Fix: "
                f"{_fix(widen, spec)}.")
        the_plan = plan_lib.Plan(ctx, widths, request.mapping, request.seed)
        the_plan.keep_epsilon = True
        family = families.family_of(type(model))
        return makers.Growth(model, request, ctx, the_plan, state=dict(
            task=None, backbone=model, family=family, config=config,
            new_config=new_config, inserts=inserts, blocks=_report_blocks(inserts),
            grown_outputs=True))

    def _widths(self, ctx, model, spec, config, widen):
        """(the layer request, the grown config)."""
        if widen is not None and not families.is_number(widen) and not isinstance(widen, dict):
            raise errors.PlanError(
                f"Expected widen to be a factor >= 1 or a dict with keys among "
                f"{list(TOWERS) + [spec['projection']]}. Received: widen={widen!r} "
                f"({type(widen).__name__}).")
        asked = widen if isinstance(widen, dict) else {}
        allowed = set(TOWERS) | ({spec["projection"]} if spec["projection"] else set())
        for key in asked:
            if key not in allowed:
                raise errors.PlanError(
                    f"Expected widen keys among {sorted(allowed)} for {type(model).__name__}. "
                    f"Received: widen={{{key!r}: ...}}. Fix: name a tower (with its own "
                    f"request, e.g. {{'vision_encoder': {{'hidden_dim': 32}}}}) or the shared "
                    f"space.")
        new_config = copy.deepcopy(config)
        layers = {}
        for key in TOWERS:
            tower = getattr(model, key)
            family = families.family_of(type(tower))
            tower_config = config[key]["config"]
            tower_widen = asked.get(key) if isinstance(widen, dict) else widen
            targets = family.targets(family, tower_config, tower_widen)
            layers.update(family.request(_Scoped(ctx, tower), family, tower_config, targets))
            grown = new_config[key]["config"]
            grown.update({family.keys.get(k, k): v for k, v in targets.items()})
        if spec["projection"]:
            old = config[spec["projection"]]
            new = old
            if families.is_number(widen):
                new = math.ceil(old * widen - 1e-9)
            elif spec["projection"] in asked:
                new = hub_backbone.requested_width(spec["projection"],
                                                   asked[spec["projection"]], old)
            new_config[spec["projection"]] = new
            for name in ("vision_projection", "text_projection"):
                layers[ctx.graph.paths[id(getattr(model, name))]] = new
        else:  # SigLIP: the text head writes the vision tower's width
            text = new_config["text_encoder"]["config"]
            text["projection_dim"] = new_config["vision_encoder"]["config"]["hidden_dim"]
            head = getattr(model.text_encoder, "head", None)
            if head is not None:
                layers[ctx.graph.paths[id(head)]] = text["projection_dim"]
        return layers, new_config

    def _inserts(self, ctx, model, spec, deepen):
        """{((tower key,), block index): count}."""
        counts = options.block_counts(deepen, _example(ctx, model))
        out = {}
        for name, count in counts.items():
            layer = plan_lib.resolve_layer(ctx.graph, name, "deepen")
            where = next((key for key in TOWERS
                          if any(layer is b for b in getattr(model, key).layers)), None)
            if where is None or not isinstance(layer, spec["blocks"]):
                raise errors.PlanError(
                    f"Expected deepen to name a block of a tower of {type(model).__name__}. "
                    f"Received: deepen={{{name!r}: {count!r}}}, a "
                    f"{type(layer).__name__}. Fix: name a block, e.g. "
                    f"deepen=[{_example(ctx, model)!r}].")
            count = hub_backbone.block_count(name, count)
            blocks = [b for b in getattr(model, where).layers if isinstance(b, spec["blocks"])]
            out[((where,), blocks.index(layer))] = count
        return out


def probe(model, batch=3, length=8, seed=0):
    """Inputs for a dual encoder: images N(0, 1), token ids below the text
    tower's vocabulary and within its length (`batch` pairs: the logits are
    batch x batch).

    Example:

    ```python
    clip_backbone(probe(clip_backbone))
    ```
    """
    rng = np.random.default_rng(seed)
    text = model.text_encoder
    length = min(length, text.max_sequence_length)
    return {"images": rng.normal(size=(batch,) + tuple(model.vision_encoder.image_shape))
            .astype("float32"),
            "token_ids": rng.integers(0, text.vocabulary_size, size=(batch, length))
            .astype("int32")}


class _Scoped:
    """An analysis context whose graph's `model` is one tower (its layers are
    what `tower_request` looks for); everything else is the context's."""

    def __init__(self, ctx, tower):
        self._ctx, self.graph = ctx, _ScopedGraph(ctx.graph, tower)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


class _ScopedGraph:
    def __init__(self, graph, tower):
        self._graph, self.model = graph, tower

    def __getattr__(self, name):
        return getattr(self._graph, name)


def _report_blocks(inserts):
    return {f"{where[0]}/encoder_block_{index}": count
            for (where, index), count in inserts.items()}


def _example(ctx, model):
    """The path of the text tower's last block, for messages."""
    blocks = _SPECS[type(model)]["blocks"]
    last = [layer for layer in model.text_encoder.layers if isinstance(layer, blocks)][-1]
    return ctx.graph.paths[id(last)]


def _fix(widen, spec):
    if families.is_number(widen) and not float(widen).is_integer():
        return (f"use an integer factor (e.g. widen={float(math.ceil(widen))}), or grow one "
                f"tower by a dict request (e.g. widen={{'text_encoder': {widen}}})")
    return ("register a rule for the layer that keeps it with keras_net2net.register_rule, "
            "or grow a plain functional copy of the model")


MAKER = DualEncoderMaker()
_SPECS = {}  # composite class -> its projection key and block classes


def composite_family(backbone, projection, blocks, zero):
    """The `Family` of a dual-encoder class (grown by `MAKER`).

    Args:
        backbone: the composite class.
        projection: the config key of the shared space, or None where the
            vision tower's width is that space (SigLIP).
        blocks: the block classes of its towers.
        zero: regexes of the block weights an identity block zeroes.

    Example:

    ```python
    composite_family(keras_hub.models.CLIPBackbone, "projection_dim", [CLIPEncoderLayer], ZERO)
    ```
    """
    _SPECS[backbone] = dict(projection=projection, blocks=tuple(blocks))
    return families.Family(backbone, embedding="", block="encoder_block_{}", identity="pre",
                           zero=zero, pairs=mit.pair_layers,
                           append_blocks=block_inserter("encoder_block_", zero))
