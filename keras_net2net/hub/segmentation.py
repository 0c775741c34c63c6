"""Dense-prediction backbones on an image encoder (SegFormer on MiT,
DeepLabV3 and BASNet on ResNet, DepthAnything on DINOv2), and the
segmenters on them, grown into bigger models of their own class.

Each wraps an `image_encoder` sub-backbone whose own family grows already
(hub/mit.py, hub/convnets.py, hub/dinov2.py): the encoder's config grows by
that family's rules (its `targets`, or its convnets `Spec.widen`), the
head's width key (`projection_filters`) by the same factor, and the student
is the class `from_config` of the composite config holding the grown encoder
config. The heads are plain Keras layers, which the core rules grow;
DeepLabV3's atrous spatial pyramid pooling and DepthAnything's neck have
rules here. Layers pair by graph order, not path: the head's names follow
the encoder's widths (SegFormer's `linear_{hidden dim}`) and nested models
are auto-named. Every width is read back from the student
(`hub.cnn.student_widths`), so widths the class fixes (DeepLabV3's 256-wide
pyramid pooling and segmentation head, ResNet's 64-wide first stack,
DepthAnything's neck) stay.

Deeper, through the encoder: `deepen=` names a block of the encoder as its
own family does (`"hierarchical_encoder_0_0"` for MiT; `"stack1_block1"`,
the last block of a stack, for ResNet); the new block starts as the identity
as in that family. BASNet and DepthAnything refuse it, typed (`Head.
no_identity` says why).

Reaches keras_hub internals: `keras_hub.src.models.deeplab_v3.
deeplab_v3_layers.SpatialPyramidPooling` and `depth_anything_layers.
DepthAnythingNeck` (not exported; their rules).
"""

import collections
import dataclasses

import keras_hub
from keras_hub.src.models.deeplab_v3 import deeplab_v3_layers
from keras_hub.src.models.depth_anything import depth_anything_layers

from keras_net2net import analysis
from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import lazy
from keras_net2net import makers
from keras_net2net import options
from keras_net2net import plan as plan_lib
from keras_net2net.graph import Graph
from keras_net2net.hub import backbone as hub_backbone
from keras_net2net.hub import cnn
from keras_net2net.hub import convnets
from keras_net2net.hub import families
from keras_net2net.hub import mit
from keras_net2net.rules import composite
from keras_net2net.rules.base import DIVIDE
from keras_net2net.rules.base import IN
from keras_net2net.rules.base import OUT
from keras_net2net.rules.base import input_layout
from keras_net2net.rules.base import require_axis


class SpatialPyramidPoolingRule(composite.CompositeRule):
    """Atrous spatial pyramid pooling: parallel 1x1, dilated 3x3 and pooled
    1x1 convolutions read the stream (rows divided by the copy counts; the
    pooled branch averages each channel, so copies stay copies), and their
    concatenation is projected to `num_channels`. That width also sets every
    branch's, and DeepLabV3 fixes it at 256: it is kept."""

    residual = False
    specs = {r".*/(aspp_conv_\d+|conv_pooling)/kernel": [(2, IN, DIVIDE)]}

    def propagate(self, ctx, call):
        layout = input_layout(ctx, call)
        if not require_axis(ctx, call, layout, ctx.rank(call.inputs[0]) - 1):
            layout = None
        out = ctx.fresh(call.outputs[0], ctx.rank(call.outputs[0]) - 1, call.path, frozen=(
            f"{type(call.op).__name__} {call.path!r}: num_channels also sets its branches' "
            "widths (DeepLabV3 fixes it at 256)"))
        ctx.record_io(call, **{IN: layout, OUT: out})


class DepthAnythingNeckRule(composite.CompositeRule):
    """DepthAnything's neck reads DINOv2's stream at several depths (token to
    image, then a 1x1 `projection` conv per stage: rows divided) and works at
    its own widths (`neck_hidden_dims`, `fusion_hidden_dim`), which are kept."""

    residual = False
    specs = {r"reassemble_stage_\d+/projection/kernel": [(2, IN, DIVIDE)]}

    def propagate(self, ctx, call):
        layouts = [ctx.layout(key) for key in call.inputs]
        roots = {ctx.groups.find(l.segments[0].atom) if l is not None and len(l.segments) == 1
                 and l.axis == ctx.rank(key) - 1 else None
                 for l, key in zip(layouts, call.inputs)}
        layout = layouts[0] if len(roots) == 1 and None not in roots else None
        if layout is None:
            for other in layouts:
                ctx.groups.freeze_layout(other, (
                    f"{type(call.op).__name__} {call.path!r} reads features that are not one "
                    "channel group on their last axis"))
        outs = [ctx.fresh(key, ctx.rank(key) - 1, call.path, frozen=(
            f"{type(call.op).__name__} {call.path!r}: its neck_hidden_dims and "
            "fusion_hidden_dim are kept")) for key in call.outputs]
        ctx.record_io(call, **{IN: layout, OUT: outs[0]})


