"""Tests of the digits TFDS builder and the distributed input functions."""

import os

import numpy as np
import pytest
import tensorflow as tf

from keras_net2net.data import digits
from keras_net2net.data import inputs


def _context(num_pipelines, pipeline_id, num_replicas):
    return tf.distribute.InputContext(num_input_pipelines=num_pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=num_replicas)


def test_digits_split_is_deterministic_stratified_and_complete():
    from sklearn import datasets
    labels = datasets.load_digits().target
    train, test = digits.train_test_indices(labels)
    again_train, again_test = digits.train_test_indices(labels)
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(test, again_test)
    assert (len(train), len(test)) == (1437, 360)
    assert not set(train) & set(test)
    assert np.bincount(labels[test], minlength=10).min() >= 35  # Stratified.


def test_digits_builds_offline_and_scales_to_unit_range(digits_dir):
    _, _, info = inputs.make_input_fns("digits", 64, data_dir=digits_dir)
    assert info.input_shape == (8, 8, 1)
    assert info.num_classes == 10
    assert (info.num_train_examples, info.num_eval_examples) == (1437, 360)
    images, labels = inputs.load_arrays("digits", "eval", data_dir=digits_dir)
    assert images.shape == (360, 8, 8, 1) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    assert set(labels) == set(range(10))


@pytest.mark.parametrize("num_pipelines,num_replicas", [(1, 1), (1, 2), (2, 4)])
def test_eval_fn_covers_each_example_once_in_equal_steps(
        digits_dir, num_pipelines, num_replicas):
    _, eval_fn, info = inputs.make_input_fns("digits", 64, data_dir=digits_dir)
    total_weight, batches = 0.0, []
    for pipeline in range(num_pipelines):
        data = eval_fn(_context(num_pipelines, pipeline, num_replicas))
        pipeline_batches = list(data.as_numpy_iterator())
        batches.append(len(pipeline_batches))
        total_weight += sum(weights.sum() for _, _, weights in pipeline_batches)
        assert all(len(labels) == info.eval_batch_size // num_replicas
                   for _, labels, _ in pipeline_batches)
    replicas_per_pipeline = num_replicas // num_pipelines
    assert batches == [info.eval_steps * replicas_per_pipeline] * num_pipelines
    assert total_weight == info.num_eval_examples
    assert info.eval_batch_size == 256  # 4 global batches: evaluation is cheap


def test_train_fn_shards_by_pipeline_and_batches_per_replica():
    train_fn, _, _ = inputs.make_input_fns("synthetic", 8,
                                           synthetic_examples=64)
    firsts = [next(iter(train_fn(_context(2, i, 4))))[0].numpy()
              for i in range(2)]
    assert firsts[0].shape == (2, 8, 8, 1)
    # Disjoint shards: no image is in both pipelines' first batch.
    flat = [{im.tobytes() for im in first} for first in firsts]
    assert not flat[0] & flat[1]


def test_start_step_continues_the_same_stream():
    train_fn, _, _ = inputs.make_input_fns("synthetic", 16, seed=3,
                                           synthetic_examples=40)
    context = _context(1, 0, 1)
    stream = [labels for _, labels in train_fn(context).take(7)
              .as_numpy_iterator()]
    resumed = [labels for _, labels in train_fn(context, start_step=4).take(3)
               .as_numpy_iterator()]
    for expected, got in zip(stream[4:], resumed):
        np.testing.assert_array_equal(expected, got)


