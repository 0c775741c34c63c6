"""keras_hub EfficientNet and MobileNet backbones grown into bigger backbones
of their own class.

Their blocks are composite layers (MBConv, FusedMBConv, CBA, inverted
residual, depthwise block, squeeze-excite inside). Each gets a declarative
rule (`BlockRule`): the stream it reads (`IN`), the group it writes (`OUT`,
the same group when the block adds its input back), its expanded width
(`EXP`) and its squeeze-excite bottleneck (`SE`). All of it is per-channel
(BatchNorm, depthwise, activations, squeeze-excite gates) or a 1x1/kxk
convolution, so copies are exact at any width, integer or not: no pads.

The widths are not chosen here but read back: the student is built from the
edited config, and every group takes the width the class derives from it
(EfficientNet: `round_filters(filters * width_coefficient)`, squeeze-excite
`max(1, int(input_filters * se_ratio))`; MobileNet: `adjust_channels`). So
the config reproduces the grown widths by construction; a group that would
shrink, or a block whose residual add would appear or vanish, is refused.

- EfficientNet: `widen=f` multiplies `stackwise_width_coefficients` by f (the
  family's own width knob; it also scales the top conv, whose
  `num_features` get_config does not keep). Deepening appends identity
  blocks to a stack: `stackwise_num_repeats[i]` becomes the stack's repeats
  plus the count, with its depth coefficient 1.0 so the count is exact.
- MobileNet: `widen=f` sets every width key (`input_num_filters`,
  `depthwise_filters`, `stackwise_num_filters`, `stackwise_expansion`,
  `last_layer_filter`, `output_num_filters`) to `adjust_channels(ceil(w * f))`.
  Deepening appends to every `stackwise_*` list of the stack a copy of its
  last block's entries with stride 1 and padding (k - 1) // 2.

An appended block reads and writes the stack's width with stride 1, so it
adds its input back: it is a copy of the stack's last block (where shapes
match) whose last BatchNorm has gamma = beta = 0, so f(x) = 0 and the block
is x + 0 = x (CBA and a fused block with a projection activation need
act(0) = 0, which is checked). Dropout / stochastic depth is the identity
at inference (its training-time rates follow the new block count).
"""

import math
import re

import keras
import numpy as np
from keras_hub.src.models.efficientnet import cba as _cba
from keras_hub.src.models.efficientnet import efficientnet_backbone as _eff
from keras_hub.src.models.efficientnet import fusedmbconv as _fused
from keras_hub.src.models.efficientnet import mbconv as _mbconv
from keras_hub.src.models.mobilenet import mobilenet_backbone as _mob
from keras_hub.src.models.mobilenet.util import adjust_channels

from keras_net2net import activations
from keras_net2net import analysis
from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net import options
from keras_net2net import makers
from keras_net2net import plan as plan_lib
from keras_net2net.hub import families
from keras_net2net.graph import Graph
from keras_net2net.rules import composite
from keras_net2net.rules.base import COPY
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import require_axis

EXP, SE = "expanded", "squeeze_excite"
_BN = r"(gamma|beta|moving_mean|moving_variance)"


def _bn(pattern, role):
    return {f"{pattern}/{_BN}": [(0, role, COPY)]}


def _se(reduce, expand, role):
    """A squeeze-excite gate on `role`: mean, reduce (reads it), expand
    (writes one gate per channel of it)."""
    return {f"{reduce}/kernel": [(2, role, DIVIDE), (3, SE, COPY)],
            f"{reduce}/bias": [(0, SE, COPY)],
            f"{expand}/kernel": [(2, SE, DIVIDE), (3, role, COPY)],
            f"{expand}/bias": [(0, role, COPY)]}


