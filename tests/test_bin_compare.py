"""Tests of net2net-compare: the speed-up arithmetic and a tiny full run."""

import json

from absl import flags
import pytest

from keras_net2net.bin import compare
from keras_net2net.bin import demo
from keras_net2net.training import comparison

COMPARE = "keras_net2net.bin.compare"


@pytest.mark.parametrize("values,target,higher,expected", [
    ([0.1, 0.5, 0.9, 0.9, 0.9], 0.6, True, 10),  # (0.5+0.9+0.9)/3 >= 0.6 at 10
    ([0.1, 0.9, 0.1, 0.1, 0.9], 0.5, True, None),  # one lucky evaluation is not enough
    ([0.1, 0.5, 0.9, 0.9, 0.9], 0.0, True, 0),
    ([3.0, 2.0, 1.0, 1.0, 1.0], 1.4, False, 10),  # a loss: at or below
    ([3.0, 2.0, 1.0, 1.0, 1.0], 0.9, False, None),
])
def test_steps_to_reach_needs_three_evaluations(values, target, higher, expected):
    assert comparison.steps_to_reach([0, 10, 20, 30, 40], values, target,
                                     higher_is_better=higher) == expected


def test_speedup_targets_scratch_converged_value_and_counts_the_teacher():
    scratch_steps = list(range(0, 210, 10))
    # Scratch climbs to 0.9 by step 100 and stays: converged = 0.9.
    scratch = [min(0.9, 0.1 + 0.08 * i) for i in range(21)]
    steps = [0, 10, 20, 30, 40, 50]
    student = [0.8, 0.85, 0.88, 0.9, 0.92, 0.93]
    result = comparison.speedup(steps, student, scratch_steps, scratch, 10,
                                teacher_cost=40.0)
    assert result["target"] == pytest.approx(0.9)
    assert result["steps_scratch"] == 100
    # (0.88+0.9+0.92)/3 = 0.9 at step 20.
    assert result["steps_student"] == 20
    assert result["speedup"] == pytest.approx(5.0)
    assert result["speedup_total"] == pytest.approx(100 / 60)
    assert result["compute_saved"] == pytest.approx(1 - 60 / 100)
    assert result["ceiling"] == pytest.approx(20.0)
    assert result["ceiling_total"] == pytest.approx(200 / 50)
    # Already there at step 0: one interval, the ceiling.
    there = comparison.speedup(steps, [0.95] * 6, scratch_steps, scratch, 10)
    assert there["steps_student"] == 10 and there["speedup"] == pytest.approx(10.0)
    never = comparison.speedup(steps, [0.5] * 6, scratch_steps, scratch, 10)
    assert never["steps_student"] is None and never["speedup"] is None
    assert never["compute_saved"] is None
    # A loss: lower is better.
    loss = comparison.speedup(steps, [1 - v for v in student], scratch_steps,
                              [1 - v for v in scratch], 10, higher_is_better=False)
    assert loss["steps_student"] == 20 and loss["target"] == pytest.approx(0.1)


def test_protocol_refuses_a_short_scratch_budget():
    from keras_net2net.training import experiment
    config = experiment.RunConfig(dataset="synthetic", eval_every=10)
    with pytest.raises(ValueError, match="scratch_steps=50"):
        comparison.run_comparison(config, None, None, [comparison.Arm("w", 2.0)],
                                  seeds=[0], teacher_steps=40, student_steps=20,
                                  scratch_steps=50)
    with pytest.raises(ValueError, match="metric='f1'"):
        comparison.run_comparison(config, None, None, [comparison.Arm("w", 2.0)],
                                  seeds=[0], teacher_steps=40, student_steps=20,
                                  metric="f1")


def _parse(*argv):
    flag_values = flags.FlagValues()
    compare.define_flags(flag_values)
    flag_values(["net2net-compare", "--model_dir=/tmp/unused", *argv])
    return flag_values


@pytest.mark.parametrize("argv,flag", [
    (["--eval_every=0"], "--eval_every"),
    (["--arms=wider,taller"], "--arms"),
    (["--seeds=0"], "--seeds"),
    (["--teacher_model=MobileNetV2"], "--teacher_model"),
    (["--deepen=fc1:zero"], "--deepen"),
    (["--eval_examples=0"], "--eval_examples"),
    (["--student_lr_scale=0"], "--student_lr_scale"),
    (["--scratch_lr_sweep=1,-2"], "--scratch_lr_sweep"),
    (["--teacher_steps=100", "--student_steps=50", "--scratch_steps=120"],
     "--scratch_steps"),
    (["--teacher_model=gpt"], "--teacher_model"),  # gpt needs --dataset=stdlib_bytes
    (["--dataset=stdlib_bytes"], "--dataset"),  # and the cnn can't read bytes
])
def test_bad_compare_flags_name_the_flag(argv, flag):
    with pytest.raises(flags.Error, match=flag):
        _parse(*argv)


