"""Compute-to-quality frontiers: does growing pay, at which budgets, by how much.

Pure NumPy arithmetic on measured points, as the published work reports it
(staged training, LEMON, bert2BERT, MSG, G_stack): scratch runs at several
budgets, each ending in its own decay, and grown runs at several budgets,
each a point (compute, final quality) per seed. Compute is in any one unit;
the comparisons use student-step equivalents (`student_step_equivalents`),
with the teacher's steps weighted by its FLOPs ratio ("teacher counted") or
left out ("teacher already paid for").

- Compute to reach a quality q: the first crossing of the piecewise-linear
  curve through the measured points, never extrapolated. A curve that never
  gets to q has "not reached" it; one already there at its smallest budget
  reached it at or below that budget (a bound, said as such).
- Saving at q: `1 - C_grown(q) / C_scratch(q)`, reported at scratch's best
  quality and at the quality scratch reaches with half its largest compute.
- Quality gain at equal compute: the grown curve's quality (interpolated)
  minus scratch's at each scratch budget, signed so that positive means the
  grown model is better, for losses and accuracies alike.
- Over seeds (paired by index): mean, standard error and a Student-t 95%
  interval, with the per-seed values.

```python
scratch = {"compute": [100, 200, 400, 800], "quality": [[3.0, 2.5, 2.2, 2.0]]}
grown = {"compute": [150, 250, 450], "quality": [[2.6, 2.2, 2.1]]}
report = frontier(scratch["compute"], scratch["quality"], grown["compute"],
                  grown["quality"], higher_is_better=False)
report["at_half_compute"]["per_seed"][0]["saving"]  # 1 - 250 / 400 = 0.375
report["at_best"]["per_seed"][0]["status"]          # "not reached"
```
"""

import numpy as np

INTERPOLATED = "interpolated"
NOT_REACHED = "not reached"
# Reached already at the grown arm's smallest budget: C_grown(q) is at most
# that budget, so the saving is at least the value given.
LOWER_BOUND = "lower bound"
# Scratch reached q at its own smallest budget: C_scratch(q) is unknown
# (at most that budget), so no saving can be stated.
UNRESOLVED = "scratch unresolved"
NOT_MEASURED = "not measured"
# The grown arm reaches a quality scratch never does at its budgets.
SCRATCH_NOT_REACHED = "scratch not reached"

# Two-sided 95% quantiles of Student's t by degrees of freedom.
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
        8: 2.306, 9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145,
        15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
        25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}


def _t95(dof):
    """The t quantile for `dof` (the next tabulated dof below, so the interval
    errs wide), 1.96 past the table."""
    if dof > 120:
        return 1.960
    return _T95[max(d for d in _T95 if d <= dof)]


def _curve(compute, quality):
    compute = np.asarray(compute, np.float64)
    quality = np.asarray(quality, np.float64)
    if compute.ndim != 1 or compute.shape != quality.shape or len(compute) < 1:
        raise ValueError(f"Expected compute and quality of one curve as equal-length "
                         f"1-D sequences. Received: compute shape {compute.shape}, "
                         f"quality shape {quality.shape}.")
    if np.any(np.diff(compute) <= 0) or np.any(compute <= 0):
        raise ValueError(f"Expected compute > 0 increasing from budget to budget. "
                         f"Received: compute={compute.tolist()}. Fix: list the "
                         f"budgets in increasing order.")
    return compute, quality


