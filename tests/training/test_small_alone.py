"""The small model alone (`small_alone`): the teacher's architecture trained
to each budget's compute, against the grown arm and scratch."""

import keras
import numpy as np
import pytest

from keras_net2net import models
from keras_net2net.bin import compare
from keras_net2net.training import comparison
from keras_net2net.training import experiment
from keras_net2net.training import frontier
from keras_net2net.training import strategy as strategy_lib
from tests.training import streams

BUDGETS = [20, 30, 40]


def _mlp(info):
    return models.build_model("mlp", info.input_shape, info.num_classes, width=8)


@pytest.fixture(scope="module")
def reports(digits_dir, tmp_path_factory):
    """(with small_alone, the stream starts, its models' directory; without),
    on seeds 0 and 1 and on seed 0."""
    models_dir = tmp_path_factory.mktemp("models")
    config = experiment.RunConfig(
        data_dir=digits_dir, global_batch_size=32, log_every=1000,
        learning_rate=0.01, lr_schedule="wsd", warmup_steps=2, eval_every=0)
    run = lambda seeds, **kw: comparison.run_comparison(
        config, strategy_lib.get_strategy("default"), _mlp,
        [comparison.Arm("wider", widen=2.0)], seeds=seeds, teacher_steps=5,
        budgets=BUDGETS, lr_scales=[1.0, 2.0], metric="loss", time_steps=False, **kw)
    with pytest.MonkeyPatch.context() as monkeypatch:
        starts = streams.record_stream_starts(monkeypatch)
        with_small = run([0, 1], small_alone=True, output_dir=str(models_dir))
    return with_small, starts, models_dir, run([0])


def test_small_model_trains_to_each_budgets_compute(reports):
    with_small, _, models_dir, without = reports
    assert "small_alone" not in without["arms"]["wider"]
    assert without["protocol"]["small_alone"] is None
    arm = with_small["arms"]["wider"]
    # Scratch and the grown arm are the runs they are without the option.
    for role in ("scratch", "grown"):
        assert arm["frontier"][role]["per_seed"][0] == (
            without["arms"]["wider"]["frontier"][role]["per_seed"][0])
    small, ratio = arm["small_alone"], arm["teacher_flops_ratio"]
    assert 0 < ratio < 1
    np.testing.assert_allclose(small["compute"], BUDGETS, atol=ratio)
    # Inside the others' range, so every budget has a gain (no extrapolation).
    assert BUDGETS[0] <= small["compute"][0] and small["compute"][-1] <= BUDGETS[-1]
    for key in ("grown_gain_equal_compute", "scratch_gain_equal_compute"):
        assert all(g["mean"] is not None for g in small[key]), key
    assert len(small["per_seed"]) == 2 and small["lr_sweep"]["scales"] == [1.0, 2.0]
    assert all(len(s) == 3 for s in small["chosen_scales_per_seed"])
    # Trained: a loss well below the untrained model's ln(10) at every budget.
    assert max(max(s) for s in small["per_seed"]) < np.log(10) - 0.3
    # Its largest-budget model is kept beside the others: the teacher's size.
    kept = keras.saving.load_model(models_dir / "seed_1" / "wider_small.keras")
    assert kept.count_params() == arm["params"]["teacher"]


def test_gains_over_the_small_model_are_at_equal_compute(reports):
    arm = reports[0]["arms"]["wider"]
    small, front = arm["small_alone"], arm["frontier"]
    for key, compute, quality in (
            ("grown_gain_equal_compute", front["grown"]["compute"],
             front["grown"]["per_seed"]),
            ("scratch_gain_equal_compute", front["scratch"]["compute"],
             front["scratch"]["per_seed"])):
        for j, gain in enumerate(small[key]):
            expected = []
            for seed, small_loss in enumerate(small["per_seed"]):
                other = frontier.quality_at(compute, quality[seed], small["compute"][j])
                # A loss: positive when the other run's is lower.
                expected.append(None if other is None else small_loss[j] - other)
            assert gain["per_seed"] == pytest.approx(expected, nan_ok=True)
    assert "small model alone" in compare.format_table(reports[0])


def test_small_model_reads_the_stream_from_the_start(reports):
    with_small, starts, _, _ = reports
    small = with_small["arms"]["wider"]["small_alone"]
    steps, chosen = small["steps"], small["chosen_scales_per_seed"][-1]
    cooldown = lambda b: max(1, round(0.2 * b))
    # The last seed's small runs come last: per chosen rate, its stable phase
    # from the stream's start, then each of its budgets' cooldowns.
    expected = []
    for scale in sorted(set(chosen), key=chosen.index):
        expected += [0] + [s - cooldown(s) for s, c in zip(steps, chosen) if c == scale]
    assert starts[-len(expected):] == expected
