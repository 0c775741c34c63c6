"""Optimizer state carried through growth.

`expand_model` records, for each student it returns, how every student
weight came from a teacher weight (`Rebuilder.weight_map`) and which layers
were inserted. `expand_optimizer` replays that map on the teacher
optimizer's slot variables, so the student continues training with the
teacher's moments, step count and learning-rate schedule position instead
of a fresh optimizer.

The rules follow from the gradients at the Net2Net point. A unit copied k
times, with its outgoing weights divided by k, carries the same activation
in every copy, so:

- along a COPY axis (fan-in weights of the copies: kernel columns, bias,
  norm gamma/beta, per-channel parameters) each copy's gradient is g/k;
- along a DIVIDE axis (the consumer's rows of the copies) the gradient is g,
  unchanged;
- attention's query-side key dims (QUERY_DIMS) see g * sqrt(d/d') at every
  copy, and the key-side key dims see g at the first copy of each dim and 0
  at the others (the query side of those is zero).

So each student slot element's gradient is F times the teacher's, F the
product of these factors over the weight's axes, and the slots follow F by
their degree in the gradient: first moments * F, second moments * F**2,
|g| maxima * |F|. Adam-like optimizers are scale-invariant, so each copy's
next step equals the teacher unit's (up to epsilon, which weighs eps/F).
SGD is not: its velocity is carried in weight units (copied on fan-in axes,
divided on fan-out axes), so that the momentum part of a step moves the
student's function as it moved the teacher's; the gradient part is k times
smaller on the fan-in copies and k times larger, combined, on the fan-out
rows.
"""

import dataclasses
import weakref

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import errors
from keras_net2net.rules import registry
from keras_net2net.rules.base import FAN_IN
from keras_net2net.rules.base import first_copy_mask

# How a slot variable relates to the gradient of its weight (its degree).
FIRST = "first"      # linear in g: momentum, EMA of g, accumulated gradients
SECOND = "second"    # quadratic in g: Adam's v, RMSprop's and Adagrad's accumulators
ABS = "abs"          # in |g|: Adamax's infinity norm
STEP = "step"        # in units of a scale-invariant step: copied where F != 0
WEIGHT = "weight"    # in weight units (SGD velocity): the weights' own transform
AVERAGE = "average"  # a moving average of the weights (EMA): their transform,
                     # and an inserted variable's own value

_NEW_VARIABLES = ("warm", "fresh")

# {class: {attribute holding a list of slots indexed like the trainable
# variables: kind}}. A subclass is served by the rule of the class whose
# `build` and `update_step` it inherits unchanged.
_RULES = {
    keras.optimizers.Adam: {"_momentums": FIRST, "_velocities": SECOND,
                            "_velocity_hats": SECOND},
    keras.optimizers.Nadam: {"_momentums": FIRST, "_velocities": SECOND},
    keras.optimizers.Adamax: {"_m": FIRST, "_u": ABS},
    keras.optimizers.Lamb: {"_momentums": FIRST, "_velocities": SECOND},
    keras.optimizers.Lion: {"_momentums": FIRST},
    keras.optimizers.SGD: {"momentums": WEIGHT},
    keras.optimizers.RMSprop: {"_velocities": SECOND, "_momentums": STEP,
                               "_average_gradients": FIRST},
    keras.optimizers.Adagrad: {"_accumulators": SECOND},
    keras.optimizers.Adadelta: {"_accumulated_grads": SECOND,
                                "_accumulated_delta_vars": STEP},
}
# Slots every Keras optimizer may hold (use_ema, gradient_accumulation_steps).
_BASE_SLOTS = {"_model_variables_moving_average": AVERAGE,
               "_accumulated_gradients": FIRST}

# Weak keys: the record lives as long as the student does, and is never a
# tracked attribute of it (Keras would count the teacher's variables as the
# student's). Values must not refer to the student model itself.
_GROWN = weakref.WeakKeyDictionary()


