"""The comparison's pictures: learning curves and the compute-to-quality
frontier."""

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
        cost = arm["teacher_cost_in_student_steps"]
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
    with it left out (already paid for). The legend gives the compute saved
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
    seeds = len(report["seeds"])
    axes.set(xlabel="compute (student-step equivalents)", ylabel=_ylabel(metric),
             title=f"Quality against compute, each run ending in its own decay\n"
                   f"(mean ± s.e., {seeds} seed{'s' if seeds > 1 else ''})")
    _limits(axes, values, metric)
    _save(figure, axes, path, metric, legend_below=True)


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