TABLE = {deeplab_v3_layers.SpatialPyramidPooling: SpatialPyramidPoolingRule(),
         depth_anything_layers.DepthAnythingNeck: DepthAnythingNeckRule()}


def _unbuilt_heads(config):
    """BASNet's prediction and refinement heads are Sequentials serialised
    with the width they read (its `projection_filters` x 8, x 1): without
    their input layer and build shapes they build at the width they are
    called on."""
    heads = config["prediction_heads"] + [config["refinement_head"]]
    odd = [h.get("class_name") if isinstance(h, dict) else type(h).__name__ for h in heads
           if not isinstance(h, dict) or h.get("class_name") != "Sequential"]
    if odd:
        raise errors.UnsupportedModelError(
            f"Expected BASNetBackbone's prediction and refinement heads to be Sequentials (its "
            f"defaults), which build at the width they read. Received: {odd}. Fix: build the "
            f"teacher with the default heads, or keep its widths.")
    for head in heads:
        head.pop("build_config", None)
        inner = head["config"]
        inner.pop("build_input_shape", None)
        inner["layers"] = [l for l in inner["layers"] if l.get("class_name") != "InputLayer"]
        for layer in inner["layers"]:
            layer.pop("build_config", None)


@dataclasses.dataclass(frozen=True)
class Head:
    """What a composite class adds to its encoder.

    Attributes:
        keys: the config keys of the head's widths (grown by the factor).
        edit: None, or a function editing the grown config in place.
        no_identity: None, or why no block added to the encoder is the
            identity of the composite (with the closest exact alternative).
    """

    keys: tuple
    edit: object = None
    no_identity: str = None


_BASNET_TAPS = (
    "BASNet reads each ResNet stack's last residual add before its ReLU "
    "(`stack{i}_block{n}_add`), and an appended block adds after that ReLU, so relu(x) "
    "reaches the head where x did")


_DEPTH_TAPS = (
    "its neck reads DINOv2's stream after the blocks its `feature_keys` name, and blocks "
    "appended at the encoder's end feed no feature it reads (dead weight)")


def _heads():
    """{class: Head}."""
    m = keras_hub.models
    return {m.SegFormerBackbone: Head(("projection_filters",)),
            m.DeepLabV3Backbone: Head(("projection_filters",)),
            # Its first conv writes the ResNet stem's width: both scale alike.
            m.BASNetBackbone: Head(("projection_filters",), _unbuilt_heads, _BASNET_TAPS),
            m.DepthAnythingBackbone: Head((), None, _DEPTH_TAPS)}


def _deeper_encoders():
    """Encoders deepened after widening, by rebuilding: (config editor,
    weight copier) of their family."""
    return {keras_hub.models.MiTBackbone: (mit.deeper_config, mit.copy_deeper)}


def composite_of(model):
    """The composite backbone of `model` (itself, or a task's), or None."""
    backbone = getattr(model, "backbone", model)
    heads = _heads()
    return backbone if any(c in heads for c in type(backbone).__mro__) else None