@dataclasses.dataclass
class _Growth:
    entries: list    # (weakref to teacher variable, student variable, transforms)
    inserted: list   # (anchor: [weakref to teacher variable], [student variables])
    key_axes: dict   # id(student variable) -> axis of attention's key-side key dims


def record(student, weight_map, insertions):
    """Keeps what `expand_optimizer` needs about one growth (called by
    `expand_model`)."""
    entries = [(weakref.ref(old), new, transforms) for old, new, transforms in weight_map]
    inserted = [([weakref.ref(v) for v in anchor], list(variables))
                for ins in insertions for anchor, variables in ins.anchored_variables()]
    _GROWN[student] = _Growth(entries, inserted, _key_axes(student))


def _key_axes(model):
    """The key-side key dims of attention layers (`Rule.key_dim_axes`): their
    gradient is the teacher's at the first copy of each dim and zero at the
    others. Layers inside composite layers count too, and a subclass of a
    layer kind answers as that kind (keras_hub's attention subclasses Keras')."""
    axes = {}
    for layer in _keras.sublayers(model):
        rule = next((registry.rule_for_class(c) for c in type(layer).__mro__
                     if registry.rule_for_class(c) is not None), None)
        if rule is not None:
            axes.update(rule.key_dim_axes(layer))
    return axes


