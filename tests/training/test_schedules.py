"""Learning-rate schedules: hand-computed rates, serialisation, flags, and
the rate a run takes across a resume and across growth."""

import dataclasses
import glob
import os

from absl import flags
import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_net2net as n2n
from keras_net2net import models
from keras_net2net.bin import flags as shared_flags
from keras_net2net.bin import train as train_bin
from keras_net2net.training import experiment
from keras_net2net.training import growth as growth_lib
from keras_net2net.training import schedule_options
from keras_net2net.training import schedules
from keras_net2net.training import strategy as strategy_lib
from tests.training import streams

PEAK = 0.01


def _rates(schedule, steps):
    return [float(schedule(step)) for step in steps]


# -- the rates, by hand -------------------------------------------------------------
# WSD over 100 steps, warmup 10, cooldown 20% (steps 80..99), min 0.1 x peak:
# update s takes the curve at t = s + 1.
WSD = dict(total_steps=100, warmup_steps=10, cooldown_fraction=0.2, min_lr_ratio=0.1)
WSD_EXPECTED = {0: 0.1, 4: 0.5, 9: 1.0, 50: 1.0, 79: 1.0,
                80: 1 - 0.9 * 1 / 20, 89: 1 - 0.9 * 10 / 20, 98: 1 - 0.9 * 19 / 20,
                99: 0.1, 500: 0.1}
# Cosine over 20 steps, warmup 4, min 0.2 x peak: t = s + 1, progress
# (t - 4) / 16.
COSINE_EXPECTED = {0: 0.25, 2: 0.75, 3: 1.0, 11: 0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * 0.5)),
                   7: 0.2 + 0.8 * 0.5 * (1 + np.cos(np.pi * 0.25)), 19: 0.2, 40: 0.2}


@pytest.mark.parametrize("schedule,expected", [
    (schedules.WarmupStableDecay(PEAK, **WSD), WSD_EXPECTED),
    (schedules.Cosine(PEAK, 20, warmup_steps=4, min_lr_ratio=0.2), COSINE_EXPECTED),
    (schedules.Cosine(PEAK, 10), {0: 0.5 * (1 + np.cos(np.pi * 0.1)), 9: 0.0}),
    (schedules.Constant(PEAK, warmup_steps=5), {0: 0.2, 3: 0.8, 4: 1.0, 1000: 1.0}),
    (schedules.Constant(PEAK), {0: 1.0, 7: 1.0}),
    # A schedule begun at optimizer step 30 (after growth, fresh schedule on a
    # carried count): its update 0 is step 30.
    (schedules.WarmupStableDecay(PEAK, 100, warmup_steps=10, start_step=30),
     {30: 0.1, 39: 1.0, 129: 0.0}),
    # Re-warmed at step 50 over 10 steps from 0.1 x: the ramp scales the
    # schedule it wraps, which goes on decaying underneath.
    (schedules.Rewarm(schedules.WarmupStableDecay(PEAK, **WSD), 75, 10, 0.1),
     {74: 1.0, 75: 0.1, 80: (0.1 + 0.9 * 0.5) * (1 - 0.9 / 20),
      85: 1 - 0.9 * 6 / 20, 99: 0.1}),
])
def test_rates_match_hand_values(schedule, expected):
    steps = sorted(expected)
    np.testing.assert_allclose(_rates(schedule, steps),
                               [PEAK * expected[s] for s in steps], rtol=1e-5, atol=1e-9)


def test_cooldown_steps_round_and_keep_one():
    assert schedule_options.cooldown_steps(100, 0.2) == 20
    assert schedule_options.cooldown_steps(10, 0.01) == 1
    assert schedules.WarmupStableDecay(1.0, 7, cooldown_fraction=0.5).cooldown_steps == 4