class BlockRule(composite.CompositeRule):
    """A convolutional block with sublayers: reads the stream (`IN`), writes
    `OUT` (the stream itself where the block adds its input back), with inner
    widths `EXP` / `SE` declared by `inner`. `last_norm` is the regex of its
    last BatchNorm (zero gamma and beta in an inserted identity block)."""

    last_norm = None

    def is_residual(self, layer):
        return (layer.strides == 1 and layer.input_filters == layer.output_filters
                and not layer.nores)

    def expands(self, layer):
        """False where the expanded width is the input's (no expand conv)."""
        return True

    def propagate(self, ctx, call):
        layer = call.op
        key = call.inputs[0]
        layout = ctx.layout(key)
        if not require_axis(ctx, call, layout, ctx.rank(key) - 1):
            layout = None
        out_key = call.outputs[0]
        rank = ctx.rank(out_key)
        if self.is_residual(layer):
            out = layout
            ctx.layouts[out_key] = layout
            if layout is None:
                ctx.fresh(out_key, rank - 1, call.path, frozen=(
                    f"{type(layer).__name__} {call.path!r} adds its input back, whose width "
                    "is kept"))
        else:
            out = ctx.produce(call, out_key, rank - 1)
        inner = {}
        for name, spec in self.inner.items():
            if spec.role == EXP and not self.expands(layer):
                inner[EXP] = layout
                continue
            inner[spec.role] = ctx.inner(call, name, spec.width(layer))
        ctx.record_io(call, **{IN: layout, OUT: out}, **inner)

    def pad_constraints(self, solver, call, ins, outs, where):
        """No norm over channels inside: copies are exact at any width."""


def _se_width(attribute):
    def width(layer):
        se = getattr(layer, attribute, None)
        if se is None or not getattr(se, "built", False):
            return 1  # no squeeze-excite: a width that never changes
        return int(se.filters)
    return width


class MBConvRule(BlockRule):
    """EfficientNet MBConvBlock: [expand 1x1, BN, act], depthwise, BN, act,
    [squeeze-excite], project, BN, [+ x]."""

    inner = {"filters": composite.Inner(EXP, lambda l: int(l.filters)),
             "filters_se": composite.Inner(SE, _se_width("se_conv1"))}
    specs = {**_se(r".*se_reduce", r".*se_expand", EXP),
             r".*expand_conv/kernel": [(2, IN, DIVIDE), (3, EXP, COPY)],
             **_bn(r".*expand_bn", EXP),
             r".*dwconv2/kernel": [(2, EXP, COPY)],
             **_bn(r".*project_bn", OUT),
             r".*project_conv/kernel": [(2, EXP, DIVIDE), (3, OUT, COPY)],
             **_bn(r".*_bn", EXP)}
    last_norm = r".*project_bn/(gamma|beta)"

    def expands(self, layer):
        return layer.expand_ratio != 1


class FusedMBConvRule(BlockRule):
    """EfficientNet FusedMBConvBlock: kxk expand conv, BN, act,
    [squeeze-excite], project, BN, [act], [+ x]."""

    inner = MBConvRule.inner
    specs = {**_se(r".*se_reduce", r".*se_expand", EXP),
             r".*expand_conv/kernel": [(2, IN, DIVIDE), (3, EXP, COPY)],
             **_bn(r".*expand_bn", EXP),
             r".*project_conv/kernel": [(2, EXP, DIVIDE), (3, OUT, COPY)],
             **_bn(r".*project_bn", OUT)}
    last_norm = r".*project_bn/(gamma|beta)"


class CBARule(BlockRule):
    """EfficientNet CBABlock: conv, BN, act, [+ x]."""

    specs = {r".*_conv/kernel": [(2, IN, DIVIDE), (3, OUT, COPY)], **_bn(r".*_bn", OUT)}
    last_norm = r".*_bn/(gamma|beta)"


class DepthwiseBlockRule(BlockRule):
    """MobileNet DepthwiseConvBlock: depthwise (grouped Conv2D), BN, ReLU,
    [squeeze-excite], 1x1 conv, BN, [+ x]."""

    inner = {"bottleneck_filters": composite.Inner(SE, lambda l: _mob_se(l, "se_layer"))}
    specs = {**_se(r".*conv_reduce", r".*conv_expand", IN),
             r".*_conv1/kernel": [(3, IN, COPY)],
             **_bn(r".*_bn1", IN),
             r".*_conv2/kernel": [(2, IN, DIVIDE), (3, OUT, COPY)],
             **_bn(r".*_bn2", OUT)}

    def is_residual(self, layer):
        return bool(layer.residual)


