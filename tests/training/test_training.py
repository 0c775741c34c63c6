"""Tests of the custom training loop, checkpoints and strategies, in-process.

Multi-device runs need logical devices set before TensorFlow starts, so they
live in tests/bin/test_train.py, in subprocesses.
"""

import dataclasses
import glob
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_net2net import models
from keras_net2net.training import checkpoints
from keras_net2net.training import experiment
from keras_net2net.training import loop
from keras_net2net.training import optimizers
from keras_net2net.training import runner
from keras_net2net.training import strategy as strategy_lib

HAS_GPU = bool(tf.config.list_physical_devices("GPU"))


def _mlp(width=16):
    return lambda info: models.build_model("mlp", info.input_shape,
                                           info.num_classes, width=width)


def _config(digits_dir, **overrides):
    settings = dict(data_dir=digits_dir, global_batch_size=32, log_every=50,
                    checkpoint_every=50, learning_rate=3e-3)
    settings.update(overrides)
    return experiment.RunConfig(**settings)


@pytest.fixture
def default_strategy():
    return strategy_lib.get_strategy("default")


@pytest.fixture
def float32_policy():
    yield
    strategy_lib.set_precision("none")


def test_one_device_learns_digits(digits_dir, tmp_path):
    config = _config(digits_dir, eval_every=100)
    strategy = strategy_lib.get_strategy("one_device")
    model, history = experiment.train(config, strategy, _mlp(32),
                                      model_dir=str(tmp_path),
                                      train_steps=300, eval_at_start=True)
    accuracies = [e["accuracy"] for e in history["eval"]]
    assert [e["step"] for e in history["eval"]] == [0, 100, 200, 300]
    assert accuracies[0] < 0.3 < 0.85 < accuracies[-1]
    assert history["final_step"] == 300
    saved = keras.models.load_model(tmp_path / "model.keras")
    images = np.random.default_rng(0).random((4, 8, 8, 1), np.float32)
    np.testing.assert_allclose(saved(images), model(images), rtol=1e-6)
    assert glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))
    assert glob.glob(str(tmp_path / "eval" / "events.out.tfevents.*"))


def test_resumed_run_matches_uninterrupted_run(digits_dir, tmp_path,
                                               default_strategy):
    config = _config(digits_dir)
    straight, _ = experiment.train(config, default_strategy, _mlp(),
                                   model_dir="", train_steps=100)
    experiment.train(config, default_strategy, _mlp(),
                     model_dir=str(tmp_path), train_steps=50)
    resumed, history = experiment.train(config, default_strategy, _mlp(),
                                        model_dir=str(tmp_path),
                                        train_steps=100)
    assert (history["start_step"], history["final_step"]) == (50, 100)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_log_and_eval_keep_their_own_rhythm(digits_dir, default_strategy):
    config = _config(digits_dir, log_every=50, eval_every=20)
    _, history = experiment.train(config, default_strategy, _mlp(),
                                  model_dir="", train_steps=110)
    assert [e["step"] for e in history["train"]] == [50, 100, 110]
    assert [e["step"] for e in history["eval"]] == [20, 40, 60, 80, 100, 110]


def test_finished_run_is_not_trained_again(digits_dir, tmp_path,
                                           default_strategy):
    config = _config(digits_dir)
    experiment.train(config, default_strategy, _mlp(),
                     model_dir=str(tmp_path), train_steps=50)
    _, history = experiment.train(config, default_strategy, _mlp(),
                                  model_dir=str(tmp_path), train_steps=50)
    assert history["train"] == [] and history["final_step"] == 50
    assert [e["step"] for e in history["eval"]] == [50]


def _trained_dir(digits_dir, tmp_path, strategy, **overrides):
    config = _config(digits_dir, checkpoint_every=10, log_every=10,
                     **overrides)
    experiment.train(config, strategy, _mlp(), model_dir=str(tmp_path),
                     train_steps=20)
    return config