@pytest.mark.parametrize("schedule", [
    schedules.WarmupStableDecay(PEAK, **WSD),
    schedules.Cosine(PEAK, 20, warmup_steps=4, min_lr_ratio=0.2, start_step=3),
    schedules.Constant(PEAK, warmup_steps=5),
    schedules.Rewarm(schedules.Cosine(PEAK, 50), 20, 5, 0.3),
])
def test_schedules_round_trip_through_an_optimizers_config(schedule):
    optimizer = keras.optimizers.Adam(schedule)
    config = keras.saving.serialize_keras_object(optimizer)
    restored = keras.saving.deserialize_keras_object(config)
    again = restored._learning_rate
    assert type(again) is type(schedule) and again is not schedule
    steps = [0, 3, 10, 22, 49, 99, 200]
    np.testing.assert_allclose(_rates(again, steps), _rates(schedule, steps), rtol=1e-6)


@pytest.mark.parametrize("make,words", [
    (lambda: schedules.make_schedule("linear", PEAK, 10), ["lr_schedule='linear'", "Fix"]),
    (lambda: schedules.WarmupStableDecay(PEAK, 100, cooldown_fraction=1.0),
     ["cooldown_fraction=1.0", "between 0 and 1"]),
    (lambda: schedules.WarmupStableDecay(PEAK, 100, cooldown_fraction=0.0),
     ["cooldown_fraction=0.0"]),
    (lambda: schedules.Cosine(PEAK, 100, min_lr_ratio=1.5), ["min_lr_ratio=1.5"]),
    (lambda: schedules.Cosine(PEAK, 10, warmup_steps=10), ["warmup_steps=10", "10 steps"]),
    (lambda: schedules.WarmupStableDecay(PEAK, 10, warmup_steps=9),
     ["warmup_steps + the 2 cooldown steps", "warmup_steps=9"]),
    (lambda: schedules.Cosine(PEAK, None), ["total_steps=None"]),
    (lambda: schedules.Constant(0.0), ["learning_rate=0.0"]),
    (lambda: schedules.Rewarm(schedules.Constant(PEAK), 5, 0), ["rewarm_steps"]),
    (lambda: schedules.Rewarm(schedules.Constant(PEAK), 5, 10, 0.0), ["rewarm_from=0.0"]),
])
def test_bad_settings_are_named(make, words):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert message.startswith("Expected") and "Received:" in message, message
    for word in words:
        assert word in message, (word, message)


# -- flags --------------------------------------------------------------------------
def _parse(*argv):
    flag_values = flags.FlagValues()
    train_bin.define_flags(flag_values)
    flag_values(["net2net-train", "--model_dir=/tmp/unused", *argv])
    return flag_values


@pytest.mark.parametrize("argv,words", [
    (["--lr_schedule=linear"], ["--lr_schedule=linear", "Expected lr_schedule in constant, "
                                "cosine, wsd", "Fix"]),
    (["--cooldown_fraction=1.5"], ["--cooldown_fraction=1.5", "between 0 and 1", "Fix"]),
    (["--cooldown_fraction=0"], ["--cooldown_fraction=0.0"]),
    (["--min_lr_ratio=2"], ["--min_lr_ratio=2.0", "Fix"]),
    (["--warmup_steps=-1"], ["--warmup_steps=-1", "Fix"]),
    (["--lr_schedule=cosine", "--train_steps=50", "--warmup_steps=50"],
     ["warmup_steps=50", "50 steps", "Fix"]),
    (["--rewarm_steps=-2"], ["--rewarm_steps=-2", "Fix"]),
    (["--rewarm_from=1.5"], ["--rewarm_from=1.5", "Fix"]),
])
def test_bad_schedule_flags_are_rejected_naming_flag_value_and_fix(argv, words):
    with pytest.raises(flags.Error) as info:
        _parse(*argv)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_schedule_flags_reach_the_run_config_and_growth_plan():
    flag_values = _parse("--lr_schedule=wsd", "--warmup_steps=10", "--cooldown_fraction=0.3",
                         "--min_lr_ratio=0.1", "--train_steps=100", "--grow_at_step=50",
                         "--widen=2", "--rewarm_steps=5", "--rewarm_from=0.2")
    config = shared_flags.run_config(flag_values)
    assert (config.lr_schedule, config.warmup_steps, config.cooldown_fraction,
            config.min_lr_ratio) == ("wsd", 10, 0.3, 0.1)
    plan = shared_flags.growth_plan(flag_values)
    assert (plan.rewarm_steps, plan.rewarm_from) == (5, 0.2)
    schedule = experiment.learning_rate_schedule(config, PEAK, 100)
    assert isinstance(schedule, schedules.WarmupStableDecay)
    assert schedule.cooldown_steps == 30
    # The default is a fixed rate, as before schedules existed.
    assert experiment.learning_rate_schedule(experiment.RunConfig(), PEAK, 100) == PEAK