def test_arms_follow_the_flags():
    arms = compare.arms_from_flags(_parse("--arms=both,wider", "--widen=1.5",
                                          "--deepen=fc1:2"))
    assert arms == [comparison.Arm("both", widen=1.5, deepen={"fc1": 2}),
                    comparison.Arm("wider", widen=1.5)]


def test_demo_defaults_are_compare_flags():
    flag_values = flags.FlagValues()
    demo.define_flags(flag_values)
    flag_values(["demo", "--seeds=2"])
    assert flag_values.dataset == demo.DEMO_DEFAULTS["dataset"]
    assert flag_values.seeds == 2
    lm = demo.lm_flag_values(flag_values)
    assert (lm.teacher_model, lm.dataset) == ("gpt", "stdlib_bytes")
    assert lm.seed == flag_values.seed and lm.carry_optimizer
    assert compare.metric_from_flags(lm) == "loss"
    with pytest.raises(flags.Error, match="--parts"):
        flag_values(["demo", "--parts=image,video"])


def test_tiny_comparison_writes_report_and_curves(run_binary, digits_dir,
                                                  tmp_path):
    result = run_binary(
        COMPARE, f"--model_dir={tmp_path}", f"--data_dir={digits_dir}",
        "--teacher_widths=2,4,4", "--teacher_steps=20", "--student_steps=15",
        "--eval_every=5", "--log_every=1000", "--seeds=1", "--arms=both,wider",
        "--scratch_lr_sweep=1,2", "--nosweep_every_arm",
        "--global_batch_size=32", "--learning_rate=0.01", "--carry_optimizer")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-up" in result.stdout and "curves.png" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seeds"] == [0] and report["metric"] == "accuracy"
    assert report["eval_examples"] == 360
    assert report["settings"]["student_learning_rate"] == pytest.approx(0.001)
    assert report["settings"]["scratch_steps"] == 35  # teacher + student
    assert report["teacher"]["accuracy_per_seed"] == [report["teacher"]["accuracy"]]
    assert list(report["arms"]) == ["both", "wider"]
    arm = report["arms"]["both"]
    sweep = arm["scratch_sweep"]
    # --nosweep_every_arm: the first arm's sweep is the only one; the wider
    # twin trains at its pick (one run, not one per sweep point).
    assert sweep["arm"] == "both" and report["arms"]["wider"]["scratch_sweep"] == sweep
    assert "wider scratch twin, 35 steps at" in result.stderr + result.stdout
    assert "wider scratch twin, 35 steps at 1 x lr (sweep)" not in result.stderr + result.stdout
    assert sweep["learning_rates"] == pytest.approx([0.01, 0.02])
    assert sweep["chosen_learning_rate"] == sweep["learning_rates"][
        sweep["converged"].index(max(sweep["converged"]))]
    steps, scratch_steps = arm["steps"], arm["scratch_steps"]
    scratch = arm["scratch_accuracy"]
    assert steps == [0, 5, 10, 15] and scratch_steps == list(range(0, 40, 5))
    # The chosen sweep run is the scratch twin of the sweep's seed.
    assert comparison.converged(scratch) == pytest.approx(max(sweep["converged"]))
    # A Net2Net student starts where its teacher ended; its scratch twin
    # (fresh weights) starts near chance on 10 classes.
    versus = arm["teacher_vs_final_student"][0]
    assert arm["student_accuracy"][0] == pytest.approx(versus["teacher"]["accuracy"], abs=1e-6)
    assert scratch[0] <= 0.2, scratch
    assert max(arm["max_relative_error_per_seed"]) < 1e-4
    assert arm["params"]["student"] > arm["params"]["teacher"]
    flops = arm["train_flops_per_step"]
    assert 0 < flops["teacher"] < flops["student"]
    assert arm["teacher_flops_ratio"] == pytest.approx(flops["teacher"] / flops["student"])
    # The headline figures follow from the report's own curves.
    expected = comparison.speedup(steps, arm["student_accuracy"], scratch_steps, scratch,
                                  5, teacher_cost=20 * arm["teacher_flops_ratio"])
    for key, value in expected.items():
        assert arm[key] == (None if value is None else pytest.approx(value)), key
    assert arm["target"] == pytest.approx(sum(scratch[-5:]) / 5)
    assert arm["ceiling"] == pytest.approx(7.0)
    assert versus["student"]["accuracy"] == pytest.approx(
        arm["student_accuracy"][-1], abs=1e-6)
    picture = (tmp_path / "curves.png").read_bytes()
    assert picture.startswith(b"\x89PNG") and len(picture) > 10_000
    assert (tmp_path / "models" / "seed_0" / "both_student.keras").exists()
