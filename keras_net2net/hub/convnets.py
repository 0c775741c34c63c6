"""keras_hub CNN backbones built of plain Keras layers (ResNet, VGG,
DenseNet, Xception, CSPNet) grown into bigger backbones of their own class.

Their graphs are plain functional graphs (Conv2D, SeparableConv2D,
BatchNormalization, Add, Concatenate, pooling), which the core rules grow
exactly; what is particular is only how the student is made: the class
`from_config` with its width keys edited (one `Spec` per class below), every
teacher layer paired with the student layer of the same name. The widths are
not chosen here but read back from the student (as keras_net2net.hub.cnn
does for EfficientNet and MobileNet): every group takes the width the class
derives from the edited config (DenseNet's transitions: int(C * compression);
CSPNet's `make_divisible`). Widths a class fixes whatever the config says
(ResNet's first stack, 64; DenseNet's stem, 64) stay, and the report says so.

Deeper, where a block of the class is an identity block:
- ResNet: `deepen=["stack1_block1"]` (the last block of a stack) appends a
  block to the stack (`stackwise_num_blocks`): a copy of the anchor whose last
  BatchNorm has gamma = beta = 0 (post-activation: relu(x + 0) = x, x being a
  ReLU output) or whose last conv is zero (pre-activation: x + 0).
- VGG: `deepen=["block2_conv2"]` (the last conv of a block) appends a conv to
  the block (`stackwise_num_repeats`): an identity kernel at the centre, zero
  bias, after the same ReLU (relu(x) = x for x >= 0).
- CSPNet: `deepen=["stage_1_block_1"]` appends a block to the stage
  (`stackwise_depth`): dark and edge blocks x + act(bn(...)) with that norm
  zero (act(0) = 0 is checked); bottleneck blocks act(x + bn(...)) only where
  act is ReLU (x is a ReLU output), else refused.
- DenseNet, Xception: a typed refusal that says why and offers the closest
  exact alternative (wider).
"""

import dataclasses
import math
import re

import numpy as np

