"""The byte-level language model path: gpt on stdlib_bytes through the
binaries' data pipeline and tf.distribute loop (the default strategy here;
tests/bin/test_train.py runs the same loop mirrored and multi-worker)."""

import json

import numpy as np
import pytest

from keras_net2net import models
from keras_net2net.data import inputs
from keras_net2net.data import stdlib_text

# The small config (900 KB of source) builds in seconds; the demo's default
# config's splits are checked without TFDS in test_data.py.
SMALL = "stdlib_bytes/small"


@pytest.fixture(scope="module")
def bytes_dir(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("tfds_bytes"))
    inputs.make_input_fns(SMALL, 64, data_dir=data_dir)
    return data_dir


def test_stdlib_bytes_pairs_are_next_byte_targets(bytes_dir):
    _, _, info = inputs.make_input_fns(SMALL, 64, data_dir=bytes_dir)
    assert info.input_shape == (stdlib_text.WINDOW - 1,)
    assert info.num_classes == stdlib_text.VOCAB
    x, y = inputs.load_arrays(SMALL, "eval", data_dir=bytes_dir, limit=50)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])  # y is x shifted by one byte
    _, windows = stdlib_text.windows("test", max_bytes=900_000)
    assert info.num_eval_examples == len(windows)
    held_out = {row.tobytes() for row in windows.astype(np.int32)}
    rows = np.concatenate([x, y[:, -1:]], axis=1)
    assert all(row.tobytes() in held_out for row in rows)


def test_gpt_trains_and_grows_in_a_run(bytes_dir, tmp_path):
    import tensorflow as tf
    from keras_net2net.training import experiment
    from keras_net2net.training import growth as growth_lib

    config = experiment.RunConfig(dataset=SMALL, data_dir=bytes_dir, global_batch_size=16,
                                  learning_rate=0.01, checkpoint_every=0)
    # A whole transformer block repeated (keras_net2net.spans), as the demo does.
    plan = growth_lib.GrowthPlan(steps=(3,), widen=2.0, carry_optimizer=True,
                                 deepen={("block1_ln1", "block1_res2"): 1})
    model, history = experiment.train(
        config, tf.distribute.get_strategy(),
        lambda info: models.build_model("gpt", info.input_shape, info.num_classes,
                                        width=8, depth=1),
        model_dir=str(tmp_path), train_steps=6, growth=plan)
    (growth,) = history["growth"]
    # Growth keeps the function: the validation loss before and after agree,
    # and the carried Adam state continues the teacher's steps.
    assert growth["eval_after"]["loss"] == pytest.approx(growth["eval_before"]["loss"],
                                                         rel=1e-4)
    assert growth["params"]["after"] > growth["params"]["before"]
    assert model.get_layer("block1_mha").num_heads == 2
    assert model.get_layer("block1_mha_deepen_1").num_heads == 2
    # Per-token cross-entropy over 128 byte values: chance is log(128).
    assert history["eval"][-1]["loss"] < np.log(128)


def test_tiny_lm_comparison_with_whole_blocks_reports_json(bytes_dir):
    import tensorflow as tf
    from keras_net2net.training import comparison
    from keras_net2net.training import experiment

    config = experiment.RunConfig(dataset=SMALL, data_dir=bytes_dir, global_batch_size=16,
                                  learning_rate=0.01, checkpoint_every=0, eval_every=2)
    blocks = {("block1_ln1", "block1_res2"): 1}
    report = comparison.run_comparison(
        config, tf.distribute.get_strategy(),
        lambda info: models.build_model("gpt", info.input_shape, info.num_classes,
                                        width=8, depth=1),
        [comparison.Arm("both", widen=2.0, deepen=blocks)], seeds=[0],
        teacher_steps=2, budgets=[3, 4, 6], carry_optimizer=True, metric="loss")
    arm = report["arms"]["both"]
    # Span keys are written as the flags write them, so the report is JSON.
    assert json.loads(json.dumps(report))["arms"]["both"]["deepen"] == {
        "block1_ln1..block1_res2": 1}
    front = arm["frontier"]
    assert front["scratch"]["steps"] == [3, 4, 6]
    assert front["grown"]["compute"][0] <= 3 and front["grown"]["compute"][-1] >= 6
    # The student starts as the trained teacher, ahead of the fresh twin.
    assert arm["max_relative_error_per_seed"][0] < 1e-5
    assert arm["curves"]["grown"][0][0]["loss"] < arm["curves"]["scratch"][0][0]["loss"]
    assert arm["params"]["student"] > 2 * arm["params"]["teacher"]
    assert arm["compute_saved"]["quality_per_seed"] == [min(front["scratch"]["per_seed"][0])]