def test_stage_schedules_continue_rewarm_or_restart():
    config = experiment.RunConfig(lr_schedule="wsd", warmup_steps=10, cooldown_fraction=0.2,
                                  min_lr_ratio=0.1)
    base = schedules.WarmupStableDecay(PEAK, **WSD)
    carried = growth_lib.GrowthPlan(steps=(60,), widen=2.0, carry_optimizer=True,
                                    rewarm_steps=0)
    same = experiment.stage_learning_rate(config, PEAK, 100, carried, 1)
    steps = list(range(0, 101, 5))
    np.testing.assert_allclose(_rates(same, steps), _rates(base, steps))
    rewarmed = experiment.stage_learning_rate(
        config, PEAK, 100, growth_lib.GrowthPlan(steps=(60,), widen=2.0, rewarm_steps=10,
                                                 rewarm_from=0.5, carry_optimizer=True), 1)
    np.testing.assert_allclose(_rates(rewarmed, [59, 60, 65, 70]),
                               [PEAK, 0.5 * PEAK, 0.75 * PEAK, PEAK], rtol=1e-6)
    # A fresh optimizer counts from 0 again: a fresh WSD over the 40 steps left.
    fresh = experiment.stage_learning_rate(
        config, PEAK, 100, growth_lib.GrowthPlan(steps=(60,), widen=2.0,
                                                 carry_optimizer=False, rewarm_steps=0), 1)
    np.testing.assert_allclose(_rates(fresh, [0, 9, 31, 32, 39]),
                               [0.1 * PEAK, PEAK, PEAK, PEAK * (1 - 0.9 / 8), 0.1 * PEAK],
                               rtol=1e-6)


# -- in training runs ----------------------------------------------------------------
def _mlp(info):
    return models.build_model("mlp", info.input_shape, info.num_classes, width=16)


def _config(digits_dir, **overrides):
    settings = dict(data_dir=digits_dir, global_batch_size=32, log_every=10,
                    checkpoint_every=50, learning_rate=PEAK, lr_schedule="wsd",
                    warmup_steps=10, cooldown_fraction=0.2, min_lr_ratio=0.1)
    settings.update(overrides)
    return experiment.RunConfig(**settings)


def _logged_rates(history):
    return {e["step"]: e["learning_rate"] for e in history["train"]}


def _rewind(directory, step):
    """Makes `directory`'s checkpoints end at `step`, as if the run had been
    killed right after saving it."""
    checkpoints = os.path.join(directory, "checkpoints")
    for path in glob.glob(os.path.join(checkpoints, "ckpt-*")):
        if int(os.path.basename(path).split(".")[0].split("-")[1]) > step:
            os.remove(path)
    tf.compat.v1.train.update_checkpoint_state(checkpoints, os.path.join(checkpoints, f"ckpt-{step}"))


