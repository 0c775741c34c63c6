"""The comparison's pictures: the slope-against-loss arithmetic on hand values
and the PNGs written from synthetic reports."""

import pytest

from keras_net2net.training import curves


def _curve(points, ends=()):
    """A comparison curve: stable-phase (step, loss) points, then branch ends."""
    return ([{"step": s, "loss": v, "accuracy": 0.5, "branch": None} for s, v in points]
            + [{"step": s, "loss": v, "accuracy": 0.5, "branch": i}
               for i, (s, v) in enumerate(ends)])


def test_slopes_of_a_stable_phase_by_hand():
    # Steps 0, 10, 30, 40 at losses 3.0, 2.0, 1.6, 1.5; the branch end at 40
    # (loss 1.0, after a cooldown) is not part of the stable phase.
    curve = _curve([(0, 3.0), (10, 2.0), (30, 1.6), (40, 1.5)], ends=[(40, 1.0)])
    values, slopes = curves.slope_points(curve)
    assert values == pytest.approx([2.5, 1.8, 1.55])
    assert slopes == pytest.approx([-0.1, -0.02, -0.01])
    # A teacher step worth 0.25 student steps: four times the slope per
    # student-step equivalent.
    _, teacher = curves.slope_points(curve, unit=0.25)
    assert teacher == pytest.approx([-0.4, -0.08, -0.04])
    # Entries out of order are sorted by step; fewer than two give nothing.
    assert curves.slope_points(list(reversed(curve)))[1] == pytest.approx(slopes)
    assert curves.slope_points(_curve([(0, 3.0)])) == ([], [])
    assert curves.slope_points([]) == ([], [])
    # A history without "branch" keys (a teacher trained by experiment.train).
    assert curves.slope_points([{"step": 0, "loss": 2.0}, {"step": 4, "loss": 1.0}]) == (
        [1.5], [-0.25])


def test_mean_slopes_average_the_seeds_on_shared_steps():
    seed0 = _curve([(0, 3.0), (10, 2.0), (20, 1.8)])
    seed1 = _curve([(0, 3.2), (10, 2.4), (15, 2.2), (20, 2.0)])  # 15: one seed only
    values, slopes = curves.mean_slope_points([seed0, seed1])
    # Mean curve: (0, 3.1), (10, 2.2), (20, 1.9).
    assert values == pytest.approx([2.65, 2.05])
    assert slopes == pytest.approx([-0.09, -0.03])
    assert curves.mean_slope_points([[], None]) == ([], [])


def _report(grown, scratch, teacher, ratio=0.5):
    return {"seeds": [0], "metric": "loss",
            "teacher": {"curve": [teacher]},
            "arms": {"both": {"teacher_flops_ratio": ratio,
                              "curves": {"grown": [grown], "scratch": [scratch]}}}}


def test_slope_plot_is_written_from_curves(tmp_path):
    # A head start: the grown arm starts lower and falls at scratch's slope.
    scratch = _curve([(0, 5.0), (50, 3.0), (100, 2.5), (150, 2.3), (200, 2.2)])
    grown = _curve([(0, 2.6), (50, 2.35), (100, 2.25), (150, 2.17)])
    teacher = _curve([(0, 5.0), (50, 3.5), (100, 3.0)])
    path = tmp_path / "slope.png"
    assert curves.plot_slopes(_report(grown, scratch, teacher), str(path)) is True
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_slope_plot_needs_evaluations_on_the_way(tmp_path):
    # eval_every=0: step 0 and the branch ends only; nothing to differentiate.
    only_ends = _curve([(0, 3.0)], ends=[(90, 2.0), (180, 1.8)])
    path = tmp_path / "slope.png"
    assert curves.plot_slopes(_report(only_ends, only_ends, []), str(path)) is False
    assert not path.exists()


def test_grown_curves_shift_by_the_largest_teachers_cost(tmp_path):
    """With a teacher per budget (teacher_share) the cost is a list: the
    curves plot starts the grown curve after the largest budget's teacher."""
    report = _report(_curve([(0, 2.6), (50, 2.3)]), _curve([(0, 5.0), (50, 3.0)]), [])
    arm = report["arms"]["both"]
    arm.update(teacher_cost_in_student_steps=[5.0, 7.5, 10.0], frontier={
        "scratch": {"compute": [20.0, 30.0, 40.0], "mean": [3.0, 2.8, 2.6]},
        "grown": {"compute": [20.0, 29.5, 40.0], "mean": [2.7, 2.5, 2.4]}})
    report["teacher"]["loss"] = 3.2
    assert curves._last(arm["teacher_cost_in_student_steps"]) == 10.0
    curves.plot_comparison(report, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")
