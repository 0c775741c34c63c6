"""The comparison protocol's settings and checks, free of TensorFlow.

`net2net-compare` defines its flags from these before TensorFlow loads;
`keras_net2net.training.comparison` raises the same messages as
`ValueError`.

Example:
>>> budgets_problem([90, 180, 360]) is None
True
>>> "increasing" in budgets_problem([180, 90, 360])
True
"""

import dataclasses
import math

DEFAULT_BUDGETS = (90, 180, 360)
MIN_BUDGETS = 3  # a frontier of fewer points says little; tests may pass fewer
METRICS = ("accuracy", "loss")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to grow the teacher (`keras_net2net.training.comparison.Arm`;
    defined here so that an arm can be named before TensorFlow loads).

    Attributes:
        name: a label such as "wider".
        widen: as for `keras_net2net.expand_model`.
        deepen: as for `keras_net2net.expand_model`.
    """
    name: str
    widen: object = None
    deepen: object = None


def budgets_problem(budgets, *, min_budgets=1):
    """What is wrong with a list of budgets, in Keras' form, or None.

    Args:
        budgets: compute budgets in student-step equivalents (strings from a
            flag, or numbers), strictly increasing, each a whole number >= 1.
        min_budgets: how many budgets at least.

    Returns:
        "Expected ... Received: budgets=... Fix: ..." or None.
    """
    shown = ",".join(str(b) for b in budgets)
    try:
        values = [float(b) for b in budgets]
    except (TypeError, ValueError):
        values = None
    if values is None or any(v != int(v) or v < 1 for v in values):
        return (f"Expected budgets as whole numbers of student-step equivalents "
                f">= 1. Received: budgets={shown}. Fix: e.g. --budgets=90,180,360.")
    if len(values) < min_budgets:
        return (f"Expected at least {min_budgets} budgets (a frontier needs "
                f"several points). Received: budgets={shown}. Fix: e.g. "
                f"--budgets=90,180,360.")
    if any(b <= a for a, b in zip(values, values[1:])):
        return (f"Expected budgets in strictly increasing order. Received: "
                f"budgets={shown}. Fix: list them smallest first, without "
                f"repeats, e.g. --budgets={','.join(str(int(v)) for v in sorted(set(values)))}.")
    return None


def lr_scales_problem(scales):
    """What is wrong with a learning-rate sweep (multiples of the base rate),
    or None.

    Example:
    >>> lr_scales_problem(["1", "2"]) is None
    True
    """
    shown = ",".join(str(s) for s in scales)
    try:
        ok = bool(scales) and all(float(s) > 0 for s in scales)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return (f"Expected positive multiples of --learning_rate such as 1,2. "
                f"Received: lr_sweep={shown}. Fix: e.g. --lr_sweep=1 for no sweep.")
    return None


def teacher_share_problem(share):
    """What is wrong with a teacher share (the fraction of each budget's
    compute given to its teacher), or None. None itself is fine: one teacher
    of --teacher_steps for every budget.

    Example:
    >>> teacher_share_problem(0.25) is None and teacher_share_problem(None) is None
    True
    >>> "Received: teacher_share=1.0" in teacher_share_problem(1.0)
    True
    """
    if share is None:
        return None
    try:
        ok = 0.0 < float(share) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return (f"Expected teacher_share strictly between 0 and 1 (the fraction "
                f"of each budget's compute its teacher trains; the student gets "
                f"the rest). Received: teacher_share={share!r}. Fix: e.g. "
                f"--teacher_share=0.25, or leave it out for one teacher of "
                f"--teacher_steps steps.")
    return None


GROW_FROM = ("cooldown", "stable")


def grow_from_problem(grow_from, teacher_share):
    """What is wrong with where students grow from, or None.

    "stable" (growth from the teacher's warmup-stable run, before its decay)
    needs a teacher per budget (`teacher_share`): one teacher of
    `teacher_steps` follows its own schedule to the end.

    Example:
    >>> grow_from_problem("stable", 0.25) is None
    True
    >>> "--teacher_share" in grow_from_problem("stable", None)
    True
    """
    if grow_from not in GROW_FROM:
        return (f"Expected grow_from in {', '.join(GROW_FROM)}. Received: "
                f"grow_from={grow_from!r}. Fix: --grow_from=stable to grow from "
                f"the teacher's stable phase, or leave it out.")
    if grow_from == "stable" and teacher_share is None:
        return ("Expected --teacher_share with grow_from=stable (each budget's "
                "teacher is a point of one warmup-stable run). Received: "
                "grow_from='stable', teacher_share=None. Fix: add "
                "--teacher_share=0.25, or --grow_from=cooldown.")
    return None


def rotate_stream_problem(angle):
    """What is wrong with a stream rotation's angle, or None.

    >>> rotate_stream_problem(1.0) is None
    True
    >>> "Received: angle=0" in rotate_stream_problem(0)
    True
    """
    try:
        ok = 0.0 < float(angle) <= math.pi
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return (f"Expected the stream rotation's angle in (0, pi] radians. "
                f"Received: angle={angle!r}. Fix: e.g. angle=1.0.")
    return None