def test_resumed_run_takes_the_uninterrupted_rates(digits_dir, tmp_path):
    strategy = strategy_lib.get_strategy("default")
    config = _config(digits_dir)
    straight, whole = experiment.train(config, strategy, _mlp, model_dir="",
                                       train_steps=100)
    # The rate of the next update, logged every 10 steps: hand values of WSD.
    expected = {s: PEAK * WSD_EXPECTED.get(s, 1.0) for s in range(10, 100, 10)}
    expected.update({90: PEAK * (1 - 0.9 * 11 / 20), 100: PEAK * 0.1})
    np.testing.assert_allclose([_logged_rates(whole)[s] for s in sorted(expected)],
                               [expected[s] for s in sorted(expected)], rtol=1e-5)
    experiment.train(config, strategy, _mlp, model_dir=str(tmp_path), train_steps=100)
    _rewind(str(tmp_path), 50)
    resumed, history = experiment.train(config, strategy, _mlp, model_dir=str(tmp_path),
                                        train_steps=100)
    assert history["start_step"] == 50
    rates = _logged_rates(history)
    assert sorted(rates) == list(range(60, 101, 10))
    np.testing.assert_allclose([rates[s] for s in rates],
                               [_logged_rates(whole)[s] for s in rates], rtol=1e-6)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_expand_optimizer_keeps_the_schedule_object_and_its_position():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu", name="fc1")(inputs)
    teacher = keras.Model(inputs, keras.layers.Dense(2, name="out")(hidden))
    schedule = schedules.WarmupStableDecay(PEAK, **WSD)
    teacher.compile(optimizer=keras.optimizers.Adam(schedule), loss="mse")
    teacher.fit(np.ones((8, 4)), np.ones((8, 2)), batch_size=1, epochs=11, verbose=0)
    student = n2n.expand_model(teacher, widen={"fc1": 12}, deepen=["fc1"], seed=0)
    optimizer = n2n.expand_optimizer(teacher.optimizer, student)
    assert optimizer._learning_rate is schedule
    assert int(optimizer.iterations) == 88
    assert float(optimizer.learning_rate) == pytest.approx(PEAK * (1 - 0.9 * 9 / 20))
    schedules.rewarm(optimizer, rewarm_steps=4, rewarm_from=0.5)
    assert float(optimizer.learning_rate) == pytest.approx(0.5 * PEAK * (1 - 0.9 * 9 / 20))
    assert float(teacher.optimizer.learning_rate) == pytest.approx(PEAK * (1 - 0.9 * 9 / 20))


@pytest.mark.parametrize("rewarm", [0, 20])
def test_growth_continues_or_rewarms_the_schedule(digits_dir, tmp_path, rewarm):
    """Grown at step 60 of 120 (WSD: warmup 10, cooldown 24 steps from 96):
    with the optimizer carried the rate goes on as if nothing happened; with
    --rewarm_steps=20 it ramps from 0.1 x back over steps 60..80. A run
    resumed inside the grown stage (its schedule rebuilt from the settings)
    takes the same rates."""
    strategy = strategy_lib.get_strategy("default")
    config = _config(digits_dir)
    plan = growth_lib.GrowthPlan(steps=(60,), widen=2.0, deepen=["fc1"],
                                 rewarm_steps=rewarm, rewarm_from=0.1, carry_optimizer=True)
    _, history = experiment.train(config, strategy, _mlp, model_dir=str(tmp_path),
                                  train_steps=120, growth=plan)
    base = schedules.WarmupStableDecay(PEAK, 120, warmup_steps=10, cooldown_fraction=0.2,
                                       min_lr_ratio=0.1)
    ramp = {s: 0.1 + 0.9 * min(1.0, (s - 60) / rewarm) if rewarm and s >= 60 else 1.0
            for s in range(10, 121, 10)}
    rates = _logged_rates(history)
    assert sorted(rates) == list(range(10, 121, 10))
    # Step 60's entry is logged before growth: the teacher's next rate.
    ramp[60] = 1.0
    np.testing.assert_allclose([rates[s] for s in sorted(rates)],
                               [float(base(s)) * ramp[s] for s in sorted(rates)], rtol=1e-5)
    [record] = history["growth"]
    assert record["eval_before"]["loss"] == pytest.approx(record["eval_after"]["loss"],
                                                          rel=1e-5)
    # Killed right after the grown stage's first checkpoint, inside the ramp.
    _rewind(str(tmp_path / "grown_1"), 60)
    _, resumed = experiment.train(config, strategy, _mlp, model_dir=str(tmp_path),
                                  train_steps=120, growth=plan)
    assert resumed["start_step"] == 60
    again = _logged_rates(resumed)
    assert sorted(again) == list(range(70, 121, 10))
    np.testing.assert_allclose([again[s] for s in sorted(again)],
                               [rates[s] for s in sorted(again)], rtol=1e-6)


