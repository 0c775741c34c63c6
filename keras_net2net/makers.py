"""How a student is made: the strategies the one pipeline runs, and their registry.

`keras_net2net.expand_model` runs one pipeline for every model:

    maker = maker_for(model)          # the registry below; clone-based by default
    growth = maker.plan(model, request)       # analyse -> channel groups -> plan
    growth.student = maker.make(growth)       # make the student, write its weights
    report = maker.report(growth)             # keras_net2net.report.assemble
    verify.check(teacher, student, report, **maker.verification(growth))

What differs between a plain functional model and a keras_hub backbone is
only how the student is made:

- `CloneMaker` (the default): `keras.models.clone_model` with hooks
  (`keras_net2net.rebuild.Rebuilder`): every layer re-made from its edited
  config, inserted layers threaded after their anchors.
- `ConfigMaker`: the teacher's own class `from_config` of a grown config,
  teacher layers paired with student layers by path (`pair_by_path`), weights
  written by the same `Rebuilder.write_weights`. keras_hub's backbones grow
  this way (`keras_net2net.hub.backbone`, `keras_net2net.hub.cnn`).

The core never imports `keras_net2net.hub`. Optional libraries plug in here:
`register_plugin(library, module)` names a module (a string, like an entry
point) that is imported, and its `activate()` called, once `library` is in
`sys.modules`; `activate()` registers its rules (`keras_net2net.rules`) and
its makers (`register_maker`). keras_hub is declared so by default.

Example:

```python
from keras_net2net import makers

class MyMaker(makers.ConfigMaker):
    def handles(self, model):
        return isinstance(model, MyBackbone)
    ...

makers.register_maker(MyMaker())
```
"""

import dataclasses
import importlib
import sys

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import analysis
from keras_net2net import carry
from keras_net2net import deepen as deepen_lib
from keras_net2net import errors
from keras_net2net import graph as graph_lib
from keras_net2net import inline as inline_lib
from keras_net2net import lazy
from keras_net2net import optimizer_state
from keras_net2net import options as options_lib
from keras_net2net import padding
from keras_net2net import plan as plan_lib
from keras_net2net import rebuild
from keras_net2net import report as report_lib
from keras_net2net import spans
from keras_net2net import verify as verify_lib

# {library module: plugin module}: the plugin is imported, and its
# `activate()` called, once the library is imported (never before: the core
# runs without it). A string, so the core holds no import of the plugin.
_PLUGINS = {"keras_hub": "keras_net2net.hub"}
_MAKERS = []  # registered makers, consulted in order before the default


@dataclasses.dataclass
class Request:
    """The options of one `expand_model` call (see its docstring)."""

    widen: object = None
    deepen: object = None
    noise: float = 0.0
    noise_mode: str = "balanced"
    mapping: str = "random"
    seed: object = None
    data: object = None
    verify: bool = True
    verify_data: object = None
    tolerance: object = None
    strict: bool = False
    mappings: object = None
    inline_custom_layers: bool = True
    new_units: str = "copy"
    split: str = "equal"


@dataclasses.dataclass
class Growth:
    """One growth in progress: what the pipeline's steps hand each other.

    Attributes:
        teacher: the model grown.
        request: the `Request`.
        ctx: the analysis `Context` of the model the pipeline reads.
        plan: the `plan.Plan`.
        insertions: what deepening inserts (clone-based growth).
        skipped: [(request, reason)] of widths not applied.
        student: the student, once made.
        inlining: the `inline.Inlining` of the teacher's custom layers.
        state: what a maker keeps between its own steps (configs, pairs).
    """

    teacher: object
    request: Request
    ctx: object
    plan: object
    insertions: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    student: object = None
    inlining: object = None
    state: dict = dataclasses.field(default_factory=dict)


class Maker:
    """How a student is made for the models a maker `handles`: the steps of
    the pipeline that differ between kinds of models. Subclass `CloneMaker`
    or `ConfigMaker` rather than this."""

    def handles(self, model):
        """Whether this maker grows `model`."""
        return False

    def explain(self, model, inline_custom_layers=True):
        """(analysis context, inlining) of `model` read-only, for
        `keras_net2net.explain_model`."""
        raise NotImplementedError

    def plan(self, model, request):
        """Checks the request, analyses the model and plans the growth.

        Returns:
            A `Growth` with its `ctx` and `plan`.
        """
        raise NotImplementedError

    def make(self, growth):
        """Makes the student and writes its weights. Returns the student."""
        raise NotImplementedError

    def report(self, growth):
        """The `ExpansionReport` (without verification)."""
        raise NotImplementedError

    def verification(self, growth):
        """Keyword arguments of `keras_net2net.verify.check` past the report:
        inputs, names, readout, training_inputs, and `twin`: the model whose
        float64 copy the same growth must reproduce exactly (None: no second
        look)."""
        raise NotImplementedError


