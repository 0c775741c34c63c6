"""The comparison's learning curves as a picture."""

import matplotlib

matplotlib.use("Agg")  # Files only: binaries run where there is no display.
from matplotlib import pyplot  # pylint: disable=wrong-import-position


def plot_comparison(report, path):
    """Draws test accuracy vs steps for every arm of a comparison report.

    Students are solid lines, their scratch twins dashed in the same colour,
    the teacher's accuracy a grey horizontal line.

    Args:
        report: a dict from `comparison.run_comparison`.
        path: the image file to write (e.g. curves.png).

    Example:
    >>> plot_comparison(report, "/tmp/curves.png")
    """
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    axes.axhline(report["teacher"]["accuracy"], color="grey", linestyle=":",
                 label=f"teacher ({report['teacher']['accuracy']:.3f})")
    for color, (name, arm) in zip(("C0", "C1", "C2", "C3", "C4", "C5"),
                                  report["arms"].items()):
        label = name if arm["speedup"] is None else (
            f"{name} (speed-up {arm['speedup']:.1f}x)")
        axes.plot(arm["steps"], arm["student_accuracy"], color=color,
                  label=f"Net2Net {label}")
        axes.plot(arm["steps"], arm["scratch_accuracy"], color=color,
                  linestyle="--", label=f"{name} from scratch")
    seeds = len(report["seeds"])
    axes.set(xlabel="training steps", ylabel="test accuracy",
             title=f"Net2Net students vs random init (mean of {seeds} "
                   f"seed{'s' if seeds > 1 else ''})")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