# -- comparisons ---------------------------------------------------------------------
def test_branching_wsd_takes_the_values_of_wsd_and_rewarm():
    """One traced schedule for every budget: set as a WSD run of T steps (or
    a re-warmed one after growth) it gives that schedule's rates."""
    branching = schedules.BranchingWSD(1.0)
    steps = np.arange(0, 130)
    for total, warmup in ((100, 10), (37, 0), (5, 1)):
        wsd = schedules.WarmupStableDecay(PEAK, total, warmup_steps=warmup,
                                          cooldown_fraction=0.2, min_lr_ratio=0.1)
        branching.set(peak=PEAK, warmup_steps=warmup, decay_start=total - wsd.cooldown_steps,
                      decay_steps=wsd.cooldown_steps, min_lr_ratio=0.1)
        np.testing.assert_allclose([float(branching(s)) for s in steps],
                                   [float(wsd(s)) for s in steps], rtol=1e-5)
    # After growth at optimizer step 40: a WSD over the student's 60 steps,
    # re-warmed over 5 steps from 0.1 x the rate.
    student = schedules.WarmupStableDecay(PEAK, 60, cooldown_fraction=0.2,
                                          min_lr_ratio=0.0, start_step=40)
    rewarmed = schedules.Rewarm(student, start_step=40, rewarm_steps=5, rewarm_from=0.1)
    branching.set(peak=PEAK, warm_start=40, warmup_steps=5, warm_from=0.1, warm_offset=0,
                  decay_start=40 + 60 - student.cooldown_steps,
                  decay_steps=student.cooldown_steps, min_lr_ratio=0.0)
    np.testing.assert_allclose([float(branching(s)) for s in range(40, 110)],
                               [float(rewarmed(s)) for s in range(40, 110)], rtol=1e-5)
    branching.set(peak=PEAK)  # no cooldown: the peak is held
    assert float(branching(10**6)) == pytest.approx(PEAK)
    restored = schedules.BranchingWSD.from_config(branching.get_config())
    assert restored.settings() == pytest.approx(branching.settings())


def test_comparison_student_continues_the_teachers_stream(digits_dir, monkeypatch):
    """The grown arm's first batch is the teacher's next one (batch
    teacher_steps of the stream), while scratch starts at batch 0; each
    budget's cooldown branches off the stable run at its own step and reads
    the stream on from there."""
    from keras_net2net.data import inputs
    from keras_net2net.training import comparison

    make_input_fns = inputs.make_input_fns
    starts, first_labels = [], []

    def recording_inputs(*args, **kwargs):
        train_fn, eval_fn, info = make_input_fns(*args, **kwargs)

        def train_fn_recorded(input_context, start_step=0):
            starts.append(start_step)
            data = train_fn(input_context, start_step=start_step)
            first_labels.append(next(iter(data))[1].numpy())
            return data
        return train_fn_recorded, eval_fn, info

    monkeypatch.setattr(inputs, "make_input_fns", recording_inputs)
    spans = []
    learning_rate_schedule = experiment.learning_rate_schedule

    def recording_schedule(config, learning_rate, total_steps, **kwargs):
        schedule = learning_rate_schedule(config, learning_rate, total_steps, **kwargs)
        spans.append((schedule.total_steps, schedule.start_step))
        return schedule

    monkeypatch.setattr(experiment, "learning_rate_schedule", recording_schedule)
    config = _config(digits_dir, eval_every=5, warmup_steps=2)
    report = comparison.run_comparison(
        config, strategy_lib.get_strategy("default"), _mlp,
        [comparison.Arm("wider", widen=2.0)], seeds=[0], teacher_steps=10,
        budgets=[15, 20, 30], carry_optimizer=True, rewarm_steps=2, metric="loss",
        time_steps=False)
    arm = report["arms"]["wider"]
    grown = arm["frontier"]["grown"]["student_steps"]
    branch = lambda budgets: [b - max(1, round(0.2 * b)) for b in budgets]
    # teacher; scratch: stable, then each branch; grown: the same, after the teacher.
    assert starts == [0, 0, *branch([15, 20, 30]), 10, *[10 + p for p in branch(grown)]]
    stream = make_input_fns(config.dataset, 32, data_dir=digits_dir)[0](
        tf.distribute.InputContext(), start_step=0)
    eleventh = [labels for _, labels in stream.take(11)][-1].numpy()
    np.testing.assert_array_equal(first_labels[1 + 4], eleventh)
    np.testing.assert_array_equal(first_labels[0], first_labels[1])
    # The teacher's schedule spans its own 10 steps; the others are branched.
    assert spans == [(10, 0)]
    assert arm["frontier"]["scratch"]["steps"] == [15, 20, 30]