def register_maker(maker):
    """Registers a `Maker`, consulted (in registration order) before the
    clone-based default by `maker_for`. Registering one twice is a no-op.

    Returns:
        `maker`.

    Example:

    ```python
    register_maker(MyMaker())
    ```
    """
    if not any(m is maker for m in _MAKERS):
        _MAKERS.append(maker)
    return maker


def register_plugin(library, module):
    """Declares that `module` (a name) supports `library`: once `library` is
    imported, `maker_for` imports `module` and calls its `activate()`.

    Example:

    ```python
    register_plugin("keras_hub", "keras_net2net.hub")
    ```
    """
    _PLUGINS[library] = module


def load_plugins():
    """Activates the plugins whose library is imported (each plugin's
    `activate()` registers once and is cheap after)."""
    for library, module in list(_PLUGINS.items()):
        if sys.modules.get(library) is not None:
            importlib.import_module(module).activate()


def maker_for(model):
    """The maker that grows `model`: the first registered one that handles
    it, else `CLONE` (clone-based).

    Example:

    ```python
    maker_for(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))  # CLONE
    ```
    """
    load_plugins()
    return next((m for m in _MAKERS if m.handles(model)), CLONE)


# -- clone-based ---------------------------------------------------------

class CloneMaker(Maker):
    """Functional and Sequential models: `keras.models.clone_model` with
    hooks (`rebuild.Rebuilder`); custom layers inlined where they can be."""

    def handles(self, model):
        return True

    def explain(self, model, inline_custom_layers=True):
        # Read-only: a nested subclassed model is listed as a barrier, not refused.
        ctx = analysis.analyze(model, opaque_subclassed=True)
        return inline(model, ctx, inline_custom_layers, None, opaque_subclassed=True)

    def plan(self, model, request):
        r = request
        ctx = analysis.analyze(model)
        if r.data is not None:
            verify_lib.check_inputs(ctx, as_inputs(r.data), "data")
        if r.verify_data is not None:
            verify_lib.check_inputs(ctx, as_inputs(r.verify_data), "verify_data")
        elif r.verify:
            verify_lib.check_probe(ctx)
        chosen = r.verify_data if r.verify_data is not None else r.data
        ctx, inlining = inline(model, ctx, r.inline_custom_layers,
                               None if chosen is None else as_inputs(chosen))
        widths, skipped = plan_lib.resolve_widths(ctx, r.widen, r.strict)
        insertions = deepen_lib.plan_insertions(ctx, r.deepen, spans.plan_span)
        options = (r.widen, r.deepen)
        if any(map(_empty, options)) and all(o is None or _empty(o) for o in options) \
                and not r.mappings:
            raise errors.PlanError(
                f"Expected at least one layer to widen or deepen. Received: widen={r.widen!r} "
                f"and deepen={r.deepen!r}. Fix: name layers, e.g. widen={{'conv1': 32}}.")
        replay = _replay_mappings(ctx, r.mappings)
        if replay:
            widths.update({root: len(g) for root, g in replay.items()})
        the_plan = plan_lib.Plan(ctx, widths, r.mapping, r.seed, replay)
        return Growth(model, request, ctx, the_plan, insertions, skipped, inlining=inlining)

    def make(self, growth):
        r, insertions = growth.request, growth.insertions
        builder = rebuild.Rebuilder(growth.ctx, growth.plan, insertions, r.noise,
                                    r.noise_mode, r.seed, new_units=r.new_units,
                                    split=r.split)
        student = builder.build()
        # Kept beside the student, not on it, for expand_optimizer.
        optimizer_state.record(student, builder.weight_map, insertions)
        if r.data is not None:
            _bn_statistics(student, insertions, r.data)
        _check_student_runs(growth.ctx, student, r.verify_data, r.data)
        return student

    def report(self, growth):
        r = growth.request
        report = report_lib.assemble(
            growth.ctx, growth.plan, growth.insertions, growth.skipped, growth.teacher,
            growth.student,
            dict(widen=r.widen, deepen=options_lib.jsonable(r.deepen), noise=r.noise,
                 noise_mode=r.noise_mode, mapping=r.mapping, seed=r.seed, strict=r.strict,
                 inline_custom_layers=r.inline_custom_layers, new_units=r.new_units,
                 split=r.split))
        report.inlined = growth.inlining.inlined
        return report

    def verification(self, growth):
        r, ctx = growth.request, growth.ctx
        inputs = (as_inputs(r.verify_data) if r.verify_data is not None
                  else verify_lib.probe_inputs(ctx))
        # The model the pipeline read: with custom layers inlined, its float64
        # twin is made of plain layers, which a twin of the teacher's custom
        # layers (sublayers made in __init__ at the default dtype) is not.
        return dict(inputs=inputs, names=ctx.graph.output_names,
                    training_inputs=None if r.data is None else as_inputs(r.data),
                    readout=None, twin=ctx.graph.model)