from keras_net2net import activations
from keras_net2net import analysis
from keras_net2net import carry
from keras_net2net import options
from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net import makers
from keras_net2net import plan as plan_lib
from keras_net2net.graph import Graph
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import cnn
from keras_net2net.hub import families


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one CNN backbone class's config grows.

    Attributes:
        widen: function (config, factor) -> a new config with every width
            key scaled (rounded up).
        anchors: function config -> the block names `deepen=` accepts (the
            last block of each stack), or a string: why no identity block
            exists and the closest exact alternative.
        deepen: function (config, {anchor index: count}) -> (new config,
            [(anchor layer prefix, new layer prefix)]).
        identity: function (student, anchor prefix, new prefix): makes the
            new block the identity (its weights copied from the anchor).
        view: function (model, check) -> the functional model to analyse and pair
            (a flat view of nested keras_hub layers, hub.nested), or None:
            the model itself.
        rename: function (teacher backbone, student backbone) -> a function
            teacher path -> student path, where layer names carry the
            backbone's name (HGNetV2), or None.
        task: function (task config, factor) -> the task's config with its
            own widths grown (a head conv's filters), or None.
        pairs: function (ctx, student view) -> {id(teacher layer): student
            layer}, where layers do not pair by path (auto names), or None.
    """

    widen: object
    anchors: object
    deepen: object = None
    identity: object = None
    view: object = None
    rename: object = None
    task: object = None
    pairs: object = None


def scaled(value, factor):
    """ceil(value * factor) for an int, element-wise for (nested) lists."""
    if isinstance(value, (list, tuple)):
        return [scaled(v, factor) for v in value]
    return int(math.ceil(value * factor - 1e-9))


# -- ResNet -----------------------------------------------------------------

def _resnet_widen(config, factor):
    config = dict(config)
    config["input_conv_filters"] = scaled(config["input_conv_filters"], factor)
    # keras_hub's ResNetBackbone requires stackwise_num_filters[0] == 64.
    filters = list(config["stackwise_num_filters"])
    config["stackwise_num_filters"] = filters[:1] + scaled(filters[1:], factor)
    if config["block_type"] in ("basic_block", "basic_block_vd"):
        # The first stack adds its input back without a shortcut conv: the
        # stem writes the first stack's width, which stays.
        config["input_conv_filters"][-1] = filters[0]
    return config


def _resnet_anchors(config):
    return [f"stack{i}_block{n - 1}" for i, n in enumerate(config["stackwise_num_blocks"])]


def _resnet_deepen(config, inserts):
    config = dict(config)
    blocks = list(config["stackwise_num_blocks"])
    pairs = []
    for i, count in sorted(inserts.items()):
        pairs += [(f"stack{i}_block{blocks[i] - 1}_", f"stack{i}_block{blocks[i] + t}_")
                  for t in range(count)]
        blocks[i] += count
    config["stackwise_num_blocks"] = blocks
    return config, pairs


def _resnet_identity(student, anchor, new):
    pre = student.get_config()["use_pre_activation"]
    last = max(int(m.group(1)) for l in student.layers
               for m in [re.fullmatch(re.escape(new) + r"(\d)_conv", l.name)] if m)
    if pre:  # x + conv(...): the last conv zero
        zero = [(f"{new}{last}_conv", ("kernel", "bias"))]
    else:  # relu(x + bn(conv(...))): the last norm writes 0
        zero = [(f"{new}{last}_bn", ("gamma", "beta"))]
    _copy_block(student, anchor, new)
    _zero(student, zero)


# -- VGG --------------------------------------------------------------------

def _vgg_widen(config, factor):
    return dict(config, stackwise_num_filters=scaled(config["stackwise_num_filters"], factor))


def _vgg_anchors(config):
    return [f"block{i + 1}_conv{n}" for i, n in enumerate(config["stackwise_num_repeats"])]


def _vgg_deepen(config, inserts):
    config = dict(config)
    repeats = list(config["stackwise_num_repeats"])
    pairs = []
    for i, count in sorted(inserts.items()):
        pairs += [(f"block{i + 1}_conv{repeats[i]}", f"block{i + 1}_conv{repeats[i] + 1 + t}")
                  for t in range(count)]
        repeats[i] += count
    config["stackwise_num_repeats"] = repeats
    return config, pairs


def _vgg_identity(student, anchor, new):
    """conv(relu) after a relu conv: identity kernel at the centre, zero bias."""
    layer = student.get_layer(new)
    kernel = np.zeros(layer.kernel.shape, layer.kernel.dtype)
    kh, kw, n, _ = kernel.shape
    kernel[kh // 2, kw // 2] = np.eye(n, dtype=kernel.dtype)
    layer.kernel.assign(kernel)
    layer.bias.assign(np.zeros(layer.bias.shape, layer.bias.dtype))


# -- DenseNet, Xception, CSPNet --------------------------------------------

def _densenet_widen(config, factor):
    # The stem conv has 64 filters whatever the config; the transitions
    # derive theirs from their input (int(C * compression_ratio)).
    return dict(config, growth_rate=scaled(config["growth_rate"], factor))


def _xception_widen(config, factor):
    return dict(config, stackwise_conv_filters=scaled(config["stackwise_conv_filters"], factor))


def _cspnet_widen(config, factor):
    return dict(config, stem_filters=scaled(config["stem_filters"], factor),
                stackwise_num_filters=scaled(config["stackwise_num_filters"], factor))


_DENSE_REFUSAL = (
    "a layer of a dense block concatenates new channels to its input, so no inserted layer "
    "is the identity (its new channels change every reader after it)")
_XCEPTION_REFUSAL = (
    "its blocks are numbered through the whole model and the entry, middle and exit flows "
    "are told apart by position, so a block added to the config renames or changes the "
    "blocks after it")
def _cspnet_anchors(config):
    kind = config["block_type"]
    act = config.get("activation", "leaky_relu")
    if kind == "bottleneck_block" and act not in ("relu",):
        return (f"its bottleneck blocks apply {act!r} after the residual add, and "
                f"{act}({act}(x)) != {act}(x), so x + 0 does not pass through unchanged")
    if kind != "bottleneck_block" and not activations.maps_zero_to_zero(act):
        return (f"its {kind}s end in {act!r} after the last BatchNorm, and {act}(0) != 0, so "
                f"a zero norm does not make the block add 0")
    return [f"stage_{i}_block_{n - 1}" for i, n in enumerate(config["stackwise_depth"])]


def _cspnet_deepen(config, inserts):
    config = dict(config)
    depth = list(config["stackwise_depth"])
    pairs = []
    for i, count in sorted(inserts.items()):
        pairs += [(f"stage_{i}_block_{depth[i] - 1}_", f"stage_{i}_block_{depth[i] + t}_")
                  for t in range(count)]
        depth[i] += count
    config["stackwise_depth"] = depth
    return config, pairs


def _cspnet_identity(student, anchor, new):
    """A dark or edge block x + act(bn_2(...)) with bn_2 writing 0 (act(0) = 0);
    a bottleneck block relu(x + bn_3(...)) with bn_3 writing 0 (x >= 0)."""
    kind = student.get_config()["block_type"]
    last = 3 if kind == "bottleneck_block" else 2
    _copy_block(student, anchor, new)
    _zero(student, [(f"{new}{kind}_bn_{last}", ("gamma", "beta"))])


_REGISTERED = {}


def register_specs(specs):
    """Adds {backbone class: Spec} from a family module built on this maker
    (hub.hgnetv2, hub.mobilenetv5, hub.retinanet): they import this module,
    never the other way round."""
    _REGISTERED.update(specs)


def _specs():
    import keras_hub

    m = keras_hub.models
    return {
        **_REGISTERED,
        m.ResNetBackbone: Spec(_resnet_widen, _resnet_anchors, _resnet_deepen,
                               _resnet_identity),
        m.VGGBackbone: Spec(_vgg_widen, _vgg_anchors, _vgg_deepen, _vgg_identity),
        m.DenseNetBackbone: Spec(_densenet_widen, lambda config: _DENSE_REFUSAL),
        m.XceptionBackbone: Spec(_xception_widen, lambda config: _XCEPTION_REFUSAL),
        m.CSPNetBackbone: Spec(_cspnet_widen, _cspnet_anchors, _cspnet_deepen,
                               _cspnet_identity),
    }


def spec_of(cls):
    """The Spec of a backbone class (or of its nearest base class), or None."""
    specs = _specs()
    return next((specs[c] for c in cls.__mro__ if c in specs), None)


# -- growth -------------------------------------------------------------------

class ConvnetMaker(makers.ConfigMaker):
    """Grows a keras_hub ResNet, VGG, DenseNet, Xception or CSPNet backbone
    (or an image classifier on one) into one of its class
    (`keras_net2net.expand_model` runs it for them).

    Requests (`expand_model`'s `widen` and `deepen`):
        widen: None or a factor >= 1 for every width key of the config.
        deepen: None, the last block of a stack ("stack1_block1",
            "block2_conv2"), a list of them or {name: count}.

    Raises (from `plan`):
        PlanError: an invalid request, or deepening a class with no identity
            block.
        FrozenGroupError: a width that would not grow exactly.

    Example:

    ```python
    student = n2n.expand_model(vgg_backbone, widen=2.0, deepen=["block2_conv2"])
    ```
    """

    def handles(self, model):
        return spec_of(type(getattr(model, "backbone", model))) is not None

    def probe(self, model):
        return cnn.probe(getattr(model, "backbone", model))

    def plan_config(self, model, request):
        widen, deepen = request.widen, request.deepen
        name = type(model).__name__
        task = model if hasattr(model, "backbone") else None
        backbone = model.backbone if task is not None else model
        spec = spec_of(type(backbone))
        factor = factor_of(widen, name)
        config = backbone.get_config()
        inserts = stack_inserts(spec, config, deepen, name)
        if (factor is None or factor == 1.0) and not inserts:
            raise errors.PlanError(
                f"Expected at least one width or block to grow. Received: widen={widen!r} and "
                f"deepen={deepen!r}. Fix: e.g. widen=2.0.")
        new_config = spec.widen(config, factor) if factor is not None else dict(config)
        pairs_new = []
        if inserts:
            new_config, pairs_new = spec.deepen(new_config, inserts)
        # A task's head (pooling, Dense) reads the grown features: its logits
        # keep their width.
        view = spec.view or (lambda m, check=True: m)
        ctx = analysis.analyze(view(model), grow_outputs=task is None)
        student, made = hub_backbone.build_student(
            task, backbone, new_config,
            spec.task and (lambda c: spec.task(c, factor)))  # deferred
        carry.check_own_variables(model, student)  # before any write
        new_backbone = student.backbone if task is not None else student
        # Some classes' get_config() leaves the name out (VGG): a task's
        # student backbone may be named otherwise.
        student_view = view(student, False)
        if spec.pairs is not None:  # auto-named layers: by graph order
            pairs, student_graph = spec.pairs(ctx, student_view), Graph(student_view)
        else:
            pairs, student_graph = _pairs(ctx, student_view, {backbone.name: new_backbone.name},
                                          spec.rename and spec.rename(backbone, new_backbone))
        widths = cnn.student_widths(ctx, pairs, student_graph, name)
        the_plan = plan_lib.Plan(ctx, widths, request.mapping, request.seed)
        blocks = {}
        for anchor, _ in pairs_new:
            blocks[anchor] = blocks.get(anchor, 0) + 1
        return makers.Growth(model, request, ctx, the_plan, state=dict(
            config=config, new_config=new_config, blocks=blocks, deepen=deepen,
            student=student, made=made, pairs=pairs, spec=spec, pairs_new=pairs_new,
            new_backbone=new_backbone, grown_outputs=task is None))

    def make(self, growth):
        state = growth.state
        student = state["student"]
        makers.write_weights(growth, state["pairs"])
        lazy.initialize_rest(student.variables + state["made"])  # the new blocks: set below
        for anchor, new in state["pairs_new"]:
            state["spec"].identity(state["new_backbone"], anchor, new)
        return student


MAKER = ConvnetMaker()


def factor_of(widen, name):
    """The widening factor (a float) or None; PlanError for anything else."""
    if widen is None:
        return None
    if not families.is_number(widen):
        raise errors.PlanError(
            f"Expected widen to be a factor >= 1 for {name} (it scales every width key of the "
            f"config). Received: widen={widen!r} ({type(widen).__name__}). Fix: e.g. "
            f"widen=2.0 or widen=1.5.")
    families.check_factor(widen)
    return float(widen)


def stack_inserts(spec, config, deepen, name):
    """{stack index: count} from deepen=."""
    counts = options.as_counts(deepen)
    if not counts:
        return {}
    anchors = spec.anchors(config)
    if isinstance(anchors, str):
        raise errors.PlanError(
            f"Expected a backbone whose blocks admit an identity block. Received: "
            f"deepen={deepen!r} for {name}: {anchors}. Fix: grow it wider (widen=2.0), which "
            f"stays exact.")
    counts = options.block_counts(deepen, anchors[-1])
    out = {}
    for block, count in counts.items():
        if block not in anchors:
            raise errors.PlanError(
                f"Expected deepen to name the last block of a stack of {name} ({anchors}): an "
                f"identity block is appended to that stack. Received: deepen={{{block!r}: "
                f"{count!r}}}. Fix: name one of those blocks.")
        if count == "identity":
            count = 1
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise errors.PlanError(
                f"Expected a positive count of blocks after {block!r}. Received: "
                f"deepen={{{block!r}: {count!r}}}. Fix: e.g. deepen={{{block!r}: 1}}.")
        out[anchors.index(block)] = count
    return out


def _pairs(ctx, student, renamed, below=None):
    """{id(teacher layer): student layer} by path, the first path element
    renamed by `renamed` and the path by `below` (or None); and the
    student's Graph."""
    def rename(path):
        path = below(path) if below is not None else path
        head, _, rest = path.partition("/")
        return f"{renamed.get(head, head)}/{rest}" if rest else path

    graph = Graph(student)
    return makers.pair_by_path(ctx, student, rename=rename, graph=graph), graph


def _copy_block(student, anchor, new):
    """Every layer `new*` takes the weights of its `anchor*` namesake."""
    layers = {l.name: l for l in student.layers}
    for layer_name, layer in layers.items():
        if layer_name.startswith(new):
            source = layers[anchor + layer_name[len(new):]]
            for a, b in zip(source.weights, layer.weights):
                b.assign(a.numpy())


def _zero(student, what):
    for layer_name, names in what:
        layer = student.get_layer(layer_name)
        hit = [v for v in layer.weights if v.name in names]
        if not hit:
            raise errors.UnsupportedModelError(
                f"Expected {layer_name!r} to hold {names} (an identity block's last scale). "
                f"Received: {[v.name for v in layer.weights]}. This is a bug in "
                f"keras-net2net's keras_hub support: please report it.")
        for variable in hit:
            variable.assign(np.zeros(variable.shape, variable.dtype))


def family(cls, embedding):
    """The Family of a CNN backbone class grown here (registered so that the
    lookup and the registry table find it; `MAKER` grows it)."""
    return families.Family(cls, embedding=embedding, block="{}", identity=(
        "see keras_net2net.hub.convnets"))


def _families():
    import keras_hub

    m = keras_hub.models
    return [family(m.ResNetBackbone, "conv1_conv"), family(m.VGGBackbone, "block1_conv1"),
            family(m.DenseNetBackbone, "conv1_conv"),
            family(m.XceptionBackbone, "block1_conv1"),
            family(m.CSPNetBackbone, "stem"), family(m.HGNetV2Backbone, "embedder"),
            family(m.RetinaNetBackbone, "backbone"),
            family(m.MobileNetV5Backbone, "conv_stem")]


FAMILIES = _families()