def expand_optimizer(optimizer, student, *, new_variables="warm"):
    """Carries an optimizer's state through growth to the student.

    Returns a new optimizer of the same class and config, built on the
    student's trainable variables, whose slots are the teacher optimizer's
    mapped through the same growth, and whose step count (`iterations`, and
    so the learning-rate schedule's position) continues: a
    `LearningRateSchedule` is the teacher optimizer's own object, not a copy,
    so the student's next update takes the rate the teacher's next update
    would have (to re-warm it, see `keras_net2net.training.schedules.rewarm`).
    The teacher's optimizer is not modified.

    Rules, for a unit copied k times whose outgoing weights are divided by k
    (fan-in weights of the copies see gradient g/k, fan-out rows see g):

    - Adam, AdamW, Nadam, Adamax, Lamb, Lion, RMSprop, Adagrad, Adadelta:
      first moments m/k, second moments v/k**2, |g| maxima u/k on fan-in
      copies; fan-out rows copied. Adam-like updates are scale-invariant, so
      the next step of every copy equals the teacher unit's (epsilon aside:
      it weighs k times more on a copy). Lamb's per-tensor trust ratio is
      recomputed on the grown tensors.
    - SGD with momentum: velocity carried like the weights (copied on fan-in
      axes, divided by k on fan-out rows), so the momentum moves the student's
      function as it moved the teacher's. Its gradient part is not
      scale-invariant: fan-in copies step k times less, fan-out copies
      together k times more. Lower the learning rate after growing, or
      grow with noise, if that matters.
    - Variables of inserted layers have no history. With
      `new_variables="warm"` (the default) their second-moment slots
      (`v`, accumulators, Adamax's `u`) start at the mean of the same slot
      of the anchor layer's weight of the same name (kernel, bias), first
      moments at zero: Keras bias-corrects with the global step count, so a
      zero second moment at a late step makes the first update about
      (1 - beta_1) / sqrt(1 - beta_2) = 3.2 learning rates per element; a
      warmed-up one makes it about (1 - beta_1) = 0.1. "fresh" keeps a fresh
      optimizer's slots for them.
    - A `LossScaleOptimizer` is carried with its loss scale and its inner
      optimizer. Adafactor, Ftrl, Muon, ScheduleFreeAdamW and classes with
      no rule are refused.

    Under `tf.distribute`, call it in the strategy's scope, or the new slots
    are created in the scope the teacher's optimizer was made in.

    Args:
        optimizer: the teacher's optimizer, built on the teacher's trainable
            variables (a `keras.optimizers.Optimizer` or `LossScaleOptimizer`).
        student: a model returned by `keras_net2net.expand_model` for that
            teacher (or for a student of it, grown again).
        new_variables: "warm" or "fresh", for variables of inserted layers.

    Returns:
        A built optimizer for `student.trainable_variables`.

    Raises:
        PlanError: the student was not made by `expand_model`, the optimizer
            was built for another model, its class has no rule, or
            `new_variables` is not one of the choices.

    Example:

    ```python
    import keras, numpy as np, keras_net2net as n2n
    inputs = keras.Input((4,))
    x = keras.layers.Dense(8, activation="relu", name="fc1")(inputs)
    teacher = keras.Model(inputs, keras.layers.Dense(2, name="out")(x))
    teacher.compile(optimizer="adam", loss="mse")
    teacher.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=2, verbose=0)
    student = n2n.expand_model(teacher, widen={"fc1": 12}, deepen=["fc1"], seed=0)
    optimizer = n2n.expand_optimizer(teacher.optimizer, student)
    assert int(optimizer.iterations) == int(teacher.optimizer.iterations)
    student.compile(optimizer=optimizer, loss="mse")
    ```
    """
    if new_variables not in _NEW_VARIABLES:
        raise errors.PlanError(
            f"Expected new_variables in {_NEW_VARIABLES}. Received: "
            f"new_variables={new_variables!r}. Fix: pass 'warm' or 'fresh'.")
    growth = _GROWN.get(student) if isinstance(student, keras.Model) else None
    if growth is None:
        raise errors.PlanError(
            f"Expected student to be a model returned by keras_net2net.expand_model. "
            f"Received: student={_name(student)}, which no growth in this process made. "
            f"Fix: pass the student expand_model returned (a student loaded from a file "
            f"carries no growth map: grow and carry the optimizer in one process).")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise errors.PlanError(
            f"Expected optimizer to be a keras.optimizers.Optimizer. Received: "
            f"optimizer={optimizer!r:.80} ({type(optimizer).__name__}). Fix: pass the "
            f"optimizer that trained the teacher, e.g. teacher.optimizer.")
    levels = _levels(optimizer)
    rules = [_rule(level) for level in levels]
    teacher_vars = _teacher_variables(growth, levels[-1])
    config = optimizer.get_config()
    schedule = _schedule(optimizer)
    if schedule is not None and "learning_rate" in config:
        config["learning_rate"] = schedule  # the object itself, not a copy
    with _scope(optimizer):
        new = type(optimizer).from_config(config)
        for level, new_level in zip(levels, _levels(new)):
            if _schedule(level) is not None:
                _keras.set_learning_rate_object(new_level, _schedule(level))
        new.build(student.trainable_variables)
    new_levels = _levels(new)
    for level, new_level, rule in zip(levels, new_levels, rules):
        _copy_globals(level, new_level, rule)
        if level.built and rule:
            _carry_slots(level, new_level, rule, growth, teacher_vars, new_variables)
    return new


def _schedule(optimizer):
    """The optimizer's own `LearningRateSchedule` object, or None."""
    rate = _keras.learning_rate_object(optimizer)
    return rate if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule) \
        else None


def _name(obj):
    return repr(getattr(obj, "name", None) or type(obj).__name__)


def _levels(optimizer):
    """The optimizer and the ones it wraps, outermost first."""
    levels = [optimizer]
    while isinstance(levels[-1], keras.optimizers.LossScaleOptimizer):
        levels.append(levels[-1].inner_optimizer)
    return levels


