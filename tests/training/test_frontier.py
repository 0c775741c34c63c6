"""Frontier arithmetic on synthetic curves with hand-computed savings: a loss
(lower is better) and the same curves as an accuracy-like score (higher is
better) must give the same answers."""

import numpy as np
import pytest

from keras_net2net.training import frontier

# One seed. Scratch at 4 budgets; the grown arm at 3, never as good as
# scratch's best (2.0).
SCRATCH_C = [100, 200, 400, 800]
SCRATCH_LOSS = [3.0, 2.5, 2.2, 2.0]
GROWN_C = [150, 250, 450]
GROWN_LOSS = [2.6, 2.2, 2.1]


def _flip(values):
    """The loss as a score where higher is better."""
    return (5.0 - np.asarray(values, np.float64)).tolist()


@pytest.fixture(params=["loss", "score"])
def orient(request):
    """(curve transform, target transform, higher_is_better)."""
    if request.param == "loss":
        return (lambda v: v), (lambda q: q), False
    return _flip, (lambda q: 5.0 - q), True


# (target loss, scratch compute, grown compute, saving, status), by hand:
# scratch 200 (2.5) -> 400 (2.2): 2.35 at 300; grown 150 (2.6) -> 250 (2.2):
# 2.35 at 212.5.
@pytest.mark.parametrize("target,c_scratch,c_grown,expected,status", [
    (2.35, 300.0, 212.5, 1 - 212.5 / 300, frontier.INTERPOLATED),
    (2.2, 400.0, 250.0, 0.375, frontier.INTERPOLATED),
    # 2.15: scratch 400 (2.2) -> 800 (2.0) at 500; grown 250 (2.2) -> 450 (2.1) at 350.
    (2.15, 500.0, 350.0, 0.3, frontier.INTERPOLATED),
    # Grown already there at its first budget: at most 150 of compute, so the
    # saving is at least 1 - 150/160 (scratch 100 (3.0) -> 200 (2.5) at 160).
    (2.7, 160.0, 150.0, 1 - 150 / 160, frontier.LOWER_BOUND),
    # Never reached by the grown arm: no extrapolation past 450.
    (2.0, 800.0, None, None, frontier.NOT_REACHED),
    (2.05, 700.0, None, None, frontier.NOT_REACHED),
])
def test_saving_at_a_quality_by_hand(orient, target, c_scratch, c_grown, expected, status):
    curve, level, higher = orient
    result = frontier.saving(SCRATCH_C, curve(SCRATCH_LOSS), GROWN_C, curve(GROWN_LOSS),
                             level(target), higher_is_better=higher)
    assert result["status"] == status
    assert result["compute_scratch"] == pytest.approx(c_scratch)
    if c_grown is None:
        assert result["compute_grown"] is None and result["saving"] is None
    else:
        assert result["compute_grown"] == pytest.approx(c_grown)
        assert result["saving"] == pytest.approx(expected)


def test_scratch_at_its_first_budget_gives_no_saving(orient):
    curve, level, higher = orient
    result = frontier.saving(SCRATCH_C, curve(SCRATCH_LOSS), GROWN_C, curve(GROWN_LOSS),
                             level(3.5), higher_is_better=higher)
    assert result["status"] == frontier.UNRESOLVED and result["saving"] is None


def test_quality_only_the_grown_arm_reaches_is_said_so(orient):
    curve, level, higher = orient
    result = frontier.saving([100, 200], curve([3.0, 2.8]), GROWN_C, curve(GROWN_LOSS),
                             level(2.5), higher_is_better=higher)
    assert result["status"] == frontier.SCRATCH_NOT_REACHED and result["saving"] is None


def test_frontier_of_one_seed_by_hand(orient):
    curve, level, higher = orient
    report = frontier.frontier(SCRATCH_C, [curve(SCRATCH_LOSS)], GROWN_C,
                               [curve(GROWN_LOSS)], higher_is_better=higher)
    [best] = report["at_best"]["per_seed"]
    assert best["quality"] == pytest.approx(level(2.0))
    assert best["status"] == frontier.NOT_REACHED
    assert report["at_best"]["summary"]["mean"] is None
    assert report["at_best"]["summary"]["missing"] == 1
    # Half of scratch's 800: its quality at 400 is 2.2; grown gets there at 250.
    [half] = report["at_half_compute"]["per_seed"]
    assert half["quality"] == pytest.approx(level(2.2))
    assert half["saving"] == pytest.approx(0.375)
    assert report["at_half_compute"]["summary"]["mean"] == pytest.approx(0.375)
    # Equal compute: grown at 200 is 2.4 (vs 2.5), at 400 2.125 (vs 2.2);
    # 100 and 800 lie outside the grown arm's budgets: not extrapolated.
    gains = [g["summary"]["per_seed"][0] for g in report["quality_gain_equal_compute"]]
    assert [g["compute"] for g in report["quality_gain_equal_compute"]] == SCRATCH_C
    assert gains[0] is None and gains[3] is None
    assert gains[1:3] == pytest.approx([0.1, 0.075])