def test_corrupt_checkpoint_is_an_error_not_a_fresh_start(
        digits_dir, tmp_path, default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy)
    for data_file in glob.glob(str(tmp_path / "checkpoints" / "*.data-*")):
        with open(data_file, "r+b") as f:
            f.truncate(16)
    with pytest.raises(checkpoints.CheckpointError,
                       match=r"Cannot restore checkpoint .*ckpt-20.*model "
                             r"'mlp'.*--model_dir"):
        experiment.train(config, default_strategy, _mlp(),
                         model_dir=str(tmp_path), train_steps=40)


def test_corrupt_checkpoint_index_is_an_error(digits_dir, tmp_path,
                                              default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy)
    with open(tmp_path / "checkpoints" / "checkpoint", "w") as f:
        f.write("this is not a checkpoint state {{{")
    with pytest.raises(checkpoints.CheckpointError, match="Cannot restore"):
        experiment.train(config, default_strategy, _mlp(),
                         model_dir=str(tmp_path), train_steps=40)


def test_run_killed_before_its_state_file_resumes_from_disk(
        digits_dir, tmp_path, default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy)
    os.remove(tmp_path / "checkpoints" / "checkpoint")
    _, history = experiment.train(config, default_strategy, _mlp(),
                                  model_dir=str(tmp_path), train_steps=30)
    assert (history["start_step"], history["final_step"]) == (20, 30)


def test_checkpoint_of_another_model_is_an_error(digits_dir, tmp_path,
                                                 default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy)
    with pytest.raises(checkpoints.CheckpointError,
                       match="different model, optimizer"):
        experiment.train(config, default_strategy, _mlp(width=24),
                         model_dir=str(tmp_path), train_steps=40)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
        digits_dir, tmp_path, default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy,
                          optimizer="sgd")
    with pytest.raises(runner.NonFiniteLossError,
                       match=r"loss became (nan|inf) between steps 20 and 30.*"
                             r"ckpt-20, is kept"):
        experiment.train(config, default_strategy, _mlp(),
                         model_dir=str(tmp_path), train_steps=60,
                         learning_rate=1e30)
    assert tf.train.latest_checkpoint(
        str(tmp_path / "checkpoints")).endswith("ckpt-20")


def test_checkpoint_of_another_optimizer_is_an_error(digits_dir, tmp_path,
                                                     default_strategy):
    config = _trained_dir(digits_dir, tmp_path, default_strategy,
                          optimizer="sgd")
    with pytest.raises(checkpoints.CheckpointError,
                       match="different model, optimizer"):
        experiment.train(_config(digits_dir, optimizer="adam"),
                         default_strategy, _mlp(), model_dir=str(tmp_path),
                         train_steps=40)
    del config


