"""net2net-train --grow_at_step: growth inside a training run.

The model grows at the step asked for, evaluates the same just before and
just after (the function is preserved), keeps training from the carried
optimizer state without a loss spike, writes the grown model's stage
(checkpoints, model.keras, report, growth record), resumes the grown model
after a stop at any point, and runs mirrored on two logical CPUs as on one
device."""

import json
import os
import signal
import subprocess
import sys

from absl import flags
import keras
import numpy as np
import pytest

from keras_net2net.bin import flags as shared_flags
from keras_net2net.bin import train
from keras_net2net.training import experiment
from keras_net2net.training import growth
from keras_net2net.training import strategy as strategy_lib
from tests.conftest import run_workers

TRAIN = "keras_net2net.bin.train"
GROW = ("--grow_at_step=60", "--widen=2.0", "--deepen=fc1")


def _parse(*argv):
    flag_values = flags.FlagValues()
    train.define_flags(flag_values)
    flag_values(["net2net-train", "--model_dir=/tmp/unused", *argv])
    return flag_values


def _args(model_dir, digits_dir, *extra):
    return (f"--model_dir={model_dir}", f"--data_dir={digits_dir}", "--model=mlp",
            "--width=16", "--global_batch_size=32", "--log_every=20", "--seed=1",
            "--checkpoint_every=50", *extra)


def _train(*argv):
    """experiment.train in this process, from binary flags."""
    flag_values = _parse(*argv)
    return experiment.train(shared_flags.run_config(flag_values),
                            strategy_lib.get_strategy("default"),
                            train.model_fn_from_flags(flag_values),
                            growth=shared_flags.growth_plan(flag_values))


def _history(model_dir):
    with open(os.path.join(model_dir, "history.json")) as f:
        return json.load(f)


def _output(result):
    return f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


# -- flags --------------------------------------------------------------------------
@pytest.mark.parametrize("argv,names", [
    (["--grow_at_step=60"], ["grow_at_step", "widen", "deepen"]),
    (["--widen=2.0"], ["grow_at_step", "widen"]),
    (["--grow_at_step=100", "--train_steps=100", "--widen=2"], ["grow_at_step", "train_steps"]),
    (["--grow_at_step=abc", "--widen=2"], ["--grow_at_step=", "abc"]),
    (["--grow_at_step=60,20", "--widen=2"], ["--grow_at_step=", "ascending"]),
    (["--grow_at_step=60", "--widen=fc1=x"], ["--widen=fc1=x"]),
    (["--grow_at_step=60", "--deepen=fc1:bogus"], ["--deepen=fc1:bogus"]),
])
def test_bad_growth_flags_are_rejected_naming_the_flags(argv, names):
    with pytest.raises(flags.Error) as info:
        _parse(*argv)
    message = str(info.value)
    assert "Expected" in message, message
    for name in names:
        assert name in message, (name, message)


def test_growth_beyond_the_epochs_stops_the_binary(run_main, digits_dir, tmp_path):
    result = run_main(TRAIN, *_args(tmp_path, digits_dir, "--epochs=1",
                                      "--grow_at_step=5000", "--widen=2.0"))
    assert result.returncode == 1, _output(result)
    assert "net2net-train: error: Expected grow_at_step below the run's" in result.stderr
    assert "grow_at_step=5000" in result.stderr and "Fix:" in result.stderr


def test_plan_checks_its_steps():
    with pytest.raises(ValueError, match="Expected --widen or --deepen"):
        growth.GrowthPlan(steps=(5,)).check(10)
    with pytest.raises(ValueError, match="grow_at_step=10"):
        growth.GrowthPlan(steps=(10,), widen=2.0).check(10)