def _rule(optimizer):
    """{slot attribute: kind} for the optimizer's class; {} for a wrapper."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return {}
    cls = type(optimizer)
    for base in cls.__mro__:
        rule = _RULES.get(base)
        if rule is not None and cls.build is base.build and \
                cls.update_step is base.update_step:
            return {**_BASE_SLOTS, **rule}
    known = ", ".join(sorted(c.__name__ for c in _RULES))
    raise errors.PlanError(
        f"Expected an optimizer whose state has a growth rule ({known}, or a "
        f"LossScaleOptimizer around one). Received: optimizer={optimizer.name!r} of class "
        f"{cls.__name__}, whose slots keras-net2net cannot map through growth. Fix: "
        f"train the student with a fresh optimizer, e.g. "
        f"{cls.__name__}.from_config(optimizer.get_config()), or use one of those classes.")


def _teacher_variables(growth, optimizer):
    """Teacher trainable variables of the map, checked against the optimizer's."""
    alive = [(ref(), new, t) for ref, new, t in growth.entries]
    trainable = [old for old, _, _ in alive if old is not None and old.trainable]
    dead = sum(old is None for old, _, _ in alive)
    if not optimizer.built:
        if dead:
            raise _foreign(optimizer, 0, len(alive), "the teacher no longer exists")
        return {}
    missing = [v for v in trainable if not _keras.optimizer_holds(optimizer, v)]
    if missing or dead:
        raise _foreign(optimizer, len(trainable) - len(missing), len(trainable) + dead,
                       f"e.g. {missing[0].path!r} is not among its variables"
                       if missing else "the teacher no longer exists")
    return {id(v): v for v in trainable}


def _foreign(optimizer, known, total, why):
    return errors.PlanError(
        f"Expected an optimizer built on the trainable variables of the student's teacher. "
        f"Received: optimizer={optimizer.name!r}, which holds {known} of the teacher's "
        f"{total} trainable variables ({why}). Fix: pass the optimizer that trained this "
        f"teacher (teacher.optimizer), or a fresh optimizer for the student.")


class _NoScope:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def _scope(optimizer):
    """The teacher optimizer's tf.distribute scope, unless one is active."""
    strategy = _keras.distribution_strategy(optimizer)
    if strategy is None or keras.config.backend() != "tensorflow":
        return _NoScope()
    import tensorflow as tf

    return _NoScope() if tf.distribute.has_strategy() else strategy.scope()


def _slot_ids(optimizer, rule):
    ids = set()
    for attribute in rule:
        for slot in getattr(optimizer, attribute, None) or []:
            if slot is not None:
                ids.add(id(slot))
    return ids


def _copy_globals(old, new, rule):
    """Step counts, learning-rate variables, loss scales, Nadam's product:
    every variable that is not a per-weight slot, in creation order."""
    old_globals = [v for v in _keras.optimizer_variables(old) if id(v) not in _slot_ids(old, rule)]
    new_globals = [v for v in _keras.optimizer_variables(new) if id(v) not in _slot_ids(new, rule)]
    if len(old_globals) != len(new_globals) or any(
            tuple(a.shape) != tuple(b.shape) for a, b in zip(old_globals, new_globals)):
        raise errors.PlanError(
            f"Expected optimizer {old.name!r} to hold the same step counters as a new "
            f"{type(old).__name__} of its config. Received: {len(old_globals)} vs "
            f"{len(new_globals)} of them. Fix: train the student with a fresh optimizer.")
    for a, b in zip(old_globals, new_globals):
        b.assign(a.numpy())


