"""Learning-rate schedules: constant, cosine and warmup-stable-decay, with
linear warmup, and a re-warmup after growth.

Each is a `keras.optimizers.schedules.LearningRateSchedule` registered for
Keras serialisation, so an optimizer's `get_config()` / `from_config()` (and
`keras_net2net.expand_optimizer`) round-trip it. Keras calls a schedule with
the optimizer's `iterations`, which checkpoints hold: a run resumed at step k
takes the rate an uninterrupted run takes at step k.

The step convention: update `s` (0, 1, ... as the optimizer counts them,
minus `start_step`) takes the value of the continuous curve at `t = s + 1`,
clipped to `[0, total_steps]`. So the first update is not wasted at rate 0,
a warmup of W steps reaches the peak at update W - 1, and the last update of
a decaying schedule of T steps takes the final rate `min_lr_ratio * peak`.

```python
schedule = WarmupStableDecay(1e-3, total_steps=1000, warmup_steps=100,
                             cooldown_fraction=0.2, min_lr_ratio=0.1)
optimizer = keras.optimizers.Adam(schedule)
[float(schedule(s)) for s in (0, 99, 500, 999)]
# [1e-05, 0.001, 0.001, 0.0001]
```
"""

import math

import keras
from keras import ops

from keras_net2net import _keras
from keras_net2net.training import schedule_options as options

_PACKAGE = "keras_net2net"


def _check(**settings):
    problem = options.schedule_problem(**settings)
    if problem:
        raise ValueError(problem)


def _check_total(name, total_steps):
    if total_steps is None:
        raise ValueError(f"Expected total_steps (the run's budget) for "
                         f"lr_schedule={name!r}: it decays to the end of the run. "
                         f"Received: total_steps=None. Fix: pass the run's step count.")


def _check_peak(learning_rate):
    if not (isinstance(learning_rate, (int, float)) and learning_rate > 0):
        raise ValueError(f"Expected learning_rate > 0. Received: "
                         f"learning_rate={learning_rate!r}. Fix: e.g. "
                         f"--learning_rate=1e-3.")