class InvertedResidualRule(BlockRule):
    """MobileNet InvertedResidualBlock: 1x1 expand, BN, act, depthwise
    (grouped Conv2D), BN, act, [squeeze-excite], 1x1, BN, [+ x]."""

    inner = {"expansion": composite.Inner(EXP, lambda l: int(l.conv1.filters)),
             "bottleneck_filters": composite.Inner(SE, lambda l: _mob_se(l, "squeeze_excite"))}
    specs = {**_se(r".*conv_reduce", r".*conv_expand", EXP),
             r".*_conv1/kernel": [(2, IN, DIVIDE), (3, EXP, COPY)],
             **_bn(r".*_bn1", EXP),
             r".*_conv2/kernel": [(3, EXP, COPY)],
             **_bn(r".*_bn2", EXP),
             r".*_conv3/kernel": [(2, EXP, DIVIDE), (3, OUT, COPY)],
             **_bn(r".*_bn3", OUT)}
    last_norm = r".*_bn3/(gamma|beta)"

    def is_residual(self, layer):
        return layer.stride == 1 and layer.infilters == layer.filters


class ConvBnActRule(BlockRule):
    """MobileNet ConvBnActBlock (the head): 1x1 conv, BN, act."""

    specs = {r".*_conv/kernel": [(2, IN, DIVIDE), (3, OUT, COPY)], **_bn(r".*_bn", OUT)}

    def is_residual(self, layer):
        return False


def _mob_se(layer, attribute):
    se = getattr(layer, attribute, None)
    return int(se.bottleneck_filters) if se is not None else 1


TABLE = {_mbconv.MBConvBlock: MBConvRule(), _fused.FusedMBConvBlock: FusedMBConvRule(),
         _cba.CBABlock: CBARule(), _mob.DepthwiseConvBlock: DepthwiseBlockRule(),
         _mob.InvertedResidualBlock: InvertedResidualRule(),
         _mob.ConvBnActBlock: ConvBnActRule()}



def handles(backbone):
    """Whether `backbone` is one of the classes grown here.

    Example:

    ```python
    handles(keras_hub.models.MobileNetBackbone(**config))  # True
    ```
    """
    backbone = getattr(backbone, "backbone", backbone)  # a task on one: refused in grow
    return handles_class(type(backbone))


def handles_class(cls):
    """Whether backbones of class `cls` are grown here (a subclass takes its
    parent's driver, as `hub.families.family_of` does)."""
    return issubclass(cls, (_eff.EfficientNetBackbone, _mob.MobileNetBackbone))


# -- configs -------------------------------------------------------------

def _factor(widen, name):
    if widen is None:
        return None
    if isinstance(widen, bool) or not isinstance(widen, (int, float)) or \
            not math.isfinite(widen):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 for {name} (it scales every width of the "
            f"config). Received: widen={widen!r} ({type(widen).__name__}). Fix: e.g. "
            f"widen=2.0 or widen=1.5.")
    families.check_factor(widen)
    return float(widen)


def _deepen_names(deepen, names, cls):
    """{last block name of a stack: count} from deepen=."""
    deepen = options.block_counts(deepen, names[-1])
    out = {}
    for name, count in deepen.items():
        if name not in names:
            raise errors.PlanError(
                f"Expected deepen to name the last block of a stack of {cls} ({names}): an "
                f"identity block is appended to that stack. Received: deepen={{{name!r}: "
                f"{count!r}}}. Fix: name one of those blocks.")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.PlanError(
                f"Expected a positive count of blocks after {name!r}. Received: "
                f"deepen={{{name!r}: {count!r}}}. Fix: e.g. deepen={{{name!r}: 1}}.")
        out[names.index(name)] = count
    return out


def _efficientnet_config(config, factor, deepen):
    """(new config, [(anchor block prefix, new block prefix)])."""
    config = dict(config)
    n = len(config["stackwise_kernel_sizes"])
    wc = list(config["stackwise_width_coefficients"])
    dc = list(config["stackwise_depth_coefficients"])
    repeats = [_eff.round_repeats(r, d) for r, d in zip(config["stackwise_num_repeats"], dc)]
    last = [f"block{i + 1}{chr(96 + repeats[i])}" for i in range(n)]
    inserts = _deepen_names(deepen, last, "EfficientNetBackbone")
    if factor is not None:
        config["stackwise_width_coefficients"] = [w * factor for w in wc]
    pairs = []
    new_repeats = list(config["stackwise_num_repeats"])
    for i, count in sorted(inserts.items()):
        reason = _efficientnet_no_identity(config, i)
        if reason:
            raise errors.PlanError(
                f"Expected a stack whose appended block adds its input back (an identity "
                f"block). Received: deepen={{{last[i]!r}: {count}}}, but {reason}. Fix: "
                f"deepen another stack ({[b for j, b in enumerate(last) if j != i]}).")
        new_repeats[i] = repeats[i] + count
        dc[i] = 1.0
        pairs += [(last[i] + "_", f"block{i + 1}{chr(97 + repeats[i] + t)}_")
                  for t in range(count)]
    config["stackwise_num_repeats"] = new_repeats
    config["stackwise_depth_coefficients"] = dc
    return config, pairs


