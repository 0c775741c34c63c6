"""Tests of net2net-compare: the speed-up arithmetic and a tiny full run."""

import json

from absl import flags
import pytest

from keras_net2net.bin import compare
from keras_net2net.bin import demo
from keras_net2net.training import comparison



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


def test_protocol_refuses_bad_budgets_and_metrics():
    from keras_net2net.training import experiment
    config = experiment.RunConfig(dataset="synthetic", eval_every=10)
    arms = [comparison.Arm("w", 2.0)]
    for budgets, match in (([40, 20, 80], "increasing.*budgets=40,20,80.*Fix"),
                           ([40, 40, 80], "budgets=40,40,80"),
                           ([40, 0.5], "budgets=40,0.5")):
        with pytest.raises(ValueError, match=match):
            comparison.run_comparison(config, None, None, arms, seeds=[0],
                                      teacher_steps=40, budgets=budgets)
    with pytest.raises(ValueError, match="at least 3 budgets"):
        comparison.run_comparison(config, None, None, arms, seeds=[0],
                                  teacher_steps=40, budgets=[40, 80], min_budgets=3)
    with pytest.raises(ValueError, match="metric='f1'"):
        comparison.run_comparison(config, None, None, arms, seeds=[0],
                                  teacher_steps=40, budgets=[40, 80], metric="f1")


def _parse(*argv):
    flag_values = flags.FlagValues()
    compare.define_flags(flag_values)
    flag_values(["net2net-compare", "--model_dir=/tmp/unused", *argv])
    return flag_values