def compute_to_reach(compute, quality, target, *, higher_is_better):
    """The compute at which a measured curve first reaches `target`.

    Args:
        compute: increasing compute of the measured budgets.
        quality: the final quality at each.
        target: the quality to reach.
        higher_is_better: True for accuracy, False for a loss.

    Returns:
        (compute, status): the linear interpolation at the first crossing and
        `INTERPOLATED`; the smallest budget and `LOWER_BOUND` when the curve
        is there already at it; (None, `NOT_REACHED`) when it never gets
        there. Nothing is extrapolated.

    Example:
    >>> compute_to_reach([100, 200, 400], [3.0, 2.5, 2.2], 2.35,
    ...                  higher_is_better=False)
    (300.0, 'interpolated')
    >>> compute_to_reach([100, 200], [0.5, 0.7], 0.8, higher_is_better=True)
    (None, 'not reached')
    """
    compute, quality = _curve(compute, quality)
    sign = 1.0 if higher_is_better else -1.0
    reached = sign * quality >= sign * target
    if not reached.any():
        return None, NOT_REACHED
    i = int(np.argmax(reached))
    if i == 0:
        return float(compute[0]), LOWER_BOUND
    c0, c1, q0, q1 = compute[i - 1], compute[i], quality[i - 1], quality[i]
    return float(c0 + (target - q0) * (c1 - c0) / (q1 - q0)), INTERPOLATED


def quality_at(compute, quality, at):
    """A measured curve's quality at compute `at`, interpolated linearly;
    None outside the measured budgets (never extrapolated).

    Example:
    >>> round(quality_at([150, 250, 450], [2.6, 2.2, 2.1], 200), 6)
    2.4
    >>> quality_at([150, 250, 450], [2.6, 2.2, 2.1], 800) is None
    True
    """
    compute, quality = _curve(compute, quality)
    if not compute[0] <= at <= compute[-1]:
        return None
    return float(np.interp(at, compute, quality))


def saving(scratch_compute, scratch_quality, grown_compute, grown_quality, target, *,
           higher_is_better):
    """The compute saved by the grown arm at quality `target`.

    Returns:
        {"quality", "compute_scratch", "compute_grown", "saving", "status"}:
        saving = 1 - compute_grown / compute_scratch; None with status
        `NOT_REACHED` (the grown arm never gets there), `UNRESOLVED`
        (scratch is there at its smallest budget), `SCRATCH_NOT_REACHED`
        (only the grown arm gets there) or `NOT_MEASURED`
        (`target` is None); status `LOWER_BOUND` marks a saving that is at
        least the value given.

    Example:
    >>> saving([100, 200, 400], [3.0, 2.5, 2.2], [150, 250], [2.6, 2.2],
    ...        2.2, higher_is_better=False)["saving"]
    0.375
    """
    result = {"quality": target, "compute_scratch": None, "compute_grown": None,
              "saving": None, "status": NOT_MEASURED}
    if target is None:
        return result
    c_scratch, scratch_status = compute_to_reach(
        scratch_compute, scratch_quality, target, higher_is_better=higher_is_better)
    c_grown, status = compute_to_reach(grown_compute, grown_quality, target,
                                       higher_is_better=higher_is_better)
    result.update(compute_scratch=c_scratch, compute_grown=c_grown, status=status)
    if status == NOT_REACHED:
        return result
    if scratch_status == NOT_REACHED:
        result["status"] = SCRATCH_NOT_REACHED
    elif scratch_status == LOWER_BOUND:
        result["status"] = UNRESOLVED
    else:
        result["saving"] = 1.0 - c_grown / c_scratch
    return result


def summarize(values):
    """Mean, standard error and Student-t 95% interval of per-seed values.

    Args:
        values: one number per seed; None where a seed has none (e.g. not
            reached).

    Returns:
        {"per_seed", "n", "mean", "se", "ci"}; mean, se and ci are None when
        any seed has no value ("missing" counts them), se and ci also with
        a single seed.

    Example:
    >>> summary = summarize([0.2, 0.4, 0.3])
    >>> round(summary["mean"], 6), round(summary["se"], 6)
    (0.3, 0.057735)
    """
    values = list(values)
    missing = sum(v is None for v in values)
    summary = {"per_seed": values, "n": len(values), "missing": missing,
               "mean": None, "se": None, "ci": None}
    if missing or not values:
        return summary
    array = np.asarray(values, np.float64)
    summary["mean"] = float(array.mean())
    if len(array) > 1:
        se = float(array.std(ddof=1) / np.sqrt(len(array)))
        half = _t95(len(array) - 1) * se
        summary.update(se=se, ci=[summary["mean"] - half, summary["mean"] + half])
    return summary