def test_lm_comparison_rotates_every_students_stream(bytes_dir, monkeypatch):
    import tensorflow as tf
    from keras_net2net.training import comparison
    from keras_net2net.training import experiment

    rotated = []
    rotate_stream = comparison.stream_rotation.rotate_stream

    def recording(model, **kwargs):
        rotated.append((model.get_layer("token_embedding").embeddings.numpy(), kwargs))
        result = rotate_stream(model, **kwargs)
        rotated[-1] += (model.get_layer("token_embedding").embeddings.numpy(),)
        return result

    monkeypatch.setattr(comparison.stream_rotation, "rotate_stream", recording)
    config = experiment.RunConfig(dataset=SMALL, data_dir=bytes_dir, global_batch_size=16,
                                  learning_rate=0.01, checkpoint_every=0, eval_every=0,
                                  lr_schedule="wsd", warmup_steps=1)
    build = lambda info: models.build_model("gpt", info.input_shape, info.num_classes,
                                            width=8, depth=1)
    arms = [comparison.Arm("wider", widen=2.0)]
    common = dict(seeds=[0], teacher_steps=2, budgets=[4, 6, 8], metric="loss",
                  time_steps=False, rotate_stream=1.0)
    with pytest.raises(ValueError, match="carry_optimizer=False with rotate_stream"):
        comparison.run_comparison(config, tf.distribute.get_strategy(), build, arms,
                                  carry_optimizer=True, **common)
    assert not rotated  # refused before any growth
    report = comparison.run_comparison(config, tf.distribute.get_strategy(), build, arms,
                                       noise=0.5, **common)
    arm = report["arms"]["wider"]
    (before, kwargs, after), = rotated
    assert kwargs == {"angle": 1.0, "seed": 0}
    assert np.max(np.abs(after - before)) > 0.01
    assert arm["exact"] is True and arm["max_relative_error_per_seed"][0] < 1e-5
    assert report["settings"]["rotate_stream"] == 1.0


def test_binaries_accept_gpt_and_the_new_data_sets():
    from absl import flags
    from keras_net2net.bin import compare
    from keras_net2net.bin import train

    flag_values = flags.FlagValues()
    train.define_flags(flag_values)
    flag_values(["net2net-train", "--model_dir=/tmp/unused", "--model=gpt",
                 "--dataset=stdlib_bytes", "--width=16", "--depth=1"])
    info = inputs.InputInfo("stdlib_bytes", (32,), 128, 10, 10, 1)
    model = train.model_fn_from_flags(flag_values)(info)
    assert model.name == "gpt" and model.output_shape == (None, 32, 128)
    flag_values = flags.FlagValues()
    compare.define_flags(flag_values)
    flag_values(["net2net-compare", "--model_dir=/tmp/unused", "--teacher_model=gpt",
                 "--dataset=stdlib_bytes", "--arms=wider"])
    assert compare.metric_from_flags(flag_values) == "loss"
    flag_values(["net2net-compare", "--dataset=distorted_digits",
                 "--teacher_model=cnn"])
    assert compare.metric_from_flags(flag_values) == "accuracy"


def test_gpt_refuses_image_shapes():
    with pytest.raises(ValueError, match=r"input_shape=\(8, 8, 1\)"):
        models.build_model("gpt", (8, 8, 1), 10)
