"""Tests of net2net-compare: the speed-up arithmetic and a tiny full run."""

import json

from absl import flags
import pytest

from keras_net2net.bin import compare
from keras_net2net.bin import demo
from keras_net2net.training import comparison

COMPARE = "keras_net2net.bin.compare"


@pytest.mark.parametrize("accuracies,target,expected", [
    ([0.1, 0.5, 0.9], 0.5, 10),
    ([0.1, 0.5, 0.9], 0.0, 0),
    ([0.1, 0.5, 0.9], 0.95, None),
])
def test_steps_to_reach(accuracies, target, expected):
    assert comparison.steps_to_reach([0, 10, 20], accuracies,
                                     target) == expected


def test_speedup_counts_at_least_one_interval():
    steps = [0, 10, 20, 30, 40]
    scratch = [0.1, 0.6, 0.8, 0.9, 0.9]
    # The student is there from step 0: one interval, not zero steps.
    result = comparison.speedup(steps, [0.95] * 5, scratch, interval=10)
    assert result == {"target_accuracy": 0.9, "steps_scratch": 30,
                      "steps_student": 10, "speedup": 3.0}
    late = comparison.speedup(steps, [0.5, 0.6, 0.7, 0.8, 0.9], scratch, 10)
    assert (late["steps_student"], late["speedup"]) == (40, 0.75)
    never = comparison.speedup(steps, [0.5] * 5, scratch, 10)
    assert never["steps_student"] is None and never["speedup"] is None


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
    (["--student_lr_scale=0"], "--student_lr_scale"),
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
    compare.define_flags(flag_values)
    for name, value in demo.DEMO_DEFAULTS.items():
        flag_values.set_default(name, value)
    flag_values(["demo"])
    assert flag_values.seeds == demo.DEMO_DEFAULTS["seeds"]


def test_tiny_comparison_writes_report_and_curves(run_binary, digits_dir,
                                                  tmp_path):
    result = run_binary(
        COMPARE, f"--model_dir={tmp_path}", f"--data_dir={digits_dir}",
        "--teacher_widths=2,4,4", "--teacher_steps=40", "--student_steps=20",
        "--eval_every=10", "--seeds=1", "--arms=both",
        "--global_batch_size=32", "--learning_rate=0.01")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "speed-up" in result.stdout and "curves.png" in result.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seeds"] == [0]
    assert report["settings"]["student_learning_rate"] == pytest.approx(0.001)
    teacher_accuracy = report["teacher"]["accuracy"]
    assert report["teacher"]["accuracy_per_seed"] == [teacher_accuracy]
    assert report["teacher"]["train_seconds_per_seed"][0] > 0
    assert list(report["arms"]) == ["both"]
    for arm in report["arms"].values():
        steps, scratch = arm["steps"], arm["scratch_accuracy"]
        assert steps == [0, 10, 20]
        assert len(arm["student_accuracy"]) == len(scratch) == 3
        # A Net2Net student starts where its teacher ended; its scratch twin
        # (fresh weights) starts near chance on 10 classes.
        assert arm["student_accuracy"][0] == pytest.approx(teacher_accuracy, abs=1e-6)
        assert scratch[0] <= 0.2, scratch
        assert max(arm["max_relative_error_per_seed"]) < 1e-4
        assert arm["params"]["student"] > arm["params"]["teacher"]
        # The report's figures follow from its own curves (no clamping here).
        reached = next(s for s, a in zip(steps, scratch) if a >= scratch[-1])
        assert arm["steps_scratch"] == max(reached, 10)
        assert arm["target_accuracy"] == pytest.approx(scratch[-1])
        student_reached = next((s for s, a in zip(steps, arm["student_accuracy"])
                                if a >= scratch[-1]), None)
        assert arm["steps_student"] == (None if student_reached is None
                                        else max(student_reached, 10))
        assert arm["speedup"] == (None if student_reached is None else
                                  pytest.approx(arm["steps_scratch"] / arm["steps_student"]))
        assert arm["steps_scratch_to_teacher"] == next(
            (s for s, a in zip(steps, scratch) if a >= teacher_accuracy), None)
        versus = arm["teacher_vs_final_student"][0]
        assert versus["teacher"]["accuracy"] == pytest.approx(teacher_accuracy, abs=1e-6)
        assert versus["student"]["accuracy"] == pytest.approx(
            arm["student_accuracy"][-1], abs=1e-6)
        assert versus["teacher"]["params"] == arm["params"]["teacher"]
    picture = (tmp_path / "curves.png").read_bytes()
    assert picture.startswith(b"\x89PNG") and len(picture) > 10_000
    assert (tmp_path / "models" / "seed_0" / "both_student.keras").exists()
