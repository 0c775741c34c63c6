"""Builds the student through Keras' own cloning hooks and writes its weights.

`keras.models.clone_model` walks the teacher's graph; `clone_function` hands
it each layer as `keras_net2net.carry` made it (from its edited config, so no
constructor argument is ever re-listed by hand, or reused where it holds no
state and does not change), `call_function` threads inserted layers after their
anchors (each an insertion of `keras_net2net.insertions`, made through its
protocol). Every student layer is made before any is called, so a layer that
cannot be copied is reported before any work. Nested models are cloned the same
way with inputs of their new shapes. Weights are then computed in float64 from
the teacher's and cast once to each variable's dtype; they are the variables'
first values (`keras_net2net.lazy`: no initial value is drawn to be overwritten).
"""

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import carry
from keras_net2net import errors
from keras_net2net import insertions as insertions_lib
from keras_net2net import lazy
from keras_net2net import ops
from keras_net2net import padding
from keras_net2net import rules
from keras_net2net.rules import base
from keras_net2net.rules.base import Mode


class Rebuilder:
    def __init__(self, ctx, plan, insertions, noise=0.0, noise_mode="balanced", seed=None,
                 new_units="copy", split="equal"):
        self.ctx, self.plan, self.graph = ctx, plan, ctx.graph
        self.insertions = {id(i.after): i for i in insertions}
        self.noise, self.noise_mode = noise, noise_mode
        self.new_units, self.split = new_units, split
        self.rng = np.random.default_rng(None if seed is None else seed + 1)
        # Roots of the groups whose new units start fresh (`fresh_roots`), and
        # the src arrays of their layouts (no zero-sum noise reads them).
        self.fresh = fresh_roots(ctx, plan) if new_units == "fresh" else set()
        self._fresh_srcs = set()
        self.student_of = {}  # id(teacher layer) -> student layer
        self.teacher_of = {}  # id(student layer) -> teacher layer
        self.taken = {layer.name for layer in self.graph.layers.values()}
        # Calls insertions replay, and the student tensors they read
        # (insertions.record): the maker's side of the insertion protocol.
        self.watched = {id(c.op): c for i in insertions for c in i.watched_calls()}
        self.recorded = {}
        # (teacher variable, student variable, [(axis, src, counts, mode)]) for
        # every weight carried over: how each student weight came from the
        # teacher's, for whatever must follow the same map (optimizer slots).
        self.weight_map = []

    # -- structure ---------------------------------------------------------
    def build(self):
        # Variables made deferred (keras_net2net.lazy): the teacher's values
        # are their first, with no random draw thrown away.
        student, made = lazy.build(self._construct)
        carry.check_own_variables(self.graph.model, student)  # before any write
        self.write_weights()
        # What the teacher gives no value (inserted layers, span copies, seed
        # states) draws its own, before the insertions read or overwrite it.
        lazy.initialize_rest(student.variables + made)
        self._initial_weights()
        # What the configs could not say (callables, preprocessing state).
        for layer_id, teacher_layer in self.graph.layers.items():
            new = self.student_of.get(layer_id)
            if new is not None and isinstance(teacher_layer, keras.layers.Layer) and \
                    not isinstance(teacher_layer, keras.Model):
                carry.carry_state(teacher_layer, new)
        return student

    def _construct(self):
        # From scratch: lazy.build runs it a second time, eagerly, where the
        # deferred run fails.
        self.student_of, self.teacher_of, self.recorded = {}, {}, {}
        self.taken = {layer.name for layer in self.graph.layers.values()}
        teacher = self.graph.model
        self._make_layers()
        for ins in self.insertions.values():
            ins.build(self)
        try:
            if isinstance(teacher, keras.Sequential) and self._sequential_ok():
                return self._clone_sequential(teacher)
            return self._clone_functional(teacher)
        except errors.Net2NetError:
            raise
        except Exception as e:  # noqa: BLE001 - a carried layer's own code failed
            raise carry.build_failure(e) from e

    def _sequential_ok(self):
        return all(i.chain() is not None for i in self.insertions.values())

    def _make_layers(self):
        """Makes every student layer up front (see `keras_net2net.carry`)."""
        keys = {}
        for call in self.graph.calls:
            keys.setdefault(id(call.op), []).extend(call.inputs + call.outputs)
        for layer_id, layer in self.graph.layers.items():
            if isinstance(layer, keras.Model):
                continue
            rule, io = rules.rule_for(layer), self.ctx.io.get(layer_id)
            grows = io is not None and rule is not None and self._grows(io)
            edit = (lambda config, rule=rule, io=io: rule.edit_config(config, io, self.plan)) \
                if grows else None
            # keras.ops operations hold no state: reused unless their arguments change.
            reuse = not grows and (not isinstance(layer, keras.layers.Layer) or (
                not layer.variables and self._same_shapes(keys.get(layer_id, []))))
            try:
                new = carry.student_layer(layer, reuse, edit)
            except carry.CannotRecreate as e:
                why = "must grow" if grows else "holds variables the student needs its own copy of"
                raise carry.refusal(self.graph.paths[layer_id], layer, why, e) from e
            self.student_of[layer_id] = new
            self.teacher_of[id(new)] = layer

    def _grows(self, io):
        return any(layout is not None and not self.plan.src(layout)[2]
                   for layout in io.layouts.values())

    def _same_shapes(self, keys):
        return all(self.plan.new_shape(k) == self.ctx.shape(k) for k in keys)

    def _clone(self, layer):
        if id(layer) in self.student_of:
            return self.student_of[id(layer)]
        new = self._clone_nested(layer)
        self.student_of[id(layer)] = new
        self.teacher_of[id(new)] = layer
        return new

    def call(self, layer, *args, **kwargs):
        """Calls a student layer as the clone does (`call_function`): a
        watched call is recorded, and the layer's insertion follows it."""
        teacher_layer = self.teacher_of.get(id(layer))
        try:
            out = layer(*args, **kwargs)
        except errors.Net2NetError:
            raise
        except Exception as e:  # noqa: BLE001 - reported typed, naming the layer
            path = self.graph.paths.get(id(teacher_layer), getattr(layer, "name", None))
            raise carry.build_failure(e, path, type(layer).__name__) from e
        watched = self.watched.get(id(teacher_layer))
        if watched is not None:
            insertions_lib.record(watched, args, kwargs, self.recorded)
        ins = self.insertions.get(id(teacher_layer))
        return ins.apply(out, self) if ins is not None else out

    def _clone_nested(self, model):
        functional = _keras.functional_of(model)
        outer_keys = self.graph.nested_inputs[id(model)]
        inputs = [keras.Input(batch_shape=self.plan.new_shape(k), dtype=t.dtype, name=t.name)
                  for t, k in zip(functional.inputs, outer_keys)]
        if isinstance(model, keras.Sequential) and self._sequential_ok():
            return self._clone_sequential(model, inputs[0])
        inputs = keras.tree.pack_sequence_as(_keras.inputs_struct(functional), inputs)
        return self._clone_functional(model, inputs)

    def _clone_functional(self, model, input_tensors=None):
        functional = _keras.functional_of(model)
        try:
            clone = keras.models.clone_model(functional, input_tensors=input_tensors,
                                             clone_function=self._clone,
                                             call_function=self.call)
        except Exception as e:  # noqa: BLE001 - named below where it is the compile config
            problem = compile_config_problem(functional)
            if problem is None:
                raise
            raise errors.UnsupportedModelError(
                f"Expected {model.name!r}'s compile config to deserialize: "
                f"keras.models.clone_model compiles the student from it. Received: "
                f"{problem}. Fix: register the custom objects it holds (e.g. a learning-"
                f"rate schedule) with @keras.saving.register_keras_serializable(), or "
                f"grow an uncompiled view of the same layers, keras.Model(model.inputs, "
                f"model.outputs), and compile the student yourself "
                f"(keras_net2net.expand_optimizer carries the optimizer's state). The "
                f"teacher is unchanged.") from e
        if clone.name != model.name:
            # A Sequential's hidden Functional has a generated name; the clone
            # keeps the Sequential's, so that layer paths ("block/conv") hold.
            clone = keras.Model(clone.input, clone.output, name=model.name,
                                trainable=model.trainable)
        return clone

    def _clone_sequential(self, model, input_tensor=None):
        first = model.inputs[0]
        layers = [input_tensor if input_tensor is not None else
                  keras.Input(batch_shape=first.shape, dtype=first.dtype, name=first.name)]
        for layer in model.layers:
            layers.append(self._clone(layer))
            ins = self.insertions.get(id(layer))
            if ins is not None:
                layers.extend(ins.chain())
        return keras.Sequential(layers, name=model.name, trainable=model.trainable)

    # -- weights -----------------------------------------------------------
    def write_weights(self, student_of=None):
        """Writes every teacher layer's weights, rewritten by its rule for the
        plan, into its student layer (as their first values, see
        `keras_net2net.lazy`), and records how in `weight_map`.

        Args:
            student_of: None (the layers `build` made), or {id(teacher
                layer): student layer} for a student made another way
                (`keras_net2net.makers.ConfigMaker`: the same class from a
                grown config, layers paired by path).

        Example:

        ```python
        builder = Rebuilder(ctx, plan, [])
        builder.write_weights(makers.pair_by_path(ctx, student))
        ```
        """
        if student_of is not None:
            self.student_of = dict(student_of)
        for layer_id, teacher_layer in self.graph.layers.items():
            if isinstance(teacher_layer, keras.Model) or \
                    not isinstance(teacher_layer, keras.layers.Layer) or not teacher_layer.weights:
                continue
            student_layer = self.student_of[layer_id]
            rule, io = rules.rule_for(teacher_layer), self.ctx.io.get(layer_id)
            axes = rule.weight_axes(teacher_layer, io) if (rule and io) else {}
            for index, (old, new) in enumerate(zip(teacher_layer.weights, student_layer.weights)):
                value = old.numpy()
                how = axes.get(old.name) or axes.get(index)
                transforms = []
                if how:
                    fill = self._pad_fill(teacher_layer, old.name)
                    value = self._rewrite(value, how, io, transforms, fill, old.name)
                self.weight_map.append((old, new, transforms))
                if tuple(value.shape) != tuple(new.shape):
                    raise AssertionError(
                        f"internal: {teacher_layer.name}/{old.name} {value.shape} vs {new.shape}")
                lazy.set_value(new, value.astype(new.dtype, copy=False)
                               if hasattr(value, "astype") else value)
            self._copy_rnn_states(teacher_layer, student_layer)

    def _initial_weights(self):
        for ins in self.insertions.values():
            ins.initial_weights(self)

    @property
    def writer_noise(self):
        """`zero_sum_noise` where growth adds noise, else None (insertions
        that zero a copy's writers give them this noise)."""
        return self.zero_sum_noise if self.noise else None

    def zero_sum_noise(self, source):
        """Symmetry-breaking noise for a zero-initialised copy of student
        weight `source` (the last writer of a block copy), or None.

        Zeroing a writer wipes the balanced noise its rows had, and with
        identical incoming weights and zero outgoing rows, copies of a unit
        inside the block get identical gradients forever. This noise sums to
        zero over the copies of each unit along every axis that reads copies
        (the axes `_rewrite` divides), at the scale `_rewrite` uses: the
        copies carry equal values when the block starts, so the writer's
        output stays exactly zero, yet the copies' gradients now differ.
        Units with one copy (and pads) get none.
        """
        if not hasattr(self, "_sources"):
            self._sources = {id(new): (old, t) for old, new, t in self.weight_map}
        old, transforms = self._sources.get(id(source), (None, ()))
        # Fresh units are no copies: noise summing to zero over them is not exact.
        axes = [(axis, src) for axis, src, _, mode in transforms
                if mode is Mode.DIVIDE and id(src) not in self._fresh_srcs]
        if not axes:
            return None
        shape = tuple(source.shape)
        scale = self.noise * (np.std(old.numpy()) or 1.0)
        e = np.zeros(shape)
        for axis, src in axes:  # zero-sum along each axis: their sum is exact too
            e += ops.balanced_noise(shape, axis % len(shape), src, scale, self.rng)
        return e

    @staticmethod
    def _copy_rnn_states(teacher_layer, student_layer):
        """A stateful RNN (kept at its width) carries its state into the
        student: it is part of what the teacher computes next."""
        if not getattr(teacher_layer, "stateful", False):
            return
        old = keras.tree.flatten(teacher_layer.states or [])
        new = keras.tree.flatten(getattr(student_layer, "states", None) or [])
        for a, b in zip(old, new):
            if tuple(a.shape) == tuple(b.shape):
                lazy.set_value(b, a.numpy())

    def _rewrite_copies(self, value, axes, io, transforms):
        """The common case without a float64 copy of the weight: no noise, no
        pads, copies along any axes and at most one division by the copy
        counts. Copies are exact in any dtype, and NumPy divides a float32
        array by integer counts in float64 and rounds once, so the result is
        bit for bit what the float64 path gives. None where it does not apply
        (the growth of a 124 M-parameter GPT-2 spends most of its time here)."""
        if self.noise or self.fresh or self.split != "equal" or \
                not np.issubdtype(np.asarray(value).dtype, np.floating):
            return None
        steps = []
        for axis, role, mode, *_ in axes:
            layout = io.layouts.get(role)
            if layout is None:
                continue
            src, counts, identity = self.plan.src(layout)
            if identity:
                continue
            mode = Mode.of(mode)
            if mode not in (Mode.COPY, Mode.DIVIDE) or src.min() < 0:
                return None
            steps.append((axis, src, counts, mode))
        if sum(mode.divides for *_, mode in steps) > 1:
            return None
        w = np.asarray(value)
        for axis, src, counts, mode in steps:
            transforms.append((axis, src, counts, mode))
            # In the weight's dtype: replicate divides in place.
            w = ops.replicate(w, axis, src, counts if mode.divides else None)
        return w

    def _pad_fill(self, layer, weight_name):
        """What the pad positions of a copied (not divided) weight axis hold
        (keras_net2net.padding): a writer's columns make its output's pad kind;
        per-channel parameters map a pad to itself (zero shifts, mean scales)."""
        if not self.plan.has_pads:
            return "zero"
        if padding.is_writer(self.ctx, layer):
            calls = self.graph.calls_of(layer)
            kind = self.plan.pad_kind(calls[0].outputs[0]) if calls else None
            return "mean" if kind == padding.MEAN else "zero"
        return "zero" if weight_name in ("beta", "bias", "moving_mean") else "mean"

    def _is_fresh(self, layout):
        if not self.fresh or not hasattr(layout, "segments"):
            return False
        return {self.plan.groups.find(a) for a in layout.atoms()} <= self.fresh

    def _rewrite(self, value, axes, io, transforms, fill, weight_name=""):
        fast = self._rewrite_copies(value, axes, io, transforms)
        if fast is not None:
            return fast
        w = np.asarray(value, dtype=np.float64)
        changed = False
        modes = [Mode.of(a[2]) for a in axes]
        # A (1 + scale) norm: its scale modes act on 1 + scale (Mode.offset).
        shift = next((mode.offset for mode in modes if mode.offset), 0.0)
        axes = [(a[0], a[1], mode.base, *a[3:]) for a, mode in zip(axes, modes)]
        w = w + shift
        fresh_axes = []  # (axis, new-unit mask) of fresh COPY axes, filled last
        for axis, role, mode, *own_fill in axes:
            layout = io.layouts.get(role)
            if layout is None:
                continue
            src, counts, identity = self.plan.src(layout)
            if identity:
                continue
            changed = True
            transforms.append((axis, src, counts, mode))
            pad = own_fill[0] if own_fill else fill
            shape = [1] * w.ndim
            shape[axis % w.ndim] = -1
            if self._is_fresh(layout) and mode in (Mode.COPY, Mode.DIVIDE):
                self._fresh_srcs.add(id(src))
                w = ops.replicate(w, axis, src, None, pad)
                first = ops.first_copies(src, len(counts)) > 0
                if mode is Mode.DIVIDE:  # old units read whole, new ones not at all
                    w *= first.reshape(shape)
                else:
                    fresh_axes.append((axis % w.ndim, ~first))
                continue
            w = ops.replicate(w, axis, src, counts if mode.divides else None, pad)
            if mode is Mode.DIVIDE and self.split == "random":
                w *= random_split(src, counts, self.rng).reshape(shape)
            if mode.tied:  # the tied embedding's columns carry write_scale
                w /= self.plan.write_scale(layout)
            if mode.scale == base.QUERY:
                w *= ops.first_copies(src, len(counts)).reshape(shape)
            elif mode.scale == base.NORM:
                w *= np.sqrt(self.plan.kept_fraction(layout))
                continue  # a norm's scale takes no symmetry-breaking noise
            elif mode is Mode.COPY and role == base.OUT and self.plan.keep_epsilon:
                w *= self.plan.write_scale(layout)  # a writer's columns (mean or zero pads)
            if mode.noise and self.noise and self.noise_mode == "balanced":
                scale = self.noise * (np.std(value) or 1.0)
                w = w + ops.balanced_noise(w.shape, axis % w.ndim, src, scale, self.rng)
        for axis, new in fresh_axes:
            index = [slice(None)] * w.ndim
            index[axis] = new
            w[tuple(index)] = fresh_values(w[tuple(index)].shape, value, weight_name,
                                           self.rng)
        if changed and self.noise and self.noise_mode == "additive":
            w = w + self.rng.normal(0.0, self.noise * (np.std(value) or 1.0), w.shape)
        if not changed:  # exactly the value, with no round trip through 1 + scale
            return np.asarray(value, dtype=np.float64).astype(value.dtype)
        return (w - shift).astype(value.dtype)