def test_seeds_give_mean_standard_error_and_t_interval(orient):
    """Grown curves that are scratch's own with compute shrunk by s save s at
    every quality inside their range: 0.2, 0.4 and 0.3 over three seeds."""
    curve, _, higher = orient
    scratch = np.array([SCRATCH_LOSS, [3.1, 2.6, 2.3, 2.1], [2.9, 2.4, 2.25, 2.05]])
    shrink = np.array([0.2, 0.4, 0.3])
    grown_c = np.outer(1 - shrink, SCRATCH_C)
    report = frontier.frontier(SCRATCH_C, [curve(s) for s in scratch], grown_c,
                               [curve(s) for s in scratch], higher_is_better=higher)
    se = 0.1 / np.sqrt(3)
    for key in ("at_best", "at_half_compute"):
        summary = report[key]["summary"]
        assert summary["per_seed"] == pytest.approx([0.2, 0.4, 0.3])
        assert summary["mean"] == pytest.approx(0.3)
        assert summary["se"] == pytest.approx(se)
        assert summary["ci"] == pytest.approx([0.3 - 4.303 * se, 0.3 + 4.303 * se])
    # The grown model is better at every scratch budget it covers.
    for gain in report["quality_gain_equal_compute"][:3]:
        assert all(g > 0 for g in gain["summary"]["per_seed"])
    # Scratch's largest budget lies past every grown run: nothing is said there.
    assert report["quality_gain_equal_compute"][3]["summary"]["per_seed"] == [None] * 3
    assert report["scratch"]["mean"] == pytest.approx(curve(scratch.mean(axis=0)))


def test_both_views_count_the_teacher_or_not():
    """Teacher 200 steps at 0.25 of the student's FLOPs: 50 student steps."""
    views = frontier.both_views(SCRATCH_C, [SCRATCH_LOSS], [100, 200, 400], [GROWN_LOSS],
                                teacher_steps=200, teacher_flops_ratio=0.25,
                                higher_is_better=False)
    assert views["teacher_counted"]["grown"]["compute"] == GROWN_C
    assert views["teacher_sunk"]["grown"]["compute"] == [100, 200, 400]
    sunk = views["teacher_sunk"]["at_half_compute"]["per_seed"][0]
    assert sunk["compute_grown"] == pytest.approx(200.0)
    assert sunk["saving"] == pytest.approx(0.5)


def test_wall_view_counts_the_teacher_at_its_measured_time():
    """Teacher 200 steps at 0.4 s per step against the student's 0.8 s: 100
    student steps of time (its FLOPs, 0.25, would say 50). Grown compute
    [200, 300, 500]: scratch's half-compute loss 2.2 (at 400) is reached at
    300 (1 - 300/400 = 0.25); at equal time 400 the grown loss interpolates
    to 2.2 + (2.1 - 2.2) x (400 - 300) / 200 = 2.15, a gain of 0.05 over
    scratch's 2.2."""
    view = frontier.wall_view(SCRATCH_C, [SCRATCH_LOSS], [100, 200, 400], [GROWN_LOSS],
                              teacher_steps=200, teacher_seconds_per_step=0.4,
                              student_seconds_per_step=0.8, higher_is_better=False)
    assert view["teacher_wall_ratio"] == pytest.approx(0.5)
    assert view["grown"]["compute"] == [200.0, 300.0, 500.0]
    half = view["at_half_compute"]["per_seed"][0]
    assert half["compute_grown"] == pytest.approx(300.0)
    assert half["saving"] == pytest.approx(0.25)
    gain = view["quality_gain_equal_compute"][2]
    assert gain["compute"] == 400.0
    assert gain["summary"]["per_seed"] == [pytest.approx(0.05)]
    # Per-budget teacher steps (growth time scaled with the budget).
    per_budget = frontier.wall_view(
        SCRATCH_C, [SCRATCH_LOSS], [100, 200, 400], [GROWN_LOSS], teacher_steps=[100, 200, 400],
        teacher_seconds_per_step=0.2, student_seconds_per_step=0.8, higher_is_better=False)
    assert per_budget["grown"]["compute"] == [125.0, 250.0, 500.0]
    with pytest.raises(ValueError, match="positive seconds"):
        frontier.wall_view(SCRATCH_C, [SCRATCH_LOSS], [100], [[2.0]], teacher_steps=1,
                           teacher_seconds_per_step=0.0, student_seconds_per_step=1.0,
                           higher_is_better=False)


@pytest.mark.parametrize("args,words", [
    (([200, 100], [1.0, 2.0], [100], [1.0]), ["increasing", "compute=[200.0, 100.0]"]),
    (([100, 200], [[1.0, 2.0]], [100, 200], [[1.0, 2.0], [1.0, 2.0]]), ["seeds"]),
    (([100, 200, 300], [[1.0, 2.0]], [100], [[1.0]]), ["scratch_quality", "(1, 2)"]),
])
def test_bad_curves_are_named(args, words):
    with pytest.raises(ValueError) as info:
        frontier.frontier(*args, higher_is_better=True)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_interval_widens_for_few_seeds():
    two = frontier.summarize([0.1, 0.3])
    assert two["se"] == pytest.approx(0.1)
    assert two["ci"] == pytest.approx([0.2 - 12.706 * 0.1, 0.2 + 12.706 * 0.1])
    assert frontier.summarize([0.5])["ci"] is None