class _Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """Shared parts: the peak, the warmup, the step offset."""

    def __init__(self, learning_rate, *, warmup_steps=0, start_step=0):
        _check_peak(learning_rate)
        _check(warmup_steps=warmup_steps)
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)
        self.start_step = int(start_step)

    def _position(self, step, total=None):
        """t = step - start_step + 1, clipped to [0, total]."""
        t = ops.cast(step, "float32") - float(self.start_step) + 1.0
        return ops.clip(t, 0.0, float("inf") if total is None else float(total))

    def _warm(self, t, value):
        """`value` (the rate after warmup), scaled by t / W during warmup."""
        if not self.warmup_steps:
            return value
        return ops.where(t < self.warmup_steps,
                         self.learning_rate * t / float(self.warmup_steps), value)

    def get_config(self):
        return {"learning_rate": self.learning_rate,
                "warmup_steps": self.warmup_steps, "start_step": self.start_step}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Constant(_Schedule):
    """A constant rate after an optional linear warmup.

    Args:
        learning_rate: the peak rate, > 0.
        warmup_steps: updates over which the rate rises linearly to the peak
            (update s takes `learning_rate * (s + 1) / warmup_steps`).
        start_step: the optimizer step at which this schedule's update 0 falls
            (a schedule begun after growth, on an optimizer whose step count
            continues).

    Example:
    >>> schedule = Constant(0.1, warmup_steps=4)
    >>> [round(float(schedule(s)), 4) for s in (0, 1, 3, 100)]
    [0.025, 0.05, 0.1, 0.1]
    """

    def __call__(self, step):
        t = self._position(step)
        return self._warm(t, ops.full_like(t, self.learning_rate))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Cosine(_Schedule):
    """Linear warmup, then a half cosine from the peak to `min_lr_ratio` x
    peak at the run's last update.

    Unlike `keras.optimizers.schedules.CosineDecay` (whose warmup starts at
    `initial_learning_rate` at step 0 and whose decay runs `decay_steps`
    after the warmup), the whole schedule spans `total_steps` updates and the
    last one takes the final rate.

    Args:
        learning_rate: the peak rate, > 0.
        total_steps: updates the schedule spans (warmup included).
        warmup_steps: linear warmup updates, fewer than `total_steps`.
        min_lr_ratio: the final rate as a fraction of the peak, in [0, 1].
        start_step: as for `Constant`.

    Raises:
        ValueError: for settings out of range, naming them.

    Example:
    >>> schedule = Cosine(1.0, total_steps=10, warmup_steps=2, min_lr_ratio=0.1)
    >>> [round(float(schedule(s)), 4) for s in (0, 1, 5, 9, 50)]
    [0.5, 1.0, 0.55, 0.1, 0.1]
    """

    def __init__(self, learning_rate, total_steps, *, warmup_steps=0,
                 min_lr_ratio=options.DEFAULT_MIN_LR_RATIO, start_step=0):
        super().__init__(learning_rate, warmup_steps=warmup_steps,
                         start_step=start_step)
        _check_total("cosine", total_steps)
        _check(name="cosine", warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio,
               total_steps=total_steps)
        self.total_steps = int(total_steps)
        self.min_lr_ratio = float(min_lr_ratio)

    def __call__(self, step):
        t = self._position(step, self.total_steps)
        progress = (t - self.warmup_steps) / float(self.total_steps - self.warmup_steps)
        low = self.learning_rate * self.min_lr_ratio
        decayed = low + (self.learning_rate - low) * 0.5 * (
            1.0 + ops.cos(math.pi * ops.clip(progress, 0.0, 1.0)))
        return self._warm(t, decayed)

    def get_config(self):
        return {**super().get_config(), "total_steps": self.total_steps,
                "min_lr_ratio": self.min_lr_ratio}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WarmupStableDecay(_Schedule):
    """Warmup-stable-decay (WSD): linear warmup, the peak held, and a linear
    cooldown over the last `cooldown_fraction` of the run down to
    `min_lr_ratio` x peak.

    A WSD cooldown branched off one stable run matches a full cosine run of
    the same length (Hägele et al. 2024), so runs at several budgets can share
    their stable phase.

    Args:
        learning_rate: the peak rate, > 0.
        total_steps: updates the schedule spans.
        warmup_steps: linear warmup updates.
        cooldown_fraction: the share of `total_steps` spent in the cooldown,
            in (0, 1); `schedule_options.cooldown_steps` rounds it (>= 1).
        min_lr_ratio: the final rate as a fraction of the peak, in [0, 1].
        start_step: as for `Constant`.

    Raises:
        ValueError: for settings out of range, or a warmup and cooldown that
            do not fit in `total_steps`.

    Example:
    >>> schedule = WarmupStableDecay(1.0, total_steps=100, warmup_steps=10,
    ...                              cooldown_fraction=0.2, min_lr_ratio=0.1)
    >>> [round(float(schedule(s)), 4) for s in (0, 9, 79, 80, 89, 99)]
    [0.1, 1.0, 1.0, 0.955, 0.55, 0.1]
    """

    def __init__(self, learning_rate, total_steps, *, warmup_steps=0,
                 cooldown_fraction=options.DEFAULT_COOLDOWN_FRACTION,
                 min_lr_ratio=options.DEFAULT_MIN_LR_RATIO, start_step=0):
        super().__init__(learning_rate, warmup_steps=warmup_steps,
                         start_step=start_step)
        _check_total("wsd", total_steps)
        _check(name="wsd", warmup_steps=warmup_steps,
               cooldown_fraction=cooldown_fraction, min_lr_ratio=min_lr_ratio,
               total_steps=total_steps)
        self.total_steps = int(total_steps)
        self.cooldown_fraction = float(cooldown_fraction)
        self.min_lr_ratio = float(min_lr_ratio)

    @property
    def cooldown_steps(self):
        """Updates in the cooldown."""
        return options.cooldown_steps(self.total_steps, self.cooldown_fraction)

    def __call__(self, step):
        t = self._position(step, self.total_steps)
        cooldown = self.cooldown_steps
        into = ops.clip(t - (self.total_steps - cooldown), 0.0, float(cooldown))
        decayed = self.learning_rate * (
            1.0 - (1.0 - self.min_lr_ratio) * into / float(cooldown))
        return self._warm(t, decayed)

    def get_config(self):
        return {**super().get_config(), "total_steps": self.total_steps,
                "cooldown_fraction": self.cooldown_fraction,
                "min_lr_ratio": self.min_lr_ratio}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Rewarm(keras.optimizers.schedules.LearningRateSchedule):
    """Another schedule, re-warmed linearly after growth.

    From optimizer step `start_step` the wrapped schedule's rate is scaled by
    a ramp that rises linearly from `rewarm_from` (at `start_step`) to 1 (at
    `start_step + rewarm_steps`); before and after, the rate is the wrapped
    schedule's unchanged, so the schedule's own position and decay continue
    (staged training, MSG).

    Args:
        schedule: the `LearningRateSchedule` to continue (or a float: a
            constant rate).
        start_step: the optimizer step of the growth.
        rewarm_steps: steps of the ramp, >= 1.
        rewarm_from: the ramp's start as a fraction of the rate, in (0, 1].

    Example:
    >>> schedule = Rewarm(Constant(1.0), start_step=10, rewarm_steps=4,
    ...                   rewarm_from=0.2)
    >>> [round(float(schedule(s)), 4) for s in (9, 10, 11, 14, 20)]
    [1.0, 0.2, 0.4, 1.0, 1.0]
    """

    def __init__(self, schedule, start_step, rewarm_steps,
                 rewarm_from=options.DEFAULT_REWARM_FROM):
        problem = options.rewarm_problem(rewarm_steps=rewarm_steps,
                                         rewarm_from=rewarm_from)
        if problem or not rewarm_steps:
            raise ValueError(problem or (
                f"Expected rewarm_steps >= 1 for a re-warmup. Received: "
                f"rewarm_steps={rewarm_steps!r}. Fix: e.g. --rewarm_steps=50."))
        if isinstance(schedule, dict):
            schedule = keras.optimizers.schedules.deserialize(schedule)
        elif not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            schedule = Constant(float(schedule))
        self.schedule = schedule
        self.start_step = int(start_step)
        self.rewarm_steps = int(rewarm_steps)
        self.rewarm_from = float(rewarm_from)

    def __call__(self, step):
        since = ops.cast(step, "float32") - float(self.start_step)
        ramp = self.rewarm_from + (1.0 - self.rewarm_from) * ops.clip(
            since / float(self.rewarm_steps), 0.0, 1.0)
        return self.schedule(step) * ops.where(since < 0, 1.0, ramp)

    def get_config(self):
        return {"schedule": keras.optimizers.schedules.serialize(self.schedule),
                "start_step": self.start_step, "rewarm_steps": self.rewarm_steps,
                "rewarm_from": self.rewarm_from}