def _per_seed(compute, quality, name):
    quality = np.atleast_2d(np.asarray(quality, np.float64))
    try:
        if quality.ndim != 2:
            raise ValueError
        compute = np.broadcast_to(np.asarray(compute, np.float64), quality.shape)
    except ValueError:
        raise ValueError(f"Expected {name}_quality as (seeds, budgets) and {name}_compute "
                         f"as (budgets,) or (seeds, budgets). Received: shapes "
                         f"{np.shape(quality)} and {np.shape(compute)}.") from None
    return compute, quality


def frontier(scratch_compute, scratch_quality, grown_compute, grown_quality, *,
             higher_is_better):
    """Savings and quality gains of a grown arm against scratch, per seed.

    Args:
        scratch_compute: compute of scratch's budgets, increasing: (budgets,),
            or (seeds, budgets).
        scratch_quality: final quality per seed and budget (seeds, budgets).
        grown_compute: compute of the grown arm's budgets, teacher counted or
            not as the caller chooses (see `both_views`).
        grown_quality: (seeds, budgets); seed i is paired with scratch's seed i.
        higher_is_better: True for accuracy, False for a loss.

    Returns:
        A JSON-ready dict:
        "scratch", "grown": {"compute", "mean", "se"} per budget;
        "at_best": per seed the saving at scratch's best quality of that seed
        (`saving`'s dicts under "per_seed") and "summary" of the savings;
        "at_half_compute": likewise at the quality scratch reaches with half
        its largest compute (interpolated; not measured when half lies below
        its smallest budget);
        "quality_gain_equal_compute": per scratch budget, {"compute",
        "summary"} of grown minus scratch quality, positive = grown better,
        None per seed where the grown arm has no measurement around it.

    Raises:
        ValueError: if shapes disagree, compute is not increasing, or the
            seed counts differ.
    """
    s_compute, s_quality = _per_seed(scratch_compute, scratch_quality, "scratch")
    g_compute, g_quality = _per_seed(grown_compute, grown_quality, "grown")
    if len(s_quality) != len(g_quality):
        raise ValueError(f"Expected as many grown seeds as scratch seeds (paired by "
                         f"index). Received: {len(g_quality)} and {len(s_quality)}.")
    sign = 1.0 if higher_is_better else -1.0
    best, half = [], []
    for sc, sq, gc, gq in zip(s_compute, s_quality, g_compute, g_quality):
        kw = {"higher_is_better": higher_is_better}
        target = float(sq[np.argmax(sign * sq)])
        best.append(saving(sc, sq, gc, gq, target, **kw))
        half.append(saving(sc, sq, gc, gq, quality_at(sc, sq, sc[-1] / 2.0), **kw))
    gains = []
    for j in range(s_quality.shape[1]):
        per_seed = []
        for sc, sq, gc, gq in zip(s_compute, s_quality, g_compute, g_quality):
            grown_q = quality_at(gc, gq, sc[j])
            per_seed.append(None if grown_q is None else sign * (grown_q - sq[j]))
        gains.append({"compute": float(s_compute[0][j]), "summary": summarize(per_seed)})
    describe = lambda c, q: {"compute": c[0].tolist(), "mean": q.mean(axis=0).tolist(),
                             "se": (q.std(axis=0, ddof=1) / np.sqrt(len(q))).tolist()
                             if len(q) > 1 else None}
    return {
        "higher_is_better": higher_is_better,
        "scratch": describe(s_compute, s_quality),
        "grown": describe(g_compute, g_quality),
        "at_best": {"per_seed": best, "summary": summarize([b["saving"] for b in best])},
        "at_half_compute": {"per_seed": half,
                            "summary": summarize([h["saving"] for h in half])},
        "quality_gain_equal_compute": gains,
    }