@pytest.mark.parametrize("precision", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_and_resumes(digits_dir, tmp_path, precision,
                                            float32_policy, default_strategy):
    strategy_lib.set_precision(precision)
    config = _config(digits_dir, mixed_precision=precision, log_every=30)
    experiment.train(config, default_strategy, _mlp(),
                     model_dir=str(tmp_path), train_steps=30)
    model, history = experiment.train(config, default_strategy, _mlp(),
                                      model_dir=str(tmp_path), train_steps=60)
    assert history["start_step"] == 30
    assert model.layers[-1].compute_dtype == precision.split("_")[1]
    assert np.isfinite(history["train"][-1]["loss"])
    assert history["eval"][-1]["accuracy"] > 0.3


def test_jit_compile_matches_plain_loop(digits_dir, default_strategy):
    plain, _ = experiment.train(_config(digits_dir), default_strategy, _mlp(),
                                model_dir="", train_steps=20)
    jitted, _ = experiment.train(_config(digits_dir, jit_compile=True),
                                 default_strategy, _mlp(), model_dir="",
                                 train_steps=20)
    for a, b in zip(plain.get_weights(), jitted.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_runs_sharing_a_trainer_match_runs_with_their_own(digits_dir,
                                                           default_strategy):
    """Runs that share a trainer (as net2net-compare's do) end exactly where
    runs with their own do, trace their step once, and leave earlier runs'
    models alone."""
    config = _config(digits_dir, eval_every=10)
    input_fns = experiment.make_inputs(config)
    plans = [(0, 3e-3), (1, 1e-3), (0, 3e-3)]

    def runs(trainers):
        out = []
        for seed, learning_rate in plans:
            model, history = experiment.train(
                dataclasses.replace(config, seed=seed), default_strategy,
                _mlp(), model_dir="", train_steps=20, learning_rate=learning_rate,
                input_fns=input_fns, eval_at_start=True, trainers=trainers,
                reuse_key="mlp")
            out.append((model, history, [w.copy() for w in model.get_weights()]))
        return out

    own = runs(None)
    trainers = {}
    shared = runs(trainers)
    (_, kept), = trainers.values()
    assert kept._train_loop.experimental_get_tracing_count() == 1
    assert all(model is not kept.model for model, _, _ in shared)
    for (_, a, weights_a), (model, b, weights_b) in zip(own, shared):
        assert a["eval"] == b["eval"] and a["train"][-1]["loss"] == b["train"][-1]["loss"]
        for x, y, z in zip(weights_a, weights_b, model.get_weights()):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(y, z)  # not overwritten by later runs
    # Seed 0 twice: the same run, so the comparison above is not vacuous.
    assert shared[0][1]["eval"] == shared[2][1]["eval"] != shared[1][1]["eval"]


def test_a_run_that_differs_from_the_kept_trainer_traces_its_own(
        digits_dir, default_strategy):
    config = _config(digits_dir)
    input_fns = experiment.make_inputs(config)
    trainers = {}
    for width in (16, 24):
        model, _ = experiment.train(config, default_strategy, _mlp(width),
                                    model_dir="", train_steps=5,
                                    input_fns=input_fns, trainers=trainers,
                                    reuse_key="mlp")
    (_, kept), = trainers.values()
    # The wider run trained a model of its own; the kept trainer is the first's.
    assert model.count_params() > kept.model.count_params()


def _linear(l2):
    def build(info):
        inputs = keras.Input(info.input_shape)
        x = keras.layers.Flatten()(inputs)
        outputs = keras.layers.Dense(
            info.num_classes, name="logits",
            kernel_regularizer=keras.regularizers.L2(l2) if l2 else None)(x)
        return keras.Model(inputs, outputs)
    return build


def test_regularization_losses_are_trained(digits_dir, default_strategy):
    config = _config(digits_dir, optimizer="sgd", learning_rate=0.01)
    kernels = [experiment.train(config, default_strategy, _linear(l2),
                                model_dir="", train_steps=50)[0]
               .get_layer("logits").kernel.numpy() for l2 in (0.0, 10.0)]
    # Each SGD step shrinks the kernel by 1 - 2 * 10 * 0.01 = 0.8.
    assert np.abs(kernels[1]).max() < 0.2 * np.abs(kernels[0]).max()


def test_epochs_become_whole_steps():
    info = types.SimpleNamespace(num_train_examples=1437)
    resolve = experiment.resolve_train_steps
    assert resolve(experiment.RunConfig(epochs=2, global_batch_size=64),
                   info) == 44
    assert resolve(experiment.RunConfig(train_steps=7), info) == 7
    assert resolve(experiment.RunConfig(), info) == (
        experiment.DEFAULT_TRAIN_STEPS)


def test_global_batch_must_split_over_replicas():
    two_replicas = types.SimpleNamespace(num_replicas_in_sync=2)
    with pytest.raises(ValueError, match="global_batch_size=7"):
        loop.Trainer(two_replicas, None, None, None, None, None, 7)


@pytest.mark.parametrize("name,kwargs,names", [
    ("mlp", {"widths": [8, 4]}, ["flatten", "fc1", "fc2", "logits"]),
    ("cnn", {"widths": [2, 4, 8]},
     ["conv1", "conv2", "pool1", "conv3", "flatten", "fc1", "logits"]),
    ("cnn", {"width": 2, "depth": 2}, ["conv1", "conv2", "flatten", "fc1",
                                       "logits"]),
])
def test_built_in_models_have_stable_names(name, kwargs, names):
    keras.backend.clear_session(free_memory=False)  # Automatic names would now differ.
    model = models.build_model(name, (8, 8, 1), 10, **kwargs)
    assert [layer.name for layer in model.layers[1:]] == names


def test_resnet_small_and_applications_build():
    resnet = models.build_model("resnet_small", (8, 8, 1), 10, width=4,
                                depth=2)
    assert resnet.get_layer("block2_add").output.shape == (None, 8, 8, 4)
    assert models.is_application("MobileNetV2")
    assert not models.is_application("mlp")
    mobile = models.build_model("MobileNetV2", (32, 32, 3), 7)
    assert mobile.output.shape == (None, 7)


@pytest.mark.parametrize("name,kwargs,message", [
    ("transformer", {}, "model='transformer'"),
    ("mlp", {"width": 0}, "width=0"),
    ("cnn", {"widths": [4, -1]}, "widths=-1"),
])
def test_bad_model_settings_are_named(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.build_model(name, (8, 8, 1), 10, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"name": "bogus"}, "strategy='bogus'"),
    ({"name": "one_device", "num_gpus": 64}, "num_gpus=64"),
])
def test_get_strategy_errors_name_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        strategy_lib.get_strategy(**kwargs)