def test_comparison_scales_growth_time_with_the_budget(digits_dir, monkeypatch):
    """teacher_share: each budget's teacher trains its share of the budget
    (cooldowns branched off one teacher run), each student grows from its own
    teacher and reads the stream on from that teacher's last batch; compute
    counts each budget's own teacher; the wall-clock view is measured."""
    from keras_net2net.training import comparison

    starts = streams.record_stream_starts(monkeypatch)
    config = _config(digits_dir, eval_every=0, warmup_steps=2)
    budgets = [20, 30, 40]
    with pytest.raises(ValueError, match="teacher_share"):
        comparison.run_comparison(
            config, strategy_lib.get_strategy("default"), _mlp,
            [comparison.Arm("wider", widen=2.0)], seeds=[0], teacher_steps=1,
            budgets=budgets, carry_optimizer=True, teacher_share=0.25)
    report = comparison.run_comparison(
        config, strategy_lib.get_strategy("default"), _mlp,
        [comparison.Arm("wider", widen=2.0)], seeds=[0], teacher_steps=1,
        budgets=budgets, metric="loss", teacher_share=0.25)
    arm = report["arms"]["wider"]
    ratio = arm["teacher_flops_ratio"]
    teacher = [round(0.25 * b / ratio) for b in budgets]
    assert arm["teacher_steps"] == teacher
    grown = arm["frontier"]["grown"]
    np.testing.assert_allclose(
        grown["compute"], [t * ratio + s for t, s in zip(teacher, grown["student_steps"])])
    np.testing.assert_allclose(grown["compute"], budgets, atol=1.0)  # whole steps
    assert grown["compute_sunk"] == grown["student_steps"]
    cooldown = lambda b: max(1, round(0.2 * b))
    # The teacher run branches each growth point's cooldown; every student
    # starts at its own teacher's end.
    # teacher: stable from 0, then each cooldown; the timing's two streams;
    # scratch: stable from 0, then its three cooldowns; each student: its own
    # stable phase from its teacher's end, then its cooldown.
    assert starts[:4] == [0, *[t - cooldown(t) for t in teacher]]
    assert starts[4:7] == [0, 0, 0]
    assert starts[10::2] == teacher
    assert starts[11::2] == [t + s - cooldown(s)
                             for t, s in zip(teacher, grown["student_steps"])]
    timing = arm["seconds_per_step"]
    assert timing["teacher_seconds_per_step"] > 0 and timing["student_seconds_per_step"] > 0
    assert arm["teacher_wall_ratio"] == pytest.approx(
        timing["teacher_seconds_per_step"] / timing["student_seconds_per_step"])
    assert arm["compute_saved_wall"]["n"] == 1
    assert len(report["teacher"]["curve"][0]) >= 1


