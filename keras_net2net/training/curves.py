"""The comparison's learning curves as a picture."""

import matplotlib

matplotlib.use("Agg")  # Files only: binaries run where there is no display.
from matplotlib import pyplot  # pylint: disable=wrong-import-position


def plot_comparison(report, path):
    """Draws the metric vs steps for every arm of a comparison report.

    Students are solid lines, their scratch twins dashed in the same colour
    (they train longer: at least teacher + student steps), each twin's
    converged value (the target) a dotted line, the teacher's converged value
    grey. The student's x axis is its own steps; the legend gives the total
    speed-up, which counts the teacher's steps too.

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
    for color, (name, arm) in zip(("C0", "C1", "C2", "C3", "C4", "C5"),
                                  report["arms"].items()):
        label = name if arm["speedup"] is None else (
            f"{name} ({arm['speedup']:.1f}x steps, "
            f"{arm['speedup_total']:.1f}x total)")
        axes.plot(arm["steps"], arm[f"student_{metric}"], color=color,
                  label=f"Net2Net {label}")
        axes.plot(arm["scratch_steps"], arm[f"scratch_{metric}"], color=color,
                  linestyle="--", alpha=0.8, label=f"{name} from scratch")
        axes.axhline(arm["target"], color=color, linestyle=":", linewidth=0.8)
    seeds = len(report["seeds"])
    axes.set(xlabel="training steps (student or scratch twin)",
             ylabel=f"{'test accuracy' if metric == 'accuracy' else 'validation loss'}",
             title=f"Net2Net students vs random init (mean of {seeds} "
                   f"seed{'s' if seeds > 1 else ''})")
    if metric == "accuracy":
        low = min(min(arm[f"scratch_{metric}"][1:] + arm[f"student_{metric}"])
                  for arm in report["arms"].values())
        axes.set_ylim(max(0.0, low - 0.05), 1.0)
    else:
        high = max(max(arm[f"student_{metric}"] + arm[f"scratch_{metric}"][2:])
                   for arm in report["arms"].values())
        low = min(min(arm[f"student_{metric}"] + arm[f"scratch_{metric}"])
                  for arm in report["arms"].values())
        axes.set_ylim(low - 0.05 * (high - low), high)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right" if metric == "accuracy"
                else "upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