def _efficientnet_no_identity(config, i):
    if (config.get("stackwise_nores_option") or [False] * 99)[i]:
        return f"stack {i} has stackwise_nores_option=True (no residual add)"
    if (config.get("stackwise_force_input_filters") or [0] * 99)[i] > 0:
        return f"stack {i} has stackwise_force_input_filters > 0 (input width != output)"
    kind = config["stackwise_block_types"][i]
    act = config.get("activation")
    projection = config.get("projection_activation")
    if kind == "cba" or (kind == "fused" and config["stackwise_expansion_ratios"][i] == 1
                         and projection):
        fn = act if kind == "cba" else projection
        if not activations.maps_zero_to_zero(fn):
            return (f"its block ends in activation {fn!r} after the last BatchNorm, and "
                    f"{fn!r}(0) != 0")
    if kind == "v1" and projection and not activations.maps_zero_to_zero(projection):
        return f"its block ends in projection activation {projection!r}, which is not 0 at 0"
    return None


_MOB_LISTS = ("stackwise_expansion", "stackwise_num_filters", "stackwise_kernel_size",
              "stackwise_num_strides", "stackwise_se_ratio", "stackwise_activation",
              "stackwise_padding")


def _mobilenet_config(config, factor, deepen):
    config = {k: ([list(v) for v in config[k]] if k in _MOB_LISTS else config[k])
              for k in config}
    blocks = config["stackwise_num_blocks"]
    last = [f"block_{i + 1}_{blocks[i] - 1}" for i in range(len(blocks))]
    inserts = _deepen_names(deepen, last, "MobileNetBackbone")
    if factor is not None:
        def grow(w):
            return adjust_channels(math.ceil(w * factor - 1e-9))
        for key in ("input_num_filters", "depthwise_filters", "last_layer_filter",
                    "output_num_filters"):
            if config.get(key) is not None:
                config[key] = grow(config[key])
        for key in ("stackwise_expansion", "stackwise_num_filters"):
            config[key] = [[grow(w) for w in stack] for stack in config[key]]
    pairs = []
    blocks = list(blocks)
    for i, count in sorted(inserts.items()):
        k = config["stackwise_kernel_size"][i][-1]
        if not isinstance(k, int) or k % 2 == 0:
            raise errors.PlanError(
                f"Expected an odd kernel size in the last block of the stack, so that an "
                f"appended stride-1 block keeps the spatial size. Received: "
                f"deepen={{{last[i]!r}: {count}}} with kernel size {k!r}. Fix: deepen another "
                f"stack.")
        for t in range(count):
            for key in _MOB_LISTS:
                entry = config[key][i][-1]
                config[key][i].append(1 if key == "stackwise_num_strides" else
                                      (k - 1) // 2 if key == "stackwise_padding" else entry)
            pairs.append((last[i], f"block_{i + 1}_{blocks[i] + t}"))
        blocks[i] += count
    config["stackwise_num_blocks"] = blocks
    return config, pairs


# -- growth --------------------------------------------------------------

class CnnMaker(makers.ConfigMaker):
    """Grows a keras_hub EfficientNetBackbone or MobileNetBackbone into one of
    its class (`keras_net2net.expand_model` runs it for them).

    Requests (`expand_model`'s `widen` and `deepen`):
        widen: None or a factor >= 1 for every width (see the module doc).
        deepen: None, the name of a stack's last block ("block_1_1",
            "block3b"), a list of them or {name: count}: identity blocks
            appended to that stack.

    Raises (from `plan`):
        PlanError: an invalid request, or a width that would not grow.

    Example:

    ```python
    student = n2n.expand_model(mobilenet_backbone, widen=1.5, deepen=["block_2_1"])
    ```
    """

    def handles(self, model):
        return handles(model)

    def probe(self, model):
        return probe(model)

    def plan_config(self, model, request):
        widen, deepen = request.widen, request.deepen
        name = type(model).__name__
        if not isinstance(model, (_eff.EfficientNetBackbone, _mob.MobileNetBackbone)):
            raise errors.UnsupportedModelError(
                f"Expected an EfficientNetBackbone or MobileNetBackbone. Received: {name} "
                f"{model.name!r}, a task on a {type(model.backbone).__name__}, whose head is "
                f"not grown yet. Fix: grow its backbone (expand_model(task.backbone, ...)) and "
                f"build a new {name} on the grown backbone (its head then starts afresh).")
        factor = _factor(widen, name)
        config = model.get_config()
        _check_config_complete(model, config)
        if isinstance(model, _eff.EfficientNetBackbone):
            if isinstance(deepen, (str, list, tuple, dict)):  # "block3b" or "block3b_"
                deepen = _strip(deepen)
            new_config, inserts = _efficientnet_config(config, factor, deepen)
        else:
            new_config, inserts = _mobilenet_config(config, factor, deepen)
        if (factor is None or factor == 1.0) and not inserts:
            raise errors.PlanError(
                f"Expected at least one width or block to grow. Received: widen={widen!r} and "
                f"deepen={deepen!r}. Fix: e.g. widen=2.0.")
        ctx = analysis.analyze(model, grow_outputs=True)
        # The widths are read back from the student (see the module doc), so
        # it is made here, before the plan.
        student, made = makers.build_from_config(type(model), new_config)
        carry.check_own_variables(model, student)  # before any write
        student_graph = Graph(student)
        pairs = makers.pair_by_path(ctx, student, graph=student_graph)
        _check_structure(ctx, model, student, inserts)
        widths = student_widths(ctx, pairs, student_graph, name)
        the_plan = plan_lib.Plan(ctx, widths, request.mapping, request.seed)
        blocks = {}
        for anchor, _ in inserts:
            blocks[anchor] = blocks.get(anchor, 0) + 1
        return makers.Growth(model, request, ctx, the_plan, state=dict(
            config=config, new_config=new_config, inserts=inserts, blocks=blocks,
            deepen=deepen, student=student, made=made, pairs=pairs, grown_outputs=True))

    def make(self, growth):
        state = growth.state
        student = state["student"]
        makers.write_weights(growth, state["pairs"])
        # New blocks copy only the weights whose shapes match: the rest draws first.
        lazy.initialize_rest(student.variables + state["made"])
        _insert_identities(student, state["inserts"])
        return student


MAKER = CnnMaker()


def probe(model, batch=2, size=32, seed=0):
    """A batch of N(0, 1) images for a backbone (unknown sizes: `size`).

    Example:

    ```python
    x = probe(backbone)   # (2, 32, 32, 3) for image_shape (None, None, 3)
    ```
    """
    shape = tuple(d or size for d in model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=(batch,) + shape).astype("float32")


def _check_config_complete(model, config):
    """keras_hub's EfficientNetBackbone.get_config leaves out
    `stackwise_nores_option` and `num_features`: a teacher built with other
    values than the defaults is not what its config builds, so no student of
    its class built from a config can match it."""
    if not isinstance(model, _eff.EfficientNetBackbone):
        return
    lost = []
    if "stackwise_nores_option" not in config and any(
            getattr(l, "nores", False) for l in model.layers):
        lost.append("stackwise_nores_option (a block has nores=True)")
    top = _eff.round_filters(1280, config["stackwise_width_coefficients"][-1],
                             config["min_depth"], config["depth_divisor"],
                             config["use_depth_divisor_as_min_depth"],
                             config["cap_round_filter_decrease"])
    if "num_features" not in config and model.get_layer("top_conv").filters != top:
        lost.append(f"num_features (top_conv has {model.get_layer('top_conv').filters} "
                    f"filters, the config builds {top})")
    if lost:
        raise errors.UnsupportedModelError(
            f"Expected a backbone whose config holds everything it was built with. Received: "
            f"EfficientNetBackbone {model.name!r} built with {', '.join(lost)}, which "
            f"keras_hub's get_config() leaves out, so no model of its class built from a "
            f"config (nor its own .keras file) computes what it computes. Fix: build it with "
            f"the defaults (stackwise_nores_option all False, num_features=1280), or grow a "
            f"plain functional copy of it (keras.Model(backbone.inputs, backbone.outputs)).")


def _strip(deepen):
    if isinstance(deepen, str):
        return deepen.rstrip("_")
    if isinstance(deepen, dict):
        return {(k.rstrip("_") if isinstance(k, str) else k): v for k, v in deepen.items()}
    return [d.rstrip("_") if isinstance(d, str) else d for d in deepen]


def _check_structure(ctx, teacher, student, inserts):
    """The student has the teacher's layers and residual adds, plus the
    inserted blocks; a width change that adds or drops an add is refused."""
    from keras_net2net import rules

    new = [b for _, b in inserts]

    def adds(model):
        return {l.name for l in model.layers if isinstance(l, keras.layers.Add)}
    extra = sorted((adds(teacher) ^ adds(student)) -
                   {n for n in adds(student) if any(n.startswith(b) for b in new)})
    for layer in teacher.layers:
        rule = rules.rule_for(layer)
        if not isinstance(rule, BlockRule):
            continue
        other = student.get_layer(layer.name)
        if rule.is_residual(layer) != rule.is_residual(other):
            extra.append(f"{layer.name} (residual add {rule.is_residual(layer)} -> "
                         f"{rule.is_residual(other)})")
    if extra:
        raise errors.PlanError(
            f"Expected the grown {type(student).__name__} to keep the teacher's blocks and "
            f"residual adds. Received: the edited config changes {extra[:6]}: two widths "
            f"that differ in the teacher round to the same width (or the reverse). Fix: use "
            f"another factor, e.g. widen=2.0.")


def student_widths(ctx, pairs, student_graph, name):
    """{group root: the student's width}, read from the student built from
    the edited config (its layers paired to the teacher's by `pairs`); a
    group that would shrink or cannot grow is refused, typed."""
    from keras_net2net.rules import rule_for as rule_of

    groups = ctx.groups
    found = {}  # root -> (width, where)

    def put(atom, width, where):
        root = groups.find(atom)
        old = groups.widths[root]
        if width == old:
            found.setdefault(root, (width, where))
            return
        if groups.is_frozen(root) or width < old:
            why = (groups.frozen_reasons(root) or ["it would shrink"])[0]
            raise errors.FrozenGroupError(
                f"Expected every width of {name} to grow exactly. Received: {where} goes "
                f"{old} -> {width}, but {why}. Fix: another factor (e.g. widen=2.0).")
        if root in found and found[root][0] != width:
            raise errors.PlanError(
                f"Expected one width for layers that grow together. Received: {where} -> "
                f"{width} but {found[root][1]} -> {found[root][0]}. This is a bug in "
                f"keras-net2net's keras_hub support: please report it.")
        found[root] = (width, where)

    for layer_id, atom in ctx.producer_atoms.items():
        student_layer = pairs[layer_id]
        calls = student_graph.calls_of(student_layer)
        width = student_graph.shapes[calls[0].outputs[0]][-1]
        put(atom, int(width), f"layer {ctx.graph.paths[layer_id]!r}")
    for layer_id, atoms in ctx.inner_atoms.items():
        teacher_layer = ctx.graph.layers[layer_id]
        rule = rule_of(teacher_layer)
        for key, atom in atoms.items():
            put(atom, int(rule.inner[key].width(pairs[layer_id])),
                f"{key} of {teacher_layer.name!r}")
    return {root: w for root, (w, _) in found.items() if w != groups.widths[root]}


def _insert_identities(student, inserts):
    """Each new block: the anchor's weights where shapes match, its last
    BatchNorm's gamma and beta zero (x + 0 = x)."""
    from keras_net2net import rules

    layers = {l.name: l for l in student.layers}
    for anchor, new in inserts:
        if new in layers:  # a composite block
            pairs = [(layers[anchor], layers[new])]
            last = rules.rule_for(layers[new]).last_norm
        else:  # EfficientNet v1: plain layers named by prefix
            pairs = [(layers[n.replace(new, anchor, 1)], l) for n, l in layers.items()
                     if n.startswith(new) and n.replace(new, anchor, 1) in layers]
            last = None
        for a, b in pairs:
            for va, vb in zip(a.weights, b.weights):
                if tuple(va.shape) == tuple(vb.shape):
                    vb.assign(va.numpy())
        zeroed = 0
        for a, b in pairs:
            for variable in b.weights:
                below = variable.path.split(b.name + "/", 1)[-1]
                hit = (re.fullmatch(last, below) if last else
                       b.name == new + "project_bn" and variable.name in ("gamma", "beta"))
                if hit:
                    variable.assign(np.zeros(variable.shape, variable.dtype))
                    zeroed += 1
        if zeroed != 2:
            raise AssertionError(f"internal: {new}: {zeroed} norm weights zeroed, expected 2")