def fresh_roots(ctx, plan):
    """Roots of the groups whose new units can start fresh (`new_units=
    "fresh"`): grown, not padded, under no norm (no block constraint), and
    touched only by weights that copy them as a writer's units (Mode.COPY)
    or read them linearly (Mode.DIVIDE), at least one of each, in layouts
    that hold that group alone. Such units are read only through weights, so
    zero outgoing weights silence whatever a new unit computes.
    `expand_model`'s verification checks the result like any growth."""
    modes, mixed = {}, set()
    for layer_id, layer in ctx.graph.layers.items():
        rule, io = rules.rule_for(layer), ctx.io.get(layer_id)
        if not (rule and io) or not isinstance(layer, keras.layers.Layer):
            continue
        for entries in rule.weight_axes(layer, io).values():
            for _, role, mode, *_ in entries or ():
                layout = io.layouts.get(role)
                if layout is None:
                    continue
                if not hasattr(layout, "segments"):  # a Product: grouped heads
                    mixed.update(ctx.groups.find(a) for part in (layout.outer, layout.inner)
                                 for a in part.atoms())
                    continue
                roots = {ctx.groups.find(a) for a in layout.atoms()}
                if len(roots) > 1:
                    mixed.update(roots)
                for root in roots:
                    modes.setdefault(root, set()).add(Mode.of(mode))
    out = set()
    for root, seen in modes.items():
        g = plan.mappings.get(root)
        if root in mixed or g is None or len(g) == ctx.groups.widths[root] or g.min() < 0:
            continue
        if ctx.groups.blocks(root)[0] is not None:
            continue
        if seen == {Mode.COPY, Mode.DIVIDE}:
            out.add(root)
    return out