CLONE = CloneMaker()


def inline(model, ctx, enabled, inputs, opaque_subclassed=False):
    """The analysis of the model the pipeline reads: `model` with its custom
    layers inlined where they can be (`keras_net2net.inline`), or `ctx` as it
    is. Custom layers that stay are barriers whose reason says why.

    Returns:
        (ctx, `inline.Inlining`).
    """
    if not enabled or not any(inline_lib.is_custom_layer(c.op) for c in ctx.graph.calls):
        return ctx, inline_lib.Inlining(model)
    inlining = inline_lib.inline_custom_layers(model, inputs)
    reasons = {layer_id: f"a custom layer that was not inlined: {why}; it keeps the width of "
                         f"what it reads (or register a rule with keras_net2net.register_rule)"
               for layer_id, why in inlining.kept.items()}
    return (analysis.analyze(inlining.model, reasons=reasons,
                             opaque_subclassed=opaque_subclassed), inlining)


def as_inputs(data):
    """A list of arrays, one per model input, from an array, a list or a dict
    (flattened in key order, as Keras does)."""
    if isinstance(data, dict):
        return [np.asarray(d) for d in keras.tree.flatten(data)]
    return [np.asarray(d) for d in data] if isinstance(data, (list, tuple)) else [np.asarray(data)]


def _empty(option):
    return isinstance(option, (dict, list, tuple)) and not option


def _replay_mappings(ctx, mappings):
    if mappings is None or _empty(mappings):
        return {}
    if not isinstance(mappings, dict):
        raise errors.PlanError(
            f"Expected mappings to be a dict {{group name: list of unit indices}}, as "
            f"ExpansionReport.mappings() returns. Received: mappings={mappings!r:.80} "
            f"({type(mappings).__name__}).")
    groups = ctx.groups
    names = {p: groups.find(a) for a, paths in groups.producers.items()
             if a not in groups.parts for p in paths}
    out = {}
    for name, g in mappings.items():
        if name not in names:
            raise errors.PlanError(
                f"Expected mappings keyed by group names of this model. Received: a mapping "
                f"for {name!r}, which produces no group here. Fix: replay on the same teacher.")
        root, g = names[name], _unit_indices(name, g)
        old = ctx.groups.widths[root]
        # Pads (-1, keras_net2net.padding) only where the group can take them.
        low = padding.PAD if root in ctx.pad_kinds else 0
        if ctx.groups.is_frozen(root) or g.min() < low or g.max() >= old or \
                not np.array_equal(np.unique(g[g >= 0]), np.arange(old)):
            raise errors.PlanError(
                f"Expected a mapping onto all {old} units of group {name!r} that can grow. "
                f"Received: a mapping of length {len(g)} with values in "
                f"[{g.min()}, {g.max()}]. Fix: replay on the same teacher.")
        out[root] = g
    return out


def _unit_indices(name, g):
    try:
        array = np.asarray(g)
    except (TypeError, ValueError):  # ragged or odd objects
        array = np.zeros((0, 0))
    if array.ndim != 1 or not array.size or not np.issubdtype(array.dtype, np.integer):
        raise errors.PlanError(
            f"Expected the mapping of group {name!r} to be a list of unit indices. "
            f"Received: mappings={{{name!r}: {g!r:.80}}}. Fix: pass report.mappings() of "
            f"an earlier growth of the same teacher.")
    return array.astype(np.int64)