def make_schedule(name, learning_rate, total_steps=None, *,
                  warmup_steps=options.DEFAULT_WARMUP_STEPS,
                  cooldown_fraction=options.DEFAULT_COOLDOWN_FRACTION,
                  min_lr_ratio=options.DEFAULT_MIN_LR_RATIO, start_step=0):
    """A schedule by `--lr_schedule` name.

    Args:
        name: one of `schedule_options.SCHEDULES`.
        learning_rate: the peak rate.
        total_steps: updates the schedule spans (needed by "cosine", "wsd").
        warmup_steps, cooldown_fraction, min_lr_ratio, start_step: as for
            the classes; "constant" uses only the warmup and start step.

    Returns:
        A `Constant`, `Cosine` or `WarmupStableDecay`.

    Raises:
        ValueError: for an unknown name or settings out of range.

    Example:
    >>> float(make_schedule("cosine", 1.0, 10)(9))
    0.0
    """
    _check(name=name, warmup_steps=warmup_steps, cooldown_fraction=cooldown_fraction,
           min_lr_ratio=min_lr_ratio)
    if name == "constant":
        return Constant(learning_rate, warmup_steps=warmup_steps,
                        start_step=start_step)
    if name == "cosine":
        return Cosine(learning_rate, total_steps, warmup_steps=warmup_steps,
                      min_lr_ratio=min_lr_ratio, start_step=start_step)
    return WarmupStableDecay(learning_rate, total_steps, warmup_steps=warmup_steps,
                             cooldown_fraction=cooldown_fraction,
                             min_lr_ratio=min_lr_ratio, start_step=start_step)


