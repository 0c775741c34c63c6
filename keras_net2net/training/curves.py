"""The comparison's pictures: learning curves, the compute-to-quality
frontier, and the loss slope against the loss (a head start or a rate)."""

import matplotlib

matplotlib.use("Agg")  # Files only: binaries run where there is no display.
from matplotlib import pyplot  # pylint: disable=wrong-import-position

_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5")


def _ylabel(metric):
    return "test accuracy" if metric == "accuracy" else "validation loss"


def _mean_curve(curves):
    """The stable phase's evaluations (no branch ends), averaged over seeds
    on the steps every seed has; x in student-step equivalents."""
    per_seed = [{e["step"]: e for e in curve if e.get("branch") is None}
                for curve in curves if curve]
    if not per_seed:
        return [], []
    steps = sorted(set.intersection(*(set(c) for c in per_seed)))
    return steps, per_seed


def plot_comparison(report, path):
    """Draws the metric vs compute of every arm's stable phase (the peak
    rate held, before any cooldown), with each budget's end marked.

    Grown arms are solid lines, starting at the teacher's cost; scratch is
    dashed in the same colour. The markers are the ends of the cooldowns:
    the points of the frontier (`plot_frontier`).

    Args:
        report: a dict from `comparison.run_comparison`.
        path: the image file to write (e.g. curves.png).

    Example:
    >>> plot_comparison(report, "/tmp/curves.png")
    """
    metric = report.get("metric", "accuracy")
    figure, axes = pyplot.subplots(figsize=(7.5, 4.8))
    teacher = report["teacher"][metric]
    axes.axhline(teacher, color="grey", linestyle=":",
                 label=f"teacher ({teacher:.3f})")
    values = []
    for color, (name, arm) in zip(_COLORS, report["arms"].items()):
        # With a teacher per budget (teacher_share) the grown curve kept is
        # the largest budget's, which starts after the largest teacher.
        cost = _last(arm["teacher_cost_in_student_steps"])
        for role, style, shift in (("grown", "-", cost), ("scratch", "--", 0.0)):
            steps, per_seed = _mean_curve(arm["curves"][role])
            if steps:
                mean = [sum(s[step][metric] for s in per_seed) / len(per_seed)
                        for step in steps]
                values += mean[1:] if role == "scratch" else mean
                axes.plot([shift + s for s in steps], mean, color=color,
                          linestyle=style, alpha=1.0 if role == "grown" else 0.8,
                          label=f"{name} {'grown' if role == 'grown' else 'from scratch'}"
                                f" (stable phase)")
            points = arm["frontier"][role]
            values += points["mean"]
            axes.plot(points["compute"], points["mean"], linestyle="none",
                      marker="o" if role == "grown" else "s", color=color,
                      markerfacecolor=color if role == "grown" else "white")
    seeds = len(report["seeds"])
    axes.set(xlabel="compute (student-step equivalents; grown arms include "
                    "the teacher)", ylabel=_ylabel(metric),
             title=f"Stable phases and cooldown ends (mean of {seeds} "
                   f"seed{'s' if seeds > 1 else ''})")
    _limits(axes, values + [teacher], metric)
    _save(figure, axes, path, metric)


def plot_frontier(report, path):
    """Draws final quality vs compute for every arm: the frontier.

    Each point is a run that ended in its own cooldown at that budget, the
    mean over seeds with its standard error. Scratch is dashed with open
    squares; the grown arm solid with the teacher's compute counted, dotted
    with it left out (already paid for); the small model alone (the
    teacher's architecture given the same compute, `small_alone`) dash-dotted
    with open triangles. The legend gives the compute saved
    at scratch's best quality (teacher counted), mean over seeds.

    Args:
        report: a dict from `comparison.run_comparison`.
        path: the image file to write (e.g. frontier.png).
    """
    metric = report.get("metric", "accuracy")
    figure, axes = pyplot.subplots(figsize=(7.5, 4.8))
    values = []
    for color, (name, arm) in zip(_COLORS, report["arms"].items()):
        front = arm["frontier"]
        saved = arm["compute_saved"]["mean"]
        saved = "not reached by every seed" if saved is None else f"{100 * saved:.0f}%"
        for role, compute, style, marker, label in (
                ("scratch", front["scratch"]["compute"], "--", "s",
                 f"{name}: scratch"),
                ("grown", front["grown"]["compute"], "-", "o",
                 f"{name}: grown, teacher counted (saved at scratch's best: {saved})"),
                ("grown", front["grown"]["compute_sunk"], ":", "o",
                 f"{name}: grown, teacher already paid for")):
            points = front[role]
            values += points["mean"]
            axes.errorbar(compute, points["mean"], yerr=points["se"], color=color,
                          linestyle=style, marker=marker, capsize=3,
                          markerfacecolor="white" if role == "scratch" else color,
                          alpha=0.6 if style == ":" else 1.0, label=label)
        small = arm.get("small_alone")
        if small:
            values += small["mean"]
            axes.errorbar(small["compute"], small["mean"], yerr=small["se"],
                          color=color, linestyle="-.", marker="^", capsize=3,
                          markerfacecolor="white", alpha=0.8,
                          label=f"{name}: the small model alone, same compute")
    seeds = len(report["seeds"])
    axes.set(xlabel="compute (student-step equivalents)", ylabel=_ylabel(metric),
             title=f"Quality against compute, each run ending in its own decay\n"
                   f"(mean ± s.e., {seeds} seed{'s' if seeds > 1 else ''})")
    _limits(axes, values, metric)
    _save(figure, axes, path, metric, legend_below=True)


