"""Learning-rate schedule names, defaults and checks, free of TensorFlow.

The binaries define their flags from these before importing TensorFlow or
Keras (a fast `--help`); `keras_net2net.training.schedules` builds the
schedules and raises the same messages as `ValueError`.

Example:
>>> schedule_problem(name="wsd", cooldown_fraction=1.5) is not None
True
>>> schedule_problem(name="cosine", warmup_steps=10, total_steps=100) is None
True
"""

SCHEDULES = ("constant", "cosine", "wsd")
DEFAULT_SCHEDULE = "constant"
DEFAULT_WARMUP_STEPS = 0
DEFAULT_COOLDOWN_FRACTION = 0.2
DEFAULT_MIN_LR_RATIO = 0.0
DEFAULT_REWARM_STEPS = 0
DEFAULT_REWARM_FROM = 0.1
# Schedules whose shape depends on the run's length.
DECAYING = ("cosine", "wsd")


def schedule_problem(*, name=None, warmup_steps=None, cooldown_fraction=None,
                     min_lr_ratio=None, total_steps=None):
    """What is wrong with schedule settings, in Keras' form, or None.

    Arguments left None are not checked.

    Args:
        name: one of `SCHEDULES`.
        warmup_steps: steps of linear warmup, >= 0.
        cooldown_fraction: the share of the run the "wsd" cooldown takes, in
            (0, 1).
        min_lr_ratio: the final rate of a decay as a fraction of the peak, in
            [0, 1].
        total_steps: the steps the schedule spans; a decaying schedule needs
            its warmup (and cooldown) to fit in it.

    Returns:
        A message "Expected ... Received: ... Fix: ..." naming the setting (as
        its flag), or None when the settings are fine.
    """
    if name is not None and name not in SCHEDULES:
        return (f"Expected lr_schedule in {', '.join(SCHEDULES)}. Received: "
                f"lr_schedule={name!r}. Fix: e.g. --lr_schedule=wsd "
                f"(warmup-stable-decay) or --lr_schedule=cosine.")
    if warmup_steps is not None and not (
            isinstance(warmup_steps, int) and warmup_steps >= 0):
        return (f"Expected warmup_steps to be an integer >= 0. Received: "
                f"warmup_steps={warmup_steps!r}. Fix: e.g. --warmup_steps=100, "
                f"or 0 for none.")
    if cooldown_fraction is not None and not 0.0 < cooldown_fraction < 1.0:
        return (f"Expected cooldown_fraction strictly between 0 and 1 (the "
                f"share of the run spent decaying). Received: cooldown_fraction="
                f"{cooldown_fraction!r}. Fix: e.g. --cooldown_fraction=0.2.")
    if min_lr_ratio is not None and not 0.0 <= min_lr_ratio <= 1.0:
        return (f"Expected min_lr_ratio between 0 and 1 (the final rate as a "
                f"fraction of the peak). Received: min_lr_ratio={min_lr_ratio!r}. "
                f"Fix: e.g. --min_lr_ratio=0.1, or 0 to decay to zero.")
    if total_steps is not None and name in DECAYING:
        if not (isinstance(total_steps, int) and total_steps >= 1):
            return (f"Expected a run of >= 1 steps for lr_schedule={name!r}. "
                    f"Received: train_steps={total_steps!r}. Fix: give "
                    f"--train_steps.")
        cooldown = cooldown_steps(total_steps, cooldown_fraction) if (
            name == "wsd" and cooldown_fraction is not None) else 0
        if warmup_steps is not None and warmup_steps + max(cooldown, 1) > total_steps:
            what = f"warmup_steps + the {cooldown} cooldown steps" if cooldown else (
                "warmup_steps")
            return (f"Expected {what} to fit in the run's {total_steps} steps "
                    f"(lr_schedule={name!r}). Received: warmup_steps="
                    f"{warmup_steps}. Fix: lower --warmup_steps"
                    f"{' or --cooldown_fraction' if cooldown else ''}, or train "
                    f"longer.")
    return None


def cooldown_steps(total_steps, cooldown_fraction):
    """The steps a "wsd" cooldown takes: the fraction of the run, rounded, at
    least one.

    Example:
    >>> cooldown_steps(100, 0.2), cooldown_steps(3, 0.1)
    (20, 1)
    """
    return max(1, int(round(cooldown_fraction * total_steps)))


def rewarm_problem(*, rewarm_steps=None, rewarm_from=None):
    """What is wrong with re-warmup settings after growth, or None.

    Example:
    >>> rewarm_problem(rewarm_steps=50, rewarm_from=0.1) is None
    True
    """
    if rewarm_steps is not None and not (
            isinstance(rewarm_steps, int) and rewarm_steps >= 0):
        return (f"Expected rewarm_steps to be an integer >= 0. Received: "
                f"rewarm_steps={rewarm_steps!r}. Fix: e.g. --rewarm_steps=50, "
                f"or 0 to continue the schedule unchanged.")
    if rewarm_from is not None and not 0.0 < rewarm_from <= 1.0:
        return (f"Expected rewarm_from in (0, 1] (the fraction of the current "
                f"rate the re-warmup starts from). Received: rewarm_from="
                f"{rewarm_from!r}. Fix: e.g. --rewarm_from=0.1.")
    return None