def _inner(optimizer):
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def schedule_of(optimizer):
    """The optimizer's `LearningRateSchedule`, or None for a fixed rate
    (looking through a `LossScaleOptimizer`)."""
    rate = _keras.learning_rate_object(_inner(optimizer))
    return rate if isinstance(
        rate, keras.optimizers.schedules.LearningRateSchedule) else None


def set_learning_rate(optimizer, learning_rate):
    """Gives `optimizer` (or the one a `LossScaleOptimizer` wraps) a new rate
    or schedule. A fixed rate's variable is dropped for a schedule, as Keras'
    own setter does."""
    _inner(optimizer).learning_rate = learning_rate


def rewarm(optimizer, rewarm_steps, rewarm_from=options.DEFAULT_REWARM_FROM):
    """Re-warms `optimizer`'s rate from its current step, e.g. after growth.

    Args:
        optimizer: a built Keras optimizer (e.g. from
            `keras_net2net.expand_optimizer`), with a schedule or a fixed rate.
        rewarm_steps: steps of the linear ramp.
        rewarm_from: the ramp's start as a fraction of the current rate.

    Returns:
        The `Rewarm` schedule it now follows.

    Example:

    ```python
    optimizer = keras_net2net.expand_optimizer(teacher.optimizer, student)
    rewarm(optimizer, rewarm_steps=50, rewarm_from=0.1)
    ```
    """
    inner = _inner(optimizer)
    base = schedule_of(inner)
    if base is None:
        base = Constant(float(keras.ops.convert_to_numpy(inner.learning_rate)))
    schedule = Rewarm(base, int(keras.ops.convert_to_numpy(inner.iterations)),
                      rewarm_steps, rewarm_from)
    inner.learning_rate = schedule
    return schedule