def _bn_statistics(student, insertions, data):
    """Sets inserted identity BatchNorms to the population statistics of what
    they will see in training, so that training mode is close to the identity
    too. Inference mode is exact either way, up to rounding of order
    eps * |mean|: where the inference-mode values are far smaller than the
    training-mode mean (BatchNorms whose moving statistics were never
    trained), the inference-mode statistics are used instead, with a note."""
    inputs = as_inputs(data)
    top_level = {id(l) for l in student.layers}
    for ins in insertions:
        bns = [b for b in ins.identity_bns if id(b) in top_level]
        if not bns:
            continue
        probe = keras.Model(_keras.inputs_struct(student), bns[0].input)
        feed = graph_lib.pack_inputs(probe, inputs)
        axis = bns[0].axis
        train = _channel_stats(probe, feed, axis, training=True)
        infer = _channel_stats(probe, feed, axis, training=False)
        stats = train
        if np.max(np.abs(train[0])) > 1e3 * (np.max(np.abs(infer[0])) + np.sqrt(np.max(infer[1]))):
            stats = infer
            ins.note = (ins.note + "; " if ins.note else "") + (
                "BatchNorm statistics from data in inference mode: the teacher's training-mode "
                "values are far larger, and using them would lose precision")
        for bn in bns:
            deepen_lib.set_identity(bn, stats)


def _channel_stats(probe, feed, axis, training):
    with verify_lib.preserved_state(probe):
        x = np.asarray(probe(feed, training=training), dtype=np.float64)
    reduce = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    return x.mean(axis=reduce), x.var(axis=reduce)


def _check_student_runs(ctx, student, verify_data, data):
    """Calls the student once, so that a student that cannot run (a carried
    layer whose code fails on the student's tensors) fails here, typed, and
    not on the user's first call, whatever `verify` says."""
    chosen = verify_data if verify_data is not None else data
    if chosen is not None:
        inputs = as_inputs(chosen)
    else:
        try:
            inputs = verify_lib.probe_inputs(ctx)
        except errors.UnsupportedModelError:
            return  # Inputs we cannot draw (strings): nothing to call it on.
    try:
        with verify_lib.preserved_state(student):
            student(graph_lib.pack_inputs(student, inputs), training=False)
    except Exception as e:  # noqa: BLE001 - any failure of user code, reported typed
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise errors.UnsupportedModelError(
            f"Expected the student to run on the teacher's inputs. Received: "
            f"{type(e).__name__} when calling it: {lines[0][:300] if lines else ''}. A layer "
            f"carried over from the teacher fails on the student's tensors. Fix: make that "
            f"layer serialisable (get_config) or register a rule for it with "
            f"keras_net2net.register_rule. The teacher is unchanged.") from e


# -- config-based --------------------------------------------------------

class ConfigMaker(Maker):
    """The teacher's own class `from_config` of a grown config, with the
    teacher's layers paired to the student's by path.

    A subclass says how the config grows and how layers pair: `plan_config`
    (the request checked, the analysis, the plan; `state` holds at least
    "config", "new_config" and "blocks", {anchor: count} of inserted
    blocks), `make` (`build_from_config`, `pair_by_path`, `write_weights`),
    `probe` (inputs for the verification) and, in `state`, "grown_outputs"
    (whether the model's outputs grew: they are read back through the
    mapping, `read_back`). Options of plain models (`data=`, `mappings=`)
    are refused.
    """

    def explain(self, model, inline_custom_layers=True):
        # A backbone grows its outputs (same class out); a task keeps them.
        ctx = analysis.analyze(model, grow_outputs=not hasattr(model, "backbone"),
                               opaque_subclassed=True)
        return ctx, inline_lib.Inlining(model)

    def plan(self, model, request):
        if request.data is not None or request.mappings:
            raise errors.PlanError(
                f"Expected no data= or mappings= for a keras_hub model (its blocks insert no "
                f"BatchNorm, and replays are for plain models). Received: "
                f"{'data=' if request.data is not None else 'mappings='} for "
                f"{type(model).__name__}. Fix: drop it.")
        return self.plan_config(model, request)

    def plan_config(self, model, request):
        """`plan` past the options every config-made student refuses."""
        raise NotImplementedError

    def probe(self, model):
        """Inputs to verify the student on, where `verify_data` is None."""
        raise NotImplementedError

    def report(self, growth):
        r, state = growth.request, growth.state
        return report_lib.assemble(
            growth.ctx, growth.plan, [], [], growth.teacher, growth.student,
            dict(widen=r.widen if isinstance(r.widen, (int, float, dict)) else None,
                 deepen=state.get("deepen", r.deepen)
                 if isinstance(state.get("deepen", r.deepen), (list, dict, str)) else None),
            configs=(state["config"], state["new_config"]), blocks=state.get("blocks", {}))

    def verification(self, growth):
        r, ctx = growth.request, growth.ctx
        x = r.verify_data if r.verify_data is not None else self.probe(growth.teacher)
        return dict(inputs=x, names=ctx.graph.output_names, training_inputs=None, twin=None,
                    readout=config_readout(growth.teacher, ctx, growth.plan,
                                           growth.state.get("grown_outputs", True)))