# -- a run that grows ----------------------------------------------------------------
def test_run_grows_at_the_step_with_the_function_preserved(digits_dir, tmp_path):
    model, history = _train(*_args(tmp_path, digits_dir, "--train_steps=120", *GROW))
    [record] = history["growth"]
    # The default recipe: a fresh optimizer (balanced noise 0.5 keeps the
    # function exact).
    assert record["step"] == 60 and not record["carry_optimizer"]
    before, after = record["eval_before"], record["eval_after"]
    assert before["loss"] == pytest.approx(after["loss"], rel=1e-5)
    assert before["accuracy"] == pytest.approx(after["accuracy"], abs=1e-9)
    assert record["params"]["after"] > record["params"]["before"]
    assert model.count_params() == record["params"]["after"]
    stage = tmp_path / "grown_1"
    with open(stage / "report.json") as f:
        report = json.load(f)
    assert report["params_after"] == record["params"]["after"]
    assert {"fc1_deepen_1"} <= {layer.name for layer in model.layers}
    grown = keras.models.load_model(stage / "model.keras")
    assert grown.count_params() == model.count_params()
    assert (stage / "checkpoints" / "ckpt-60.index").exists()
    assert (stage / "checkpoints" / "ckpt-120.index").exists()
    assert (tmp_path / "checkpoints" / "ckpt-60.index").exists()  # the teacher's
    assert _history(tmp_path)["growth"] == history["growth"]
    # No loss spike: the interval after growth trains on from where it was.
    train_losses = {e["step"]: e["loss"] for e in history["train"]}
    assert train_losses[80] < train_losses[60] * 1.05, train_losses
    assert history["final_step"] == 120


def test_rerun_after_growth_resumes_the_grown_model(digits_dir, tmp_path):
    _train(*_args(tmp_path, digits_dir, "--train_steps=100", *GROW))
    model, history = _train(*_args(tmp_path, digits_dir, "--train_steps=140", *GROW))
    assert history["start_step"] == 100 and history["final_step"] == 140
    assert "fc1_deepen_1" in {layer.name for layer in model.layers}
    assert [g["step"] for g in history["growth"]] == [60]
    assert (tmp_path / "grown_1" / "checkpoints" / "ckpt-140.index").exists()