def test_synthetic_is_fixed_whatever_the_seed_and_learnable_shape():
    a = inputs.load_arrays("synthetic", "train", synthetic_examples=32,
                           synthetic_shape=(4, 4, 3), synthetic_classes=5)
    b = inputs.load_arrays("synthetic", "train", synthetic_examples=32,
                           synthetic_shape=(4, 4, 3), synthetic_classes=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (32, 4, 4, 3) and a[1].max() < 5


def test_eval_examples_evaluates_on_the_first_n_held_out_examples():
    _, eval_fn, info = inputs.make_input_fns("synthetic", 16, eval_examples=100)
    assert info.num_eval_examples == 100 and info.eval_steps == 1
    batches = list(eval_fn(_context(1, 0, 1)).as_numpy_iterator())
    images = np.concatenate([x[w > 0] for x, _, w in batches])
    first, _ = inputs.load_arrays("synthetic", limit=100)
    everything, _ = inputs.load_arrays("synthetic")
    assert len(everything) > 100
    np.testing.assert_array_equal(images, first)
    # More than the split holds: the whole split.
    _, _, info = inputs.make_input_fns("synthetic", 16, eval_examples=10**6)
    assert info.num_eval_examples == len(everything)


def test_streams_are_not_autotuned():
    # Deleting an autotuned iterator can wait up to a minute for its tuning
    # thread (see inputs._options); every stream turns autotuning off.
    train_fn, eval_fn, _ = inputs.make_input_fns("synthetic", 16)
    for data in (train_fn(_context(1, 0, 1)), eval_fn(_context(1, 0, 1))):
        assert data.options().autotune.enabled is False


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="global_batch_size=0"):
        inputs.make_input_fns("synthetic", 0)
    with pytest.raises(ValueError, match="eval_examples=0"):
        inputs.make_input_fns("synthetic", 16, eval_examples=0)
    with pytest.raises(ValueError, match="split='validation'"):
        inputs.load_arrays("synthetic", "validation")


def test_distorted_digits_splits_are_deterministic_and_disjoint():
    from keras_net2net.data import distorted_digits
    train, test = (distorted_digits.source_indices(s) for s in ("train", "test"))
    assert (len(train), len(test)) == (20_118, 2_160)
    # No test image is a distortion of a digit that a training image comes from.
    assert not set(train) & set(test)
    first, labels, source = distorted_digits.make_split("test", limit=12)
    again, _, _ = distorted_digits.make_split("test", limit=12)
    np.testing.assert_array_equal(first, again)
    assert first.shape == (12, 16, 16, 1) and first.dtype == np.uint8
    np.testing.assert_array_equal(source, test[:12])
    # Copies of one digit differ (each is its own distortion), and the
    # training stream draws other distortions than the test stream.
    assert len({image.tobytes() for image in first}) == 12
    from sklearn import datasets
    np.testing.assert_array_equal(labels, datasets.load_digits().target[test[:12]])


def test_stdlib_bytes_splits_are_deterministic_disjoint_and_large_enough():
    from keras_net2net.data import stdlib_text
    train_keys, train = stdlib_text.windows("train")
    test_keys, test = stdlib_text.windows("test")
    again_keys, again = stdlib_text.windows("test")
    assert test_keys == again_keys
    np.testing.assert_array_equal(test, again)
    assert len(test) >= 2000 and len(train) >= 10 * len(test)
    assert test.shape[1] == stdlib_text.WINDOW and test.max() < stdlib_text.VOCAB
    # Whole files go to one split, so no held-out window shares text with a
    # training window by construction.
    files = lambda keys: {key.split(":")[0] for key in keys}
    assert not files(train_keys) & files(test_keys)
    assert len(set(train_keys) | set(test_keys)) == len(train_keys) + len(test_keys)


def test_large_stdlib_bytes_reads_packages_but_not_tests():
    from keras_net2net.data import stdlib_text
    config = next(c for c in stdlib_text.StdlibBytes.BUILDER_CONFIGS if c.name == "large")
    train_keys, train = stdlib_text.windows("train", config.max_bytes, config.recursive)
    test_keys, _ = stdlib_text.windows("test", config.max_bytes, config.recursive)
    _, default = stdlib_text.windows("train")
    # The study's longest grown run (full profile: 4,860 teacher + 2,160
    # student steps of 32 windows) reads no window twice.
    assert len(train) > (4860 + 2160) * 32 > 3 * len(default)
    files = lambda keys: {key.split(":")[0] for key in keys}
    assert not files(train_keys) & files(test_keys)
    assert any(os.sep in f for f in files(train_keys))  # packages are read
    assert not any({"test", "tests", "site-packages"} & set(f.split(os.sep)[:-1])
                   for f in files(train_keys) | files(test_keys))
    # The top-level files keep their keys and split: none of "default"'s
    # training files is held out here.
    default_train = files(stdlib_text.windows("train")[0])
    assert default_train & files(train_keys) and not default_train & files(test_keys)