def _carry_slots(old, new, rule, growth, teacher_vars, new_variables):
    index = {id(new_var): (ref(), transforms) for ref, new_var, transforms in growth.entries}
    student_of = {id(teacher_var): new_var for teacher_var, new_var in
                  ((ref(), new_var) for ref, new_var, _ in growth.entries)
                  if teacher_var is not None}
    inserted = {}
    for anchor_refs, variables in growth.inserted:
        anchor = [student_of[id(r())] for r in anchor_refs
                  if r() is not None and id(r()) in student_of]
        for v in variables:
            inserted[id(v)] = anchor
    for attribute, kind in rule.items():
        new_slots = getattr(new, attribute, None) or []
        old_slots = getattr(old, attribute, None) or []
        for variable, slot in zip(_keras.optimizer_trainable_variables(new), new_slots):
            teacher_var, transforms = index.get(id(variable), (None, None))
            if slot is None or teacher_var is None or id(teacher_var) not in teacher_vars:
                continue
            old_slot = old_slots[_keras.slot_index(old, teacher_var)]
            if old_slot is not None:
                value = _map(np.asarray(old_slot.numpy(), np.float64), transforms, kind,
                             growth.key_axes.get(id(variable)), new_variables == "warm")
                slot.assign(value.astype(slot.dtype))
        # After the carried slots: inserted variables start from their
        # anchor's slots as they are in the student (already mapped).
        for variable, slot in zip(_keras.optimizer_trainable_variables(new), new_slots):
            if slot is not None and id(variable) in inserted:
                value = _new_slot(kind, variable, inserted[id(variable)], new, new_slots,
                                  new_variables)
                if value is not None:
                    slot.assign(np.broadcast_to(value, slot.shape).astype(slot.dtype))


def _new_slot(kind, variable, anchor, optimizer, slots, new_variables):
    """A slot of a variable that has no history (see `expand_optimizer`);
    `anchor` are the student's variables of the layer it was inserted after."""
    if kind == AVERAGE:
        return np.asarray(variable.numpy())
    if new_variables != "warm" or kind not in (SECOND, ABS):
        return None
    pairs = [(v, slots[_keras.slot_index(optimizer, v)]) for v in anchor
             if _keras.optimizer_holds(optimizer, v)]
    pairs = [(v, s) for v, s in pairs if s is not None]
    if not pairs:
        return None
    short = variable.path.rsplit("/", 1)[-1]
    same = [s for v, s in pairs if v.path.rsplit("/", 1)[-1] == short] or [s for _, s in pairs]
    return float(np.mean([np.mean(np.asarray(s.numpy(), np.float64)) for s in same]))


def _map(value, transforms, kind, key_axis, warm):
    """A teacher slot mapped along each axis transform of its weight.

    Pads (units that copy none, `keras_net2net.padding`) have no history:
    zero, except second moments with `warm`, which take the mean over the
    copies along that axis, as inserted layers take their anchor's."""
    for axis, src, counts, mode in transforms:
        axis %= value.ndim
        src = np.asarray(src)
        new_units = src < 0
        value = np.take(value, np.where(new_units, 0, src), axis=axis)
        factor = _factor(kind, src, np.asarray(counts, np.float64), mode, axis == key_axis)
        factor[new_units] = 0.0
        shape = [1] * value.ndim
        shape[axis] = -1
        value = value * factor.reshape(shape)
        if warm and kind in (SECOND, ABS) and new_units.any() and not new_units.all():
            index = [slice(None)] * value.ndim
            index[axis] = new_units
            kept = [slice(None)] * value.ndim
            kept[axis] = ~new_units
            value[tuple(index)] = np.mean(value[tuple(kept)], axis=axis, keepdims=True)
    return value


def _factor(kind, src, counts, mode, key_dims):
    """The per-position factor of one axis transform for a slot of `kind`:
    the weight's or the gradient's factor of its `rules.base.Mode`."""
    if kind in (WEIGHT, AVERAGE):  # the weights' own transform
        return mode.weight_factor(src, counts)
    if key_dims and mode.gradient == FAN_IN:
        grad = first_copy_mask(src)
    else:
        grad = mode.gradient_factor(src, counts)
    if kind == FIRST:
        return grad
    if kind == SECOND:
        return grad ** 2
    if kind == ABS:
        return np.abs(grad)
    return (grad != 0).astype(np.float64)  # STEP


def weight_map(student):
    """[(teacher variable, student variable, transforms)] of a student's
    growth (see `Rebuilder.weight_map`); teacher variables that no longer
    exist are None. Raises KeyError for a model `expand_model` did not make."""
    return [(ref(), new, transforms) for ref, new, transforms in _GROWN[student].entries]