class CompositeMaker(makers.ConfigMaker):
    """Grows a keras_hub backbone on an `image_encoder` (SegFormer,
    DeepLabV3, BASNet, DepthAnything), or a task on one, into one of its class
    (`keras_net2net.expand_model` runs it for them).

    Requests (`expand_model`'s `widen` and `deepen`):
        widen: None or a factor >= 1: the encoder's widths (as its own family
            grows them) and the head's `projection_filters`.
        deepen: None, a block of the encoder as its family names it, a list
            of them or {name: count}.

    Raises (from `plan`):
        PlanError: an invalid request (the encoder family's own refusals
            included, e.g. MiT at a non-integer factor).
        FrozenGroupError: a width that would not grow exactly.

    Example:

    ```python
    student = n2n.expand_model(segformer_backbone, widen=2.0,
                               deepen=["hierarchical_encoder_0_0"])
    ```
    """

    def handles(self, model):
        return composite_of(model) is not None

    def probe(self, model):
        return cnn.probe(getattr(model, "backbone", model))

    def plan_config(self, model, request):
        widen, deepen = request.widen, request.deepen
        task = model if hasattr(model, "backbone") else None
        backbone = composite_of(model)
        head, encoder = _heads_of(backbone), backbone.image_encoder
        factor = convnets.factor_of(widen, type(backbone).__name__)
        config = backbone.get_config()
        encoder_config = config["image_encoder"]["config"]
        if options.as_counts(deepen) and head.no_identity:
            raise errors.PlanError(
                f"Expected a block whose insertion leaves {type(backbone).__name__} unchanged. "
                f"Received: deepen={deepen!r}, but {head.no_identity}. Fix: grow it wider "
                f"(widen=2.0), which stays exact.")
        inserts = _encoder_inserts(encoder, encoder_config, deepen)
        if (factor is None or factor == 1.0) and not inserts:
            raise errors.PlanError(
                f"Expected at least one width or block to grow. Received: widen={widen!r} and "
                f"deepen={deepen!r}. Fix: e.g. widen=2.0.")
        new_encoder = _encoder_widen(encoder, encoder_config, factor)
        later, skip, new_blocks = None, (), []
        if inserts:
            deeper = _deeper_encoders().get(type(encoder))
            spec = convnets.spec_of(type(encoder))
            if deeper is not None:  # after widening, by rebuilding
                later = (deeper, inserts)
            else:  # in the same build: new layers by name, made the identity below
                new_encoder, new_blocks = spec.deepen(new_encoder, inserts)
                skip = tuple(new for _, new in new_blocks)
        new_config = _with_encoder(config, new_encoder)
        for key in head.keys:
            new_config[key] = convnets.scaled(config[key], factor or 1.0)
        if head.edit is not None:
            head.edit(new_config)
        ctx = analysis.analyze(model, grow_outputs=task is None)
        student, made = hub_backbone.build_student(task, backbone, new_config)  # deferred
        carry.check_own_variables(model, student)  # before any write
        pairs = mit.pair_layers(ctx, None, student, None, skip=skip)
        widths = cnn.student_widths(ctx, pairs, Graph(student), type(model).__name__)
        the_plan = plan_lib.Plan(ctx, widths, request.mapping, request.seed)
        the_plan.keep_epsilon = True  # the class fixes its norms' epsilons
        return makers.Growth(model, request, ctx, the_plan, state=dict(
            config=config, new_config=new_config, task=task,
            blocks=dict(collections.Counter(anchor for anchor, _ in new_blocks)),
            backbone=backbone, student=student, made=made, pairs=pairs,
            new_blocks=new_blocks, later=later, grown_outputs=task is None))

    def make(self, growth):
        state = growth.state
        student = state["student"]
        makers.write_weights(growth, state["pairs"])
        lazy.initialize_rest(student.variables + state["made"])  # new blocks: set below
        encoder = getattr(student, "backbone", student).image_encoder
        spec = convnets.spec_of(type(encoder))
        for anchor, new in state["new_blocks"]:
            spec.identity(encoder, anchor, new)
        if state["later"] is not None:
            student = _deepen_later(state, student)
        return student


MAKER = CompositeMaker()


def _heads_of(backbone):
    heads = _heads()
    return next(heads[c] for c in type(backbone).__mro__ if c in heads)


def _encoder_widen(encoder, config, factor):
    """The encoder's config grown by its own family's rules."""
    if factor is None:
        return dict(config)
    spec = convnets.spec_of(type(encoder))
    if spec is not None:
        return spec.widen(config, factor)
    family = families.family_of(type(encoder))
    targets = (family.targets or hub_backbone.default_targets)(family, config, factor)
    return hub_backbone.targets_config(family, config, targets)


def _encoder_inserts(encoder, config, deepen):
    """{block or stack index: count} from deepen=, as the encoder's family
    reads it."""
    if not options.as_counts(deepen):
        return {}
    spec = convnets.spec_of(type(encoder))
    if spec is not None:
        return convnets.stack_inserts(spec, config, deepen, type(encoder).__name__)
    family = families.family_of(type(encoder))
    if type(encoder) not in _deeper_encoders():
        raise errors.PlanError(
            f"Expected an image encoder that deepens inside a composite (MiTBackbone, "
            f"ResNetBackbone). Received: deepen={deepen!r} for a {type(encoder).__name__}. "
            f"Fix: grow it wider (widen=2.0), which stays exact.")
    return hub_backbone.block_inserts(family, config, deepen)


def _with_encoder(config, encoder_config):
    config = carry.detached(config)
    config["image_encoder"] = dict(config["image_encoder"], config=encoder_config)
    return config


def _deepen_later(state, student):
    """The widened student rebuilt with a deeper encoder, its weights copied
    in graph order, new blocks made the identity by the encoder's family."""
    (deeper_config, copy_deeper), inserts = state["later"]
    task = state["task"]
    backbone = getattr(student, "backbone", student)
    config = backbone.get_config()
    encoder_config, anchors = deeper_config(config["image_encoder"]["config"], inserts)
    deeper, made = hub_backbone.build_student(task, backbone,
                                              _with_encoder(config, encoder_config))
    copy_deeper(student, deeper, anchors)
    lazy.initialize_rest(deeper.variables + made)
    state["blocks"] = anchors
    state["new_config"] = getattr(deeper, "backbone", deeper).get_config()
    return deeper


def _families():
    """Registered so that the registry and the lookups find them (`MAKER`
    grows them)."""
    return [families.Family(cls, embedding="image_encoder", block="{}",
                            identity="see keras_net2net.hub.segmentation")
            for cls in _heads()]


FAMILIES = _families()