def build_from_config(cls, config):
    """A model of class `cls` from `config`, its variables deferred
    (`keras_net2net.lazy`: the teacher's values are their first) and
    detached (`carry.detached`: a config may hold the teacher's variables).

    Returns:
        (model, made): `made` lists variables `lazy.initialize_rest` draws.

    Example:

    ```python
    student, made = build_from_config(type(backbone), new_config)
    ```
    """
    # A fresh copy per run: `lazy.build` may run it twice, and some
    # from_config edit their config in place (BASNet's deserialises its
    # image encoder into it).
    return lazy.build(lambda: cls.from_config(carry.detached(config)))


def pair_by_path(ctx, student, rename=None, graph=None):
    """{id(teacher layer): student layer} for every teacher layer with
    weights, by path (`rename`: teacher path -> student path, where blocks
    move).

    Args:
        ctx: the teacher's analysis context.
        student: the student model.
        rename: None, or a function of a teacher layer path.
        graph: the student's `Graph`, where the caller has it.

    Raises:
        UnsupportedModelError: a teacher layer with weights has no student
            layer of the same path and number of weights.

    Example:

    ```python
    pairs = pair_by_path(ctx, student)
    ```
    """
    rename = rename or (lambda path: path)
    graph = graph or graph_lib.Graph(student)
    by_path = {path: graph.layers[layer_id] for layer_id, path in graph.paths.items()}
    pairs = {}
    for layer_id, path in ctx.graph.paths.items():
        layer = ctx.graph.layers[layer_id]
        if isinstance(layer, keras.Model) or not getattr(layer, "weights", None):
            continue  # auto-named (activation_3) and weightless: nothing to write
        other = by_path.get(rename(path))
        if other is None or len(other.weights) != len(layer.weights):
            raise errors.UnsupportedModelError(
                f"Expected the grown {type(student).__name__} to have a layer {rename(path)!r} "
                f"with the weights of the teacher's {path!r}. Received: "
                f"{'none' if other is None else f'{len(other.weights)} weights'}. This is a "
                f"bug in keras-net2net's keras_hub support: please report it.")
        pairs[layer_id] = other
    return pairs


def write_weights(growth, pairs):
    """Writes the teacher's weights, rewritten by their rules for the plan,
    into the paired student layers (`rebuild.Rebuilder.write_weights`).

    Returns:
        The `rebuild.Rebuilder` (its `weight_map` says how each weight came).

    Example:

    ```python
    write_weights(growth, pair_by_path(growth.ctx, student))
    ```
    """
    r = growth.request
    builder = rebuild.Rebuilder(growth.ctx, growth.plan, [], r.noise, r.noise_mode, r.seed,
                                new_units=r.new_units, split=r.split)
    builder.write_weights(pairs)
    return builder


def read_back(ctx, the_plan, key, student_value):
    """The teacher's output from a grown output: for each old channel its
    first copy, times its copy count (and the write scale) where a tied norm
    divided it.

    Args:
        ctx: the analysis context of the teacher.
        the_plan: the growth's `Plan`.
        key: the output's `TensorKey`.
        student_value: the student's output array.

    Returns:
        A float64 array of the teacher output's shape.

    Example:

    ```python
    y = read_back(ctx, plan, ctx.graph.outputs[0], student(x))
    ```
    """
    layout = ctx.layout(key)
    if layout is None:
        return student_value
    src, counts, _ = the_plan.src(layout)
    first = np.unique(src[src >= 0], return_index=True)[1]
    positions = np.flatnonzero(src >= 0)[first] if (src < 0).any() else first
    value = np.take(np.asarray(student_value, np.float64), positions, axis=layout.axis)
    producer = ctx.graph.producers.get(key)
    io = ctx.io.get(id(producer.op)) if producer is not None else None
    if io is not None and io.extra.get("tied_divide"):
        shape = [1] * value.ndim
        shape[layout.axis] = -1
        value = value * counts[src[positions]].reshape(shape) * the_plan.write_scale(layout)
    if io is not None and "readout_scale" in io.extra:  # a family's own output scale
        value = value * io.extra["readout_scale"]
    return value


def config_readout(teacher, ctx, the_plan, grown_outputs):
    """The readout hook of `verify.compare` for a config-made student: both
    models called on the probe as it is (keras_hub models take dict inputs),
    the student's outputs read back through the mapping where they grew."""
    def readout(model, x, training):
        outputs = keras.tree.flatten(model(x, training=training))
        if model is teacher or not grown_outputs:
            return [np.asarray(v, np.float64) for v in outputs]
        return [read_back(ctx, the_plan, key, v) for key, v in zip(ctx.graph.outputs, outputs)]
    return readout