def fresh_values(shape, teacher_value, weight_name, rng):
    """Incoming weights of fresh units: zero for biases (and any 1-D
    weight), else normal draws at the RMS of the teacher's weight."""
    if "bias" in weight_name or np.ndim(teacher_value) < 2:
        return np.zeros(shape)
    rms = float(np.sqrt(np.mean(np.square(np.asarray(teacher_value, np.float64))))) or 1.0
    return rng.normal(0.0, rms, size=shape)


def random_split(src, counts, rng):
    """Per-position factors counts[src] x alpha: the copies of each unit
    share its outgoing weight in proportions alpha drawn uniformly on the
    simplex (two copies: alpha, 1 - alpha with alpha ~ U(0, 1)); they sum to
    one over the copies, so the consumer's sum is unchanged. Positions after
    `replicate` already carry 1 / counts; pads (negative src) keep 1.

    >>> f = random_split(np.array([0, 1, 0, 1]), np.array([2, 2]), np.random.default_rng(0))
    >>> bool(np.isclose(f[0] + f[2], 2.0)) and bool(np.isclose(f[1] + f[3], 2.0))
    True
    """
    factors = np.ones(len(src))
    units = src >= 0
    draws = rng.exponential(1.0, size=len(src))  # normalised: uniform on the simplex
    draws[~units] = 0.0
    sums = np.bincount(src[units], weights=draws[units], minlength=len(counts))
    factors[units] = counts[src[units]] * draws[units] / sums[src[units]]
    return factors


def compile_config_problem(model):
    """None where a compiled `model`'s compile config deserializes (what
    keras.models.clone_model does with it), else what fails."""
    if not getattr(model, "compiled", False):
        return None
    try:
        config = model.get_compile_config()
        if config:
            keras.saving.deserialize_keras_object(config)
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return None