def test_comparison_grows_from_the_teachers_stable_phase(digits_dir, monkeypatch):
    """grow_from="stable": each budget's teacher is its point of one
    warmup-stable run (no cooldown trained), the grown student starts at
    exactly that teacher's loss, and a carried optimizer is the teacher
    run's own state at that point (its step count continues)."""
    from keras_net2net.training import comparison

    starts = streams.record_stream_starts(monkeypatch)
    expand_optimizer = n2n.expand_optimizer
    carried = []

    def recording_expand_optimizer(optimizer, student, **kwargs):
        carried.append((int(optimizer.iterations.numpy()),
                        max(float(np.max(np.abs(v.numpy()))) for v in optimizer.variables
                            if "momentum" in v.path)))
        return expand_optimizer(optimizer, student, **kwargs)

    monkeypatch.setattr(n2n, "expand_optimizer", recording_expand_optimizer)
    config = _config(digits_dir, eval_every=0, warmup_steps=2)
    budgets = [20, 30, 40]
    arms = [comparison.Arm("wider", widen=2.0)]
    with pytest.raises(ValueError, match=r"grow_from=stable.*teacher_share"):
        comparison.run_comparison(
            config, strategy_lib.get_strategy("default"), _mlp, arms, seeds=[0],
            teacher_steps=1, budgets=budgets, grow_from="stable")
    with pytest.raises(ValueError, match=r"grow_from in cooldown, stable.*'peak'"):
        comparison.run_comparison(
            config, strategy_lib.get_strategy("default"), _mlp, arms, seeds=[0],
            teacher_steps=1, budgets=budgets, teacher_share=0.25, grow_from="peak")
    assert not starts  # refused before any training
    report = comparison.run_comparison(
        config, strategy_lib.get_strategy("default"), _mlp, arms, seeds=[0],
        teacher_steps=1, budgets=budgets, metric="loss", teacher_share=0.25,
        grow_from="stable", carry_optimizer=True, time_steps=False)
    arm = report["arms"]["wider"]
    teacher = arm["teacher_steps"]
    assert teacher == [round(0.25 * b / arm["teacher_flops_ratio"]) for b in budgets]
    student = arm["frontier"]["grown"]["student_steps"]
    cooldown = lambda b: max(1, round(0.2 * b))
    # The teacher run: one stream from 0, no cooldown branch; scratch: stable
    # then three cooldowns; each student: from its teacher's step, then its
    # cooldown.
    assert starts[:1] == [0] and starts[1:5] == [0, *[b - cooldown(b) for b in budgets]]
    assert starts[5::2] == teacher
    assert starts[6::2] == [t + s - cooldown(s) for t, s in zip(teacher, student)]
    # Each carried optimizer is the teacher run's at that teacher's step.
    assert [step for step, _ in carried] == teacher
    assert all(moment > 0 for _, moment in carried)
    # Exact growth: the largest budget's student starts at its teacher's loss
    # (the stable point's, not a cooled-down one's).
    grown_start = arm["curves"]["grown"][0][0]
    teacher_at_growth = [p for p in report["teacher"]["curve"][0]
                         if p["branch"] == len(budgets) - 1][0]
    assert teacher_at_growth["step"] == teacher[-1]
    np.testing.assert_allclose(grown_start["loss"], teacher_at_growth["loss"],
                               rtol=1e-5)
    assert report["settings"]["grow_from"] == "stable" and arm["exact"] is True
    assert "before any decay" in report["protocol"]["grow_from"]


def test_compare_takes_the_schedule_flags():
    from keras_net2net.bin import compare

    flag_values = flags.FlagValues()
    compare.define_flags(flag_values)
    flag_values(["net2net-compare", "--model_dir=/tmp/unused", "--lr_schedule=cosine",
                 "--warmup_steps=20"])
    config = shared_flags.run_config(flag_values)
    assert (config.lr_schedule, config.warmup_steps) == ("cosine", 20)
    assert "warmup-stable-decay" in flag_values["lr_schedule"].help
    assert "--lr_schedule" in flag_values.get_help()
    bad = flags.FlagValues()
    compare.define_flags(bad)
    with pytest.raises(flags.Error, match=r"--cooldown_fraction=1\.0.*Fix"):
        bad(["net2net-compare", "--model_dir=/tmp/unused", "--cooldown_fraction=1"])