@pytest.mark.parametrize("argv,flag", [
    (["--eval_every=-1"], "--eval_every"),
    (["--arms=wider,taller"], "--arms"),
    (["--seeds=0"], "--seeds"),
    (["--teacher_model=MobileNetV2"], "--teacher_model"),
    (["--deepen=fc1:zero"], "--deepen"),
    (["--eval_examples=0"], "--eval_examples"),
    (["--lr_sweep=1,-2"], "--lr_sweep"),
    (["--budgets=90,360,180"], r"--budgets.*increasing.*budgets=90,360,180.*Fix: "
     r"list them smallest first.*--budgets=90,180,360"),
    (["--budgets=90,90,180"], "--budgets"),
    (["--budgets=90,180"], r"--budgets.*at least 3.*budgets=90,180"),
    (["--budgets=90,1e2,x"], "--budgets"),
    (["--rewarm_from=0"], "--rewarm_from"),
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


def _demo_flags(*argv):
    flag_values = flags.FlagValues()
    demo.define_flags(flag_values)
    flag_values(["demo", *argv])
    return flag_values


def test_demo_defaults_are_compare_flags():
    flag_values = _demo_flags("--seeds=2")
    assert flag_values.dataset == demo.DEMO_DEFAULTS["dataset"]
    assert flag_values.seeds == 2
    lm = demo.lm_flag_values(flag_values)
    assert (lm.teacher_model, lm.dataset) == ("gpt", "stdlib_bytes")
    assert lm.seed == flag_values.seed and lm.carry_optimizer == demo.LM_SETTINGS[
        "carry_optimizer"] and lm.noise == demo.LM_SETTINGS["noise"]
    assert compare.metric_from_flags(lm) == "loss"
    assert flag_values.arms == ["deeper"] and len(flag_values.budgets) >= 3
    # Image: x4 deep (three identity layers after conv2, conv3 and fc1).
    assert compare.arms_from_flags(flag_values)[0] == comparison.Arm(
        "deeper", deepen={"conv2": 3, "conv3": 3, "fc1": 3})
    assert flag_values.small_alone and lm.small_alone
    assert not demo.lm_flag_values(_demo_flags("--nosmall_alone")).small_alone
    assert lm.budgets == demo.LM_SETTINGS["budgets"] and lm.lr_sweep == ["1", "2"]
    # The LM grows x4 deep: three identity copies after each of the two blocks.
    assert compare.arms_from_flags(lm) == [comparison.Arm("deeper", deepen={
        ("block1_ln1", "block1_res2"): 3, ("block2_ln1", "block2_res2"): 3})]
    with pytest.raises(flags.Error, match="--parts"):
        flag_values(["demo", "--parts=image,video"])


def test_tiny_comparison_writes_the_frontier(digits_dir, tmp_path, capsys):
    """In process, through the binary's own path: flags, run, report, plots."""
    from keras_net2net.bin import flags as shared_flags
    from keras_net2net.training import frontier
    from keras_net2net.training import strategy as strategy_lib
    flag_values = _parse(
        f"--data_dir={digits_dir}", "--dataset=digits",
        "--teacher_widths=2,4,4", "--teacher_steps=20", "--budgets=20,30,40",
        "--eval_every=5", "--log_every=1000", "--seeds=2", "--arms=both,wider",
        "--lr_sweep=1,2", "--global_batch_size=32", "--learning_rate=0.01",
        "--carry_optimizer", "--rewarm_steps=2", "--warmup_steps=2")
    compare.run_from_flags(shared_flags.run_config(flag_values),
                           strategy_lib.get_strategy("default"), str(tmp_path),
                           flag_values=flag_values)
    out = capsys.readouterr().out
    assert "saved at scratch's best accuracy" in out
    assert "frontier.png" in out and "curves.png" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["seeds"] == [0, 1] and report["metric"] == "accuracy"
    # The 360 held-out digits: the first half selects, the second is reported.
    assert report["selection_examples"] == 180 and report["eval_examples"] == 180
    assert report["teacher"]["accuracy"] == pytest.approx(
        sum(report["teacher"]["accuracy_per_seed"]) / 2)
    assert list(report["arms"]) == ["both", "wider"]
    for arm in report["arms"].values():
        front = arm["frontier"]
        ratio, cost = arm["teacher_flops_ratio"], arm["teacher_cost_in_student_steps"]
        flops = arm["train_flops_per_step"]
        assert 0 < flops["teacher"] < flops["student"]
        assert ratio == pytest.approx(flops["teacher"] / flops["student"])
        assert cost == pytest.approx(20 * ratio)
        assert front["budgets"] == [20, 30, 40] == front["scratch"]["steps"]
        steps = front["grown"]["student_steps"]
        # Compute-matched: whole steps, down at the smallest budget and up at
        # the largest, so the grown points span scratch's budgets.
        assert steps[0] <= 20 - cost < steps[0] + 1 and steps[2] - 1 < 40 - cost <= steps[2]
        assert front["grown"]["compute"] == pytest.approx([cost + s for s in steps])
        assert front["grown"]["compute_sunk"] == steps
        assert len(front["scratch"]["per_seed"]) == 2 == len(front["grown"]["per_seed"])
        assert len(front["scratch"]["se"]) == 3
        # The figures are frontier.py's on the report's own per-seed qualities.
        views = frontier.both_views(
            front["budgets"], front["scratch"]["per_seed"], steps,
            front["grown"]["per_seed"], teacher_steps=20, teacher_flops_ratio=ratio,
            higher_is_better=True)
        for key, view in (("compute_saved", "teacher_counted"),
                          ("compute_saved_sunk", "teacher_sunk")):
            expected = views[view]["at_best"]["summary"]
            for field in ("per_seed", "mean", "se", "ci", "missing"):
                assert arm[key][field] == (pytest.approx(expected[field])
                                           if expected[field] is not None else None), field
            assert arm[key]["status_per_seed"] == [
                s["status"] for s in views[view]["at_best"]["per_seed"]]
            # The target is each seed's best scratch quality.
            assert arm[key]["quality_per_seed"] == pytest.approx(
                [max(q) for q in front["scratch"]["per_seed"]])
        gains = views["teacher_counted"]["quality_gain_equal_compute"]
        assert [g["compute"] for g in arm["quality_gain_equal_compute"]] == [20, 30, 40]
        for got, want in zip(arm["quality_gain_equal_compute"], gains):
            assert got["per_seed"] == pytest.approx(want["summary"]["per_seed"])
            assert None not in got["per_seed"]  # measured points span every budget
        # The sweep is symmetric and chosen on the selection half.
        for role in ("scratch", "grown"):
            sweep = arm["lr_sweep"][role]
            assert sweep["learning_rates"] == pytest.approx([0.01, 0.02])
            for j, scale in enumerate(sweep["chosen_scale"]):
                picks = {s: sweep["selection"][str(s)][j] for s in (1.0, 2.0)}
                assert picks[scale] == max(picks.values())
            assert sweep["reported"][str(sweep["chosen_scale"][0])][0] == pytest.approx(
                front[role]["per_seed"][0][0])
        # A Net2Net student starts where its teacher ended; scratch near chance.
        for seed, curve in enumerate(arm["curves"]["grown"]):
            assert curve[0]["step"] == 0 and curve[0]["accuracy"] == pytest.approx(
                report["teacher"]["accuracy_per_seed"][seed], abs=1e-6)
        assert arm["curves"]["scratch"][0][0]["accuracy"] <= 0.25
        assert max(arm["max_relative_error_per_seed"]) < 1e-4
        assert arm["params"]["student"] > arm["params"]["teacher"]
    for picture in ("curves.png", "frontier.png"):
        data = (tmp_path / picture).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000
    assert (tmp_path / "models" / "seed_0" / "both_student.keras").exists()
    assert (tmp_path / "models" / "seed_1" / "wider_scratch.keras").exists()


@pytest.mark.parametrize("argv,words", [
    (["--teacher_share=0"], r"--teacher_share=0\.0.*strictly between 0 and 1.*"
     r"Received: teacher_share=0\.0.*Fix: e\.g\. --teacher_share=0\.25"),
    (["--teacher_share=1"], r"--teacher_share=1\.0.*Received: teacher_share=1\.0"),
    (["--teacher_share=-0.25"], r"--teacher_share.*Received: teacher_share=-0\.25"),
    (["--teacher_share=quarter"], r"--teacher_share.*quarter"),  # absl: not a float
    (["--teacher_share=0.25", "--teacher_steps=100"],
     r"--teacher_share or --teacher_steps, not both.*--teacher_share=0\.25 "
     r"--teacher_steps=100.*Fix: drop one"),
    (["--teacher_share=0.25", "--carry_optimizer"],
     r"fresh optimizer with --teacher_share.*Fix: --nocarry_optimizer, "
     r"--grow_from=stable"),
    (["--grow_from=stable"],
     r"--teacher_share with grow_from=stable.*Received: grow_from='stable', "
     r"teacher_share=None.*Fix: add --teacher_share=0\.25"),
    (["--teacher_share=0.25", "--grow_from=peak"], r"--grow_from=peak.*cooldown\|stable"),
    (["--rotate_stream=0"], r"--rotate_stream=0\.0.*angle in \(0, pi\].*Received: "
     r"angle=0\.0.*Fix: e\.g\. angle=1\.0"),
    (["--rotate_stream=4"], r"--rotate_stream=4\.0.*Received: angle=4\.0"),
    (["--rotate_stream=1", "--carry_optimizer"],
     r"fresh optimizer with --rotate_stream.*--rotate_stream=1\.0 --carry_optimizer.*"
     r"Fix: --nocarry_optimizer"),
])
def test_bad_teacher_share_names_flag_value_and_fix(argv, words):
    with pytest.raises(flags.Error, match=words):
        _parse(*argv)


def test_teacher_share_flag_is_documented_and_reaches_the_demo_parts():
    flag_values = _parse("--teacher_share=0.25")
    assert flag_values.teacher_share == 0.25 and flag_values.teacher_steps == 1000
    assert "--teacher_share" in flag_values.get_help()
    assert "fraction" in flag_values["teacher_share"].help
    assert _parse().teacher_share is None  # default: one teacher of --teacher_steps
    stable = _parse("--teacher_share=0.25", "--grow_from=stable", "--carry_optimizer")
    assert (stable.grow_from, stable.carry_optimizer) == ("stable", True)
    assert _parse().grow_from == "cooldown" and "--grow_from" in stable.get_help()
    assert _parse().rotate_stream is None and "--rotate_stream" in stable.get_help()
    assert _parse("--rotate_stream=1.5").rotate_stream == 1.5
    demo_flags = flags.FlagValues()
    demo.define_flags(demo_flags)
    demo_flags(["demo"])
    assert demo.lm_flag_values(demo_flags).teacher_share == demo.LM_SETTINGS.get(
        "teacher_share")
    demo_flags(["demo", "--teacher_share=0.3"])  # given: both parts take it
    lm = demo.lm_flag_values(demo_flags)
    assert demo_flags.teacher_share == 0.3 == lm.teacher_share
    assert not lm["teacher_steps"].present
    assert lm.grow_from == demo.LM_SETTINGS["grow_from"] == "stable"
    demo_flags(["demo", "--teacher_share=0.3", "--grow_from=cooldown"])
    assert demo.lm_flag_values(demo_flags).grow_from == "cooldown"


def test_tiny_comparison_with_a_teacher_share_by_hand(digits_dir, tmp_path, capsys):
    """--teacher_share through the binary's path. An MLP 64 -> 8 -> 10 grown
    to 64 -> 16 -> 10: training FLOPs per example 3 x 2 x (64 x 8 + 8 x 10) =
    3,552 against 7,104, a ratio of exactly 0.5. A quarter of budgets 20, 30,
    40 is 5, 7.5, 10 student steps of compute: teachers of 10, 15, 20 steps;
    students of 15 (20 - 5, rounded down at the smallest budget), 22
    (round(22.5), to even) and 30 steps; compute 20, 29.5 and 40."""
    from keras_net2net.bin import flags as shared_flags
    from keras_net2net.training import strategy as strategy_lib
    flag_values = _parse(
        f"--data_dir={digits_dir}", "--dataset=digits", "--teacher_model=mlp",
        "--teacher_widths=8", "--arms=wider", "--widen=2.0", "--teacher_share=0.25",
        "--budgets=20,30,40", "--eval_every=5", "--log_every=1000", "--seeds=1",
        "--lr_sweep=1", "--global_batch_size=32", "--learning_rate=0.01",
        "--warmup_steps=2")
    report = compare.run_from_flags(shared_flags.run_config(flag_values),
                                    strategy_lib.get_strategy("default"),
                                    str(tmp_path), flag_values=flag_values)
    arm = report["arms"]["wider"]
    assert arm["train_flops_per_step"] == {"teacher": 3552 * 32, "student": 7104 * 32}
    assert arm["teacher_flops_ratio"] == 0.5
    assert arm["teacher_steps"] == [10, 15, 20]
    assert arm["teacher_cost_in_student_steps"] == [5.0, 7.5, 10.0]
    front = arm["frontier"]
    assert front["grown"]["student_steps"] == [15, 22, 30]
    assert front["grown"]["compute"] == [20.0, 29.5, 40.0]
    assert front["grown"]["compute_sunk"] == [15, 22, 30]
    assert front["scratch"]["compute"] == [20.0, 30.0, 40.0]
    assert report["settings"]["teacher_share"] == 0.25
    out = capsys.readouterr().out
    assert "teacher cost 5.0/7.5/10.0 (teachers of 10/15/20 steps)" in out
    assert "slope.png" in out
    for picture in ("curves.png", "frontier.png", "slope.png"):
        assert (tmp_path / picture).read_bytes().startswith(b"\x89PNG")
