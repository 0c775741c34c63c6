"""Tests of net2net-train: flags, one device vs mirrored vs multi-worker,
resume after SIGKILL. Distributed runs are subprocesses, because logical
devices and collectives must be configured before TensorFlow starts."""

import json
import os
import signal
import subprocess
import sys
import time

from absl import flags
import keras
import numpy as np
import pytest

from keras_net2net import models
from keras_net2net.bin import flags as shared_flags
from keras_net2net.bin import train
from keras_net2net.training import experiment
from keras_net2net.training import strategy as strategy_lib
from tests.conftest import run_workers

TRAIN = "keras_net2net.bin.train"


def _parse(*argv):
    flag_values = flags.FlagValues()
    train.define_flags(flag_values)
    flag_values(["net2net-train", "--model_dir=/tmp/unused", *argv])
    return flag_values


@pytest.mark.parametrize("argv,flag", [
    (["--strategy=bogus"], "--strategy"),
    (["--global_batch_size=0"], "--global_batch_size"),
    (["--learning_rate=0"], "--learning_rate"),
    (["--optimizer=lion9"], "--optimizer"),
    (["--mixed_precision=fp8"], "--mixed_precision"),
    (["--num_cpu_devices=0"], "--num_cpu_devices"),
    (["--train_steps=5", "--epochs=1"], "--train_steps"),
    (["--model=transformer"], "--model"),
    (["--widths=4,x"], "--widths"),
    (["--synthetic_shape=8,0"], "--synthetic_shape"),
    (["--init_model=/no/such/file.keras"], "--init_model"),
    (["--tpu=grpc://1.2.3.4"], "--tpu"),
])
def test_bad_flag_values_are_rejected_naming_the_flag(argv, flag):
    with pytest.raises(flags.Error, match=flag):
        _parse(*argv)


def test_good_flags_make_a_run_config():
    flag_values = _parse("--strategy=mirrored", "--synthetic_shape=4,4,3",
                         "--epochs=2", "--model=MobileNetV2")
    config = shared_flags.run_config(flag_values)
    assert config.strategy == "mirrored" and config.epochs == 2
    assert config.synthetic_shape == (4, 4, 3)


def test_bad_flag_stops_the_binary_with_a_usage_error(run_binary, tmp_path):
    result = run_binary(TRAIN, f"--model_dir={tmp_path}", "--strategy=bogus")
    assert result.returncode == 1
    assert "FATAL Flags parsing error: flag --strategy=bogus" in result.stderr
    assert not os.listdir(tmp_path)


def _train_args(model_dir, digits_dir, *extra):
    return (f"--model_dir={model_dir}", f"--data_dir={digits_dir}",
            "--model=mlp", "--width=16", "--global_batch_size=32",
            "--log_every=20", "--seed=1", *extra)


def _history(model_dir):
    with open(os.path.join(model_dir, "history.json")) as f:
        return json.load(f)


def _output(result):
    return f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def test_mirrored_on_two_cpus_follows_the_one_device_curve(
        run_binary, digits_dir, tmp_path):
    result = run_binary(TRAIN, *_train_args(
        tmp_path, digits_dir, "--train_steps=100", "--strategy=mirrored",
        "--num_cpu_devices=2"))
    assert result.returncode == 0, _output(result)
    assert "2 replica(s) in sync" in result.stderr
    mirrored = _history(tmp_path)
    # The same run on one device, in this process: same seed, same stream.
    config = shared_flags.run_config(_parse(*_train_args(
        "", digits_dir, "--train_steps=100", "--strategy=one_device")))
    _, one_device = experiment.train(
        config, strategy_lib.get_strategy("one_device"),
        lambda info: models.build_model("mlp", info.input_shape,
                                        info.num_classes, width=16))
    losses = [[e["loss"] for e in h["train"]] for h in (one_device, mirrored)]
    assert len(losses[0]) == 5
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-3)
    np.testing.assert_allclose(mirrored["eval"][-1]["accuracy"],
                               one_device["eval"][-1]["accuracy"], atol=0.01)