def test_stop_during_growth_grows_again_from_the_teachers_checkpoint(digits_dir, tmp_path):
    """A run killed after the teacher's checkpoint at the growth step but
    before the grown model's first checkpoint (the stage's commit point)
    restores the teacher at that step and grows again: the same result."""
    args = _args(tmp_path, digits_dir, "--train_steps=80", *GROW)
    _, whole = _train(*args)
    final = keras.models.load_model(tmp_path / "model.keras")
    for name in ("grown_1", "train", "eval"):
        os.rename(tmp_path / name, tmp_path.parent / f"{tmp_path.name}_{name}_old")
    os.remove(tmp_path / "model.keras")
    model, history = _train(*args)
    assert history["start_step"] == 60
    assert [g["step"] for g in history["growth"]] == [60]
    assert history["growth"][0]["eval_after"] == pytest.approx(whole["growth"][0]["eval_after"])
    for a, b in zip(model.get_weights(), final.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_mirrored_growth_follows_the_one_device_run(run_binary, digits_dir, tmp_path):
    result = run_binary(TRAIN, *_args(tmp_path / "mirrored", digits_dir, "--train_steps=100",
                                      "--strategy=mirrored", "--num_cpu_devices=2", *GROW),
                        timeout=300)
    assert result.returncode == 0, _output(result)
    assert "2 replica(s) in sync" in result.stderr
    mirrored = _history(tmp_path / "mirrored")
    _, one_device = _train(*_args("", digits_dir, "--train_steps=100", "--strategy=one_device",
                                  *GROW))
    losses = [[e["loss"] for e in h["train"]] for h in (one_device, mirrored)]
    assert len(losses[0]) == 5
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
    assert [g["step"] for g in mirrored["growth"]] == [60]
    np.testing.assert_allclose(mirrored["growth"][0]["eval_after"]["loss"],
                               one_device["growth"][0]["eval_after"]["loss"], rtol=1e-3)


# -- several workers, and a real SIGKILL inside growth --------------------------------

def test_multi_worker_growth_ends_bit_identical_on_both_workers(digits_dir, tmp_path):
    """Two worker processes on localhost (TF_CONFIG, --strategy=multi_worker)
    grow at the same step and end with the same weights, bit for bit."""
    run_workers(TRAIN, _args(tmp_path, digits_dir, "--train_steps=100",
                             "--strategy=multi_worker", *GROW))
    chief = keras.models.load_model(tmp_path / "model.keras")
    other = keras.models.load_model(tmp_path / "worker_1" / "model.keras")
    assert "fc1_deepen_1" in {layer.name for layer in chief.layers}
    assert [w.shape for w in chief.get_weights()] == [w.shape for w in other.get_weights()]
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    history, other_history = _history(tmp_path), _history(tmp_path / "worker_1")
    [record] = history["growth"]
    assert record["step"] == 60 and history["final_step"] == 100
    assert record["eval_before"]["loss"] == pytest.approx(record["eval_after"]["loss"],
                                                          rel=1e-5)
    assert [g["step"] for g in other_history["growth"]] == [60]
    assert other_history["growth"][0]["eval_after"] == record["eval_after"]
    assert [e["loss"] for e in other_history["train"]] == [e["loss"] for e in history["train"]]
    # Only the chief keeps the stage; the other worker's scratch copies are gone.
    assert (tmp_path / "grown_1" / "checkpoints" / "ckpt-100.index").exists()
    assert (tmp_path / "grown_1" / "model.keras").exists()
    assert not any(name.startswith(".worker") for name in os.listdir(tmp_path))
    assert not any(name.startswith(".worker")
                   for name in os.listdir(tmp_path / "grown_1"))


# Runs net2net-train, and SIGKILLs the process at a point inside the growth:
# "grown" just after the student and its optimizer exist (nothing of the stage
# written), "stage_written" after model.keras, report and growth record are
# written but before the stage's first checkpoint (its commit point).
_KILLED_DURING_GROWTH = """
import os, signal, sys
from keras_net2net.training import growth
point = sys.argv.pop(1)
def killing(original):
    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapped
if point == "grown":
    growth.grow = killing(growth.grow)
else:
    growth.write_stage = killing(growth.write_stage)
from keras_net2net.bin import train
train.run()
"""


@pytest.fixture(scope="module")
def uninterrupted(digits_dir, tmp_path_factory):
    """The model_dir of an uninterrupted binary run that grows at step 60."""
    model_dir = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run([sys.executable, "-m", TRAIN,
                             *_args(model_dir, digits_dir, "--train_steps=80", *GROW)],
                            capture_output=True, text=True, timeout=180,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, _output(result)
    return model_dir


def test_sigkills_during_growth_then_rerun_resumes_and_ends_as_uninterrupted(
        run_binary, digits_dir, uninterrupted, tmp_path):
    """Killed at "grown", rerun and killed again at "stage_written", rerun to
    the end: each rerun restores the teacher's step-60 checkpoint and grows
    again, and the run ends as the uninterrupted one did. (One chain instead
    of one run per point: each process start costs seconds of TF import.)"""
    args = _args(tmp_path, digits_dir, "--train_steps=80", *GROW)
    for point in ("grown", "stage_written"):
        killed = subprocess.run([sys.executable, "-c", _KILLED_DURING_GROWTH, point, *args],
                                capture_output=True, text=True, timeout=180,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert killed.returncode == -signal.SIGKILL, f"{point}: {_output(killed)}"
        assert (tmp_path / "checkpoints" / "ckpt-60.index").exists()  # the teacher's
        assert not list((tmp_path / "grown_1").glob("checkpoints/*.index")), point
        assert (tmp_path / "grown_1" / "growth.json").exists() == (point == "stage_written")
        assert not (tmp_path / "model.keras").exists()
        if point == "stage_written":
            assert "Resumed from" in killed.stderr, _output(killed)

    result = run_binary(TRAIN, *args)
    assert result.returncode == 0, _output(result)
    assert "Resumed from" in result.stderr and "Grew at step 60" in result.stderr
    history, reference = _history(tmp_path), _history(uninterrupted)
    assert history["start_step"] == 60 and history["final_step"] == 80
    [record] = history["growth"]
    assert record["step"] == 60
    assert record["eval_after"] == pytest.approx(reference["growth"][0]["eval_after"])
    assert (tmp_path / "grown_1" / "checkpoints" / "ckpt-80.index").exists()
    model = keras.models.load_model(tmp_path / "model.keras")
    expected = keras.models.load_model(uninterrupted / "model.keras")
    for a, b in zip(model.get_weights(), expected.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_growth_flag_defaults_are_the_python_apis():
    """--noise, --carry_optimizer and --rewarm_steps default to GrowthPlan's
    defaults: the savings study's best recipe (noise 0.5, a fresh optimizer,
    10 steps of re-warmup)."""
    flag_values = flags.FlagValues()
    train.define_flags(flag_values)
    plan = growth.GrowthPlan(steps=(1,))
    assert (flag_values["noise"].default, flag_values["carry_optimizer"].default,
            flag_values["rewarm_steps"].default) == (
        plan.noise, plan.carry_optimizer, plan.rewarm_steps) == (0.5, False, 10)