def student_step_equivalents(student_steps, teacher_steps=0, teacher_flops_ratio=0.0):
    """Compute in student steps: the student's own, plus the teacher's
    weighted by its training FLOPs per step relative to the student's.

    Example:
    >>> student_step_equivalents([100, 200], teacher_steps=200,
    ...                          teacher_flops_ratio=0.25).tolist()
    [150.0, 250.0]

    `teacher_steps` may be one number or one per budget (a teacher grown at a
    point that scales with the budget):
    >>> student_step_equivalents([100, 200], teacher_steps=[100, 400],
    ...                          teacher_flops_ratio=0.25).tolist()
    [125.0, 300.0]
    """
    return (np.asarray(student_steps, np.float64)
            + np.asarray(teacher_steps, np.float64) * float(teacher_flops_ratio))


def both_views(scratch_steps, scratch_quality, student_steps, grown_quality, *,
               teacher_steps, teacher_flops_ratio, higher_is_better):
    """`frontier` twice: the teacher's compute counted, and already paid for.

    Args:
        scratch_steps: scratch budgets in steps (of the student's architecture).
        scratch_quality: (seeds, budgets).
        student_steps: the grown arm's budgets in student steps after growth.
        grown_quality: (seeds, budgets).
        teacher_steps: the teacher's steps before growth: one number, or
            one per budget.
        teacher_flops_ratio: teacher / student training FLOPs per step.
        higher_is_better: True for accuracy, False for a loss.

    Returns:
        {"teacher_counted": frontier, "teacher_sunk": frontier}.
    """
    counted = student_step_equivalents(student_steps, teacher_steps, teacher_flops_ratio)
    return {
        "teacher_counted": frontier(scratch_steps, scratch_quality, counted, grown_quality,
                                    higher_is_better=higher_is_better),
        "teacher_sunk": frontier(scratch_steps, scratch_quality,
                                 student_step_equivalents(student_steps), grown_quality,
                                 higher_is_better=higher_is_better),
    }


def wall_view(scratch_steps, scratch_quality, student_steps, grown_quality, *,
              teacher_steps, teacher_seconds_per_step, student_seconds_per_step,
              higher_is_better):
    """`frontier` with compute in wall-clock time instead of FLOPs.

    Scratch and the grown student share one architecture, so a step of
    either costs `student_seconds_per_step`; a teacher step costs
    `teacher_seconds_per_step`. Compute is in student-step equivalents of
    time: the teacher's steps weighted by the ratio of the two measured
    times instead of their FLOPs (small matmuls use a processor less well,
    so on a CPU a teacher step costs more time than its FLOPs say).

    Args:
        scratch_steps, scratch_quality, student_steps, grown_quality,
        teacher_steps, higher_is_better: as for `both_views`.
        teacher_seconds_per_step: measured seconds per teacher step.
        student_seconds_per_step: measured seconds per student step, measured
            beside the teacher's (same process, same load).

    Returns:
        A `frontier` dict, plus "teacher_wall_ratio" (teacher / student
        seconds per step).

    Example (teacher 200 steps at 0.5 of a student step's time = 100):
    >>> view = wall_view([100, 200, 400], [[3.0, 2.5, 2.0]], [100, 200],
    ...                  [[2.4, 2.0]], teacher_steps=200,
    ...                  teacher_seconds_per_step=0.01,
    ...                  student_seconds_per_step=0.02, higher_is_better=False)
    >>> view["grown"]["compute"], view["teacher_wall_ratio"]
    ([200.0, 300.0], 0.5)
    >>> round(view["at_best"]["per_seed"][0]["saving"], 4)  # 1 - 300 / 400
    0.25
    """
    if not (teacher_seconds_per_step > 0 and student_seconds_per_step > 0):
        raise ValueError(f"Expected positive seconds per step. Received: teacher "
                         f"{teacher_seconds_per_step}, student "
                         f"{student_seconds_per_step}.")
    ratio = float(teacher_seconds_per_step) / float(student_seconds_per_step)
    out = frontier(scratch_steps, scratch_quality,
                   student_step_equivalents(student_steps, teacher_steps, ratio),
                   grown_quality, higher_is_better=higher_is_better)
    out["teacher_wall_ratio"] = ratio
    return out