def test_scratch_cache_is_reused_only_for_the_same_runs(digits_dir):
    """A study's recipes share scratch's runs through `scratch_cache`; another
    base rate (the same scales, other rates) runs its own."""
    from keras_net2net.training import comparison

    config = _config(digits_dir, eval_every=0, warmup_steps=2)
    cache, messages = {}, []
    kwargs = dict(seeds=[0], teacher_steps=4, budgets=[20, 30], metric="loss",
                  time_steps=False, scratch_cache=cache, progress=messages.append)
    arms = [comparison.Arm("wider", widen=2.0)]
    strategy = strategy_lib.get_strategy("default")
    first = comparison.run_comparison(config, strategy, _mlp, arms, **kwargs)
    assert len(cache) == 1 and not any("cached" in m for m in messages)
    again = comparison.run_comparison(config, strategy, _mlp, arms, noise=0.1, **kwargs)
    assert any("scratch, the cached runs" in m for m in messages)
    scratch = lambda report: report["arms"]["wider"]["frontier"]["scratch"]["per_seed"]
    assert scratch(again) == scratch(first)
    messages.clear()
    faster = comparison.run_comparison(
        dataclasses.replace(config, learning_rate=2 * PEAK), strategy, _mlp, arms,
        **kwargs)
    assert len(cache) == 2 and not any("cached" in m for m in messages)
    assert scratch(faster) != scratch(first)


def test_shrink_perturb_mixes_a_fresh_initialisation(digits_dir):
    """w <- shrink x w + perturb x w0, w0 the architecture's fresh weights
    (the same seed, the same w0); bad settings are refused before any change;
    a comparison that uses it reports its arms as not exact."""
    from keras_net2net.training import comparison
    from keras_net2net.training import perturb

    def model():
        keras.utils.set_random_seed(3)
        return keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                 keras.layers.Dense(2, bias_initializer="ones")])

    trained = model()
    for variable in trained.trainable_variables:
        variable.assign(variable + 1.0)  # weights that sit at no initial value
    before = [v.numpy() for v in trained.trainable_variables]
    keras.utils.set_random_seed(7)
    fresh = [v.numpy() for v in keras.models.clone_model(trained).trainable_variables]
    perturb.shrink_perturb(trained, 0.75, 0.5, seed=7)
    for got, w, w0 in zip(trained.trainable_variables, before, fresh):
        np.testing.assert_allclose(got.numpy(), 0.75 * w + 0.5 * w0, rtol=1e-6)
    assert any(np.abs(w0).max() > 0 for w0 in fresh)
    kept = [v.numpy() for v in trained.trainable_variables]
    for bad in ((0.0, 0.1), (1.5, 0.1), (0.9, -1.0), ("half", 0.1)):
        with pytest.raises(ValueError, match=r"Expected shrink in \(0, 1\].*Received"):
            perturb.shrink_perturb(trained, *bad)
    for got, want in zip(trained.trainable_variables, kept):
        np.testing.assert_array_equal(got.numpy(), want)

    config = _config(digits_dir, eval_every=0, warmup_steps=2)
    arms = [comparison.Arm("wider", widen=2.0)]
    for warmup, words in ((-1, "student_warmup_steps a whole number"),
                          (500, r"room after its teacher.*warmup and cooldown")):
        with pytest.raises(ValueError, match=words):
            comparison.run_comparison(
                config, strategy_lib.get_strategy("default"), _mlp, arms, seeds=[0],
                teacher_steps=4, budgets=[20, 30], student_warmup_steps=warmup)
    with pytest.raises(ValueError, match="shrink"):
        comparison.run_comparison(config, strategy_lib.get_strategy("default"), _mlp,
                                  arms, seeds=[0], teacher_steps=4, budgets=[20, 30],
                                  shrink_perturb=(0.0, 0.1))
    report = comparison.run_comparison(
        config, strategy_lib.get_strategy("default"), _mlp, arms, seeds=[0],
        teacher_steps=4, budgets=[20, 30], metric="loss", time_steps=False,
        shrink_perturb=(0.5, 0.1))
    arm = report["arms"]["wider"]
    assert arm["exact"] is False and report["settings"]["shrink_perturb"] == (0.5, 0.1)
    assert report["settings"]["student_warmup_steps"] == config.warmup_steps
    # Growth itself stayed exact; the perturbation moved the student's start
    # off its teacher's loss.
    assert max(arm["max_relative_error_per_seed"]) < 1e-4
    assert abs(arm["curves"]["grown"][0][0]["loss"]
               - report["teacher"]["loss_per_seed"][0]) > 1e-3