def test_multi_worker_processes_end_with_identical_weights(digits_dir,
                                                           tmp_path):
    run_workers(TRAIN, _train_args(tmp_path, digits_dir, "--strategy=multi_worker",
                                   "--train_steps=60", "--checkpoint_every=30"), timeout=180)
    chief = keras.models.load_model(tmp_path / "model.keras")
    other = keras.models.load_model(tmp_path / "worker_1" / "model.keras")
    for a, b in zip(chief.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _history(tmp_path)["final_step"] == 60
    # Only the chief keeps checkpoints; the other worker's scratch copy is gone.
    assert os.path.exists(tmp_path / "checkpoints" / "ckpt-60.index")
    assert not any(name.startswith(".worker") for name in os.listdir(tmp_path))


def test_killed_run_resumes_and_ends_at_the_same_step(run_binary, digits_dir,
                                                      tmp_path):
    args = _train_args(tmp_path, digits_dir, "--model=cnn", "--widths=8,16,16",
                       "--train_steps=600", "--checkpoint_every=50",
                       "--log_every=50")
    process = subprocess.Popen([sys.executable, "-m", TRAIN, *args],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    # The state file is written once the first checkpoint is whole; the kill
    # then lands anywhere after it (often inside a later save).
    first = tmp_path / "checkpoints" / "checkpoint"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "model.keras").exists(), "killed after the end"

    result = run_binary(TRAIN, *args)
    assert result.returncode == 0, _output(result)
    history = _history(tmp_path)
    assert "Resumed from" in result.stderr
    assert 50 <= history["start_step"] < 600
    assert history["final_step"] == 600
    assert history["train"][-1]["step"] == 600


def test_a_checkpoint_cut_short_by_a_kill_is_skipped_for_the_one_before(
        run_binary, digits_dir, tmp_path):
    args = _train_args(tmp_path, digits_dir, "--train_steps=20", "--checkpoint_every=10")
    experiment.train(shared_flags.run_config(_parse(*args)),
                     strategy_lib.get_strategy("default"),
                     train.model_fn_from_flags(_parse(*args)))
    checkpoints = tmp_path / "checkpoints"
    os.remove(checkpoints / "checkpoint")  # killed before the state file named ckpt-20
    index = checkpoints / "ckpt-20.index"
    index.write_bytes(index.read_bytes()[:7])  # ... and inside ckpt-20's own write
    result = run_binary(TRAIN, *_train_args(tmp_path, digits_dir, "--train_steps=30",
                                            "--checkpoint_every=10"))
    assert result.returncode == 0, _output(result)
    assert "was not written to the end" in result.stderr
    assert _history(tmp_path)["start_step"] == 10


def test_corrupt_checkpoint_stops_the_binary_with_a_clear_error(
        run_main, digits_dir, tmp_path):
    args = _train_args(tmp_path, digits_dir, "--train_steps=20",
                       "--checkpoint_every=10")
    experiment.train(shared_flags.run_config(_parse(*args)),
                     strategy_lib.get_strategy("default"),
                     train.model_fn_from_flags(_parse(*args)))
    with open(tmp_path / "checkpoints" / "ckpt-20.index", "wb") as f:
        f.write(b"garbage")
    result = run_main(TRAIN, *_train_args(tmp_path, digits_dir,
                                            "--train_steps=40"))
    assert result.returncode == 1
    assert "net2net-train: error: Cannot restore checkpoint" in result.stderr
    assert "ckpt-20" in result.stderr and "--model_dir" in result.stderr


def test_init_model_is_fine_tuned_from_its_weights(digits_dir, tmp_path):
    teacher_dir = tmp_path / "teacher"
    strategy = strategy_lib.get_strategy("default")
    args = _train_args(teacher_dir, digits_dir, "--train_steps=100")
    _, teacher = experiment.train(shared_flags.run_config(_parse(*args)),
                                  strategy, train.model_fn_from_flags(
                                      _parse(*args)))
    init = _parse(*_train_args(tmp_path / "tuned", digits_dir,
                               "--train_steps=20",
                               f"--init_model={teacher_dir / 'model.keras'}"))
    _, tuned = experiment.train(shared_flags.run_config(init), strategy,
                                train.model_fn_from_flags(init),
                                eval_at_start=True)
    assert tuned["eval"][0]["accuracy"] == pytest.approx(
        teacher["eval"][-1]["accuracy"])


def test_unreadable_init_model_names_the_flag(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"junk")
    model_fn = train.model_fn_from_flags(_parse(f"--init_model={bad}"))
    with pytest.raises(ValueError, match=r"--init_model=.*bad\.keras"):
        model_fn(None)