def test_multi_worker_without_tf_config_is_explained(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy_lib.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG="):
        strategy_lib.get_strategy("multi_worker")


def test_logical_cpu_devices_after_start_are_explained():
    tf.constant(0)  # TensorFlow is initialised from here on.
    with pytest.raises(RuntimeError, match="num_cpu_devices=3"):
        strategy_lib.configure_cpu_devices(3)


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_optimizers_by_name(name):
    optimizer = optimizers.make_optimizer(name, 0.01, loss_scale=True)
    assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match="learning_rate=0"):
        optimizers.make_optimizer(name, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
def test_one_device_gpu_learns_digits(digits_dir):
    strategy = strategy_lib.get_strategy("one_device", num_gpus=1)
    _, history = experiment.train(_config(digits_dir), strategy, _mlp(32),
                                  model_dir="", train_steps=200)
    assert history["eval"][-1]["accuracy"] > 0.8


@pytest.mark.gpu
@pytest.mark.skipif(len(tf.config.list_physical_devices("GPU")) < 2,
                    reason="needs two GPUs")
def test_mirrored_on_gpus_learns_digits(digits_dir):
    strategy = strategy_lib.get_strategy("mirrored", num_gpus=2)
    _, history = experiment.train(_config(digits_dir), strategy, _mlp(32),
                                  model_dir="", train_steps=200)
    assert history["eval"][-1]["accuracy"] > 0.8


@pytest.mark.skipif(not tf.config.list_physical_devices("TPU"),
                    reason="needs a TPU")
def test_tpu_strategy_learns_digits(digits_dir):
    strategy = strategy_lib.get_strategy("tpu", tpu="local")
    _, history = experiment.train(_config(digits_dir), strategy, _mlp(32),
                                  model_dir="", train_steps=200)
    assert history["eval"][-1]["accuracy"] > 0.8


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs a GPU")
def test_mixed_float16_on_gpu(digits_dir, float32_policy):
    strategy = strategy_lib.get_strategy("one_device", num_gpus=1)
    strategy_lib.set_precision("mixed_float16")
    _, history = experiment.train(
        _config(digits_dir, mixed_precision="mixed_float16"), strategy,
        _mlp(32), model_dir="", train_steps=200)
    assert history["eval"][-1]["accuracy"] > 0.8


def test_model_dir_outputs_are_only_where_asked(digits_dir, tmp_path,
                                                default_strategy, monkeypatch):
    monkeypatch.chdir(tmp_path)  # restored after the test
    experiment.train(_config(digits_dir), default_strategy, _mlp(),
                     model_dir="", train_steps=10)
    assert os.listdir(tmp_path) == []