def _last(value):
    return value[-1] if isinstance(value, (list, tuple)) else value


def slope_points(curve, unit=1.0, key="loss"):
    """The slope of a curve's stable phase against its value.

    Between successive evaluations of the stable phase (entries whose
    "branch" is None or absent: the peak rate held, no cooldown end), the
    change of `key` per unit of compute, placed at the mean of the two values.

    Args:
        curve: a comparison curve: dicts with "step", `key` and "branch".
        unit: compute of one step in student-step equivalents (1 for the
            student and scratch, the FLOPs ratio for the teacher).
        key: the value to differentiate ("loss").

    Returns:
        (values, slopes): two lists; slopes are per student-step equivalent
        (negative while a loss falls). Empty when fewer than two evaluations.

    Example:
    >>> slope_points([{"step": 0, "loss": 3.0}, {"step": 10, "loss": 2.0},
    ...               {"step": 30, "loss": 1.6}, {"step": 30, "loss": 1.2,
    ...                                           "branch": 0}])
    ([2.5, 1.8], [-0.1, -0.02])
    """
    points = sorted((p["step"], p[key]) for p in curve or []
                    if p.get("branch") is None and p.get(key) is not None)
    values, slopes = [], []
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if s1 > s0:
            values.append(round((v0 + v1) / 2, 12))
            slopes.append(round((v1 - v0) / ((s1 - s0) * unit), 12))
    return values, slopes


def mean_slope_points(curves, unit=1.0, key="loss"):
    """`slope_points` of the seeds' mean curve (on the steps every seed
    evaluated): the mean of the per-seed slopes there."""
    steps, per_seed = _mean_curve(curves)
    mean = [{"step": step, key: sum(s[step][key] for s in per_seed) / len(per_seed)}
            for step in steps]
    return slope_points(mean, unit=unit, key=key)


def plot_slopes(report, path, key="loss"):
    """Draws the loss slope per student-step equivalent against the loss, for
    every arm's grown and scratch stable phases and the teacher, from the
    curves of a comparison run with evaluations on the way (`eval_every`).
    The y axis is the rate of decrease (minus the slope) on a log scale;
    intervals where the mean loss rose are left out and counted in the
    legend.

    It tells a head start from a rate: a grown arm that only starts lower
    falls at scratch's slope once scratch reaches its loss (the curves meet);
    one that learns faster stays below scratch's curve at the same loss.
    Slopes are per student-step equivalent, so the teacher's is divided by
    its FLOPs ratio: where it lies above scratch's, the teacher learns less
    per unit of compute than the big model would at that loss (staged
    training's cue to grow).

    Args:
        report: a dict from `comparison.run_comparison`.
        path: the image file to write (e.g. slope.png).
        key: the value on the x axis ("loss").

    Returns:
        True if written; False (nothing written) when no curve has two
        stable-phase evaluations (`eval_every=0`).
    """
    figure, axes = pyplot.subplots(figsize=(7.5, 4.8))
    drawn = False
    first = True
    for color, (name, arm) in zip(_COLORS, report["arms"].items()):
        lines = [("grown", arm["curves"]["grown"], 1.0, "-", "o"),
                 ("from scratch", arm["curves"]["scratch"], 1.0, "--", "s")]
        if first:  # one teacher for every arm; drawn in the first arm's units
            lines.append(("teacher", report["teacher"].get("curve") or [],
                          arm["teacher_flops_ratio"], ":", "^"))
        for label, curves, unit, style, marker in lines:
            values, slopes = mean_slope_points(curves, unit=unit, key=key)
            # The rate of decrease on a log axis: it spans orders of magnitude
            # from the first steps to the end. Intervals where the loss rose
            # (noise) have no place on it and are counted in the label.
            kept = [(v, -s) for v, s in zip(values, slopes) if s < 0]
            skipped = len(values) - len(kept)
            if skipped:
                label += f" ({skipped} rising interval{'s' if skipped > 1 else ''} left out)"
            if kept:
                drawn = True
                values, slopes = zip(*kept)
                axes.plot(values, slopes, color="grey" if label.startswith("teacher") else color,
                          linestyle=style, marker=marker, markersize=4,
                          markerfacecolor="white" if style != "-" else None,
                          label=label if label.startswith("teacher") else f"{name} {label}")
        first = False
    if not drawn:
        pyplot.close(figure)
        return False
    axes.set_yscale("log")
    axes.invert_xaxis()  # training moves to lower losses: left to right
    seeds = len(report["seeds"])
    axes.set(xlabel=f"{'validation loss' if key == 'loss' else key} (stable phase)",
             ylabel=f"{key} decrease per student-step equivalent",
             title=f"Slope against {key}: a head start or a rate? (mean of "
                   f"{seeds} seed{'s' if seeds > 1 else ''})")
    _save(figure, axes, path, key, legend_below=True)
    return True


def _save(figure, axes, path, metric, legend_below=False):
    """Grid, legend where the curves are not (or below the axes), the file,
    and the figure freed."""
    axes.grid(alpha=0.3)
    if legend_below:  # many entries: beside the points they would hide
        axes.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18))
    else:
        axes.legend(fontsize="small", loc="lower right" if metric == "accuracy"
                    else "upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100, bbox_inches="tight")  # the legend below included
    pyplot.close(figure)


def _limits(axes, values, metric):
    values = [v for v in values if v is not None and v == v]
    if not values:
        return
    low, high = min(values), max(values)
    pad = 0.05 * max(high - low, 1e-6)
    if metric == "accuracy":
        axes.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    else:
        axes.set_ylim(low - pad, high + pad)