def current_learning_rate(optimizer):
    """The rate of the optimizer's next update, as a Python float."""
    return float(keras.ops.convert_to_numpy(_inner(optimizer).learning_rate))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class BranchingWSD(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup-stable-decay whose peak, warmup and cooldown are variables, set
    between runs: one traced training step serves every budget, learning
    rate and branch of a comparison (`training.comparison`).

    A WSD cooldown branched off one stable run matches a full run of that
    length (Hägele et al. 2024): train the stable phase once, copy the model
    and optimizer at `budget - cooldown`, and run each budget's cooldown from
    its copy. With the settings of a `WarmupStableDecay` (or a `Rewarm` of
    one) this schedule takes its values step for step.

    The rate at optimizer step s is `peak * ramp(s) * decay(s)`:
    - ramp: 1 without warmup; else rises linearly from `warm_from` to 1:
      `warm_from + (1 - warm_from) * clip((s - warm_start + warm_offset) /
      warmup_steps, 0, 1)`. A fresh warmup from 0 is `warm_from=0,
      warm_offset=1` (as `WarmupStableDecay`); a re-warmup after growth from
      a fraction of the rate is `warm_offset=0` (as `Rewarm`).
    - decay: 1 until `decay_start`, then linear to `min_lr_ratio` over
      `decay_steps`: `1 - (1 - min_lr_ratio) * clip(s - decay_start + 1, 0,
      decay_steps) / decay_steps`; `decay_start=None` holds the peak.

    Create it under the strategy's scope (its variables are the optimizer's
    to read).

    Example:
    >>> schedule = BranchingWSD(1.0)
    >>> schedule.set(peak=1.0, warmup_steps=10, decay_start=80, decay_steps=20,
    ...              min_lr_ratio=0.1)
    >>> [round(float(schedule(s)), 4) for s in (0, 9, 79, 80, 89, 99)]
    [0.1, 1.0, 1.0, 0.955, 0.55, 0.1]
    """

    _NEVER = 1e12  # a decay_start no run reaches

    def __init__(self, learning_rate, **settings):
        _check_peak(learning_rate)
        self._variables = {
            name: keras.Variable(0.0, dtype="float32", trainable=False,
                                 name=f"wsd_{name}")
            for name in ("peak", "warm_start", "warmup_steps", "warm_from",
                         "warm_offset", "decay_start", "decay_steps",
                         "min_lr_ratio")}
        self.set(peak=learning_rate, **settings)

    def set(self, *, peak=None, warm_start=0, warmup_steps=0, warm_from=0.0,
            warm_offset=1, decay_start=None, decay_steps=1,
            min_lr_ratio=options.DEFAULT_MIN_LR_RATIO):
        """Sets every setting (the peak only when given).

        Args:
            peak: the peak rate, > 0; None keeps it.
            warm_start: the optimizer step the warmup counts from.
            warmup_steps: steps of the ramp; 0 for none.
            warm_from: the ramp's start as a fraction of the rate, in [0, 1].
            warm_offset: 1 for a fresh warmup (step `warm_start` already takes
                `1 / warmup_steps`), 0 for a re-warmup (it takes `warm_from`).
            decay_start: the optimizer step of the cooldown's first update
                (a `WarmupStableDecay` of T steps: `T - cooldown_steps`);
                None: no cooldown.
            decay_steps: updates in the cooldown, >= 1.
            min_lr_ratio: the final rate as a fraction of the peak.
        """
        if peak is not None:
            _check_peak(peak)
        _check(warmup_steps=int(warmup_steps), min_lr_ratio=min_lr_ratio)
        values = {"warm_start": warm_start, "warmup_steps": warmup_steps,
                  "warm_from": warm_from, "warm_offset": warm_offset,
                  "decay_start": self._NEVER if decay_start is None else decay_start,
                  "decay_steps": max(1, decay_steps), "min_lr_ratio": min_lr_ratio}
        if peak is not None:
            values["peak"] = peak
        for name, value in values.items():
            self._variables[name].assign(float(value))

    def settings(self):
        """The current settings as Python floats (decay_start None when off)."""
        values = {name: float(keras.ops.convert_to_numpy(variable))
                  for name, variable in self._variables.items()}
        if values["decay_start"] >= self._NEVER:
            values["decay_start"] = None
        return values

    def __call__(self, step):
        v = {name: ops.cast(variable, "float32")
             for name, variable in self._variables.items()}
        s = ops.cast(step, "float32")
        warming = ops.clip((s - v["warm_start"] + v["warm_offset"])
                           / ops.maximum(v["warmup_steps"], 1.0), 0.0, 1.0)
        ramp = ops.where(v["warmup_steps"] > 0,
                         v["warm_from"] + (1.0 - v["warm_from"]) * warming, 1.0)
        into = ops.clip(s - v["decay_start"] + 1.0, 0.0, v["decay_steps"])
        decay = 1.0 - (1.0 - v["min_lr_ratio"]) * into / v["decay_steps"]
        return v["peak"] * ramp * decay

    def get_config(self):
        settings = self.settings()
        return {"learning_rate": settings.pop("peak"), **settings}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(config.pop("learning_rate"), **config)
