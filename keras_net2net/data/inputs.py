"""Input pipelines for `strategy.distribute_datasets_from_function`.

`make_input_fns` returns a training and an evaluation function, each taking a
`tf.distribute.InputContext`, plus an `InputInfo` describing the data. Every
input pipeline reads its own shard and batches at the per-replica batch size,
so one global batch is split across replicas and workers without overlap.

```python
train_fn, eval_fn, info = make_input_fns("digits", global_batch_size=64,
                                         data_dir="/tmp/tfds")
strategy = tf.distribute.get_strategy()
train_data = strategy.distribute_datasets_from_function(train_fn)
```
"""

import dataclasses
import functools
import math
import os

import numpy as np
import tensorflow as tf

from keras_net2net import choices

DIGITS = choices.DIGITS
DISTORTED_DIGITS = choices.DISTORTED_DIGITS
STDLIB_BYTES = choices.STDLIB_BYTES
SYNTHETIC = choices.SYNTHETIC
DEFAULT_DATA_DIR = choices.DEFAULT_DATA_DIR
# Shuffle buffers never need to exceed this; larger data sets are shuffled
# within a window, as tf.data users usually do.
_MAX_SHUFFLE_BUFFER = 10_000
# Evaluation batches hold about this many examples (a multiple of the global
# batch size, so replicas still split them evenly): evaluation has no
# gradients, and small batches would make frequent evaluations cost more
# than training.
_EVAL_BATCH = 256
# Splits smaller than this (decoded, in float32 bytes) are cached in memory.
_MAX_CACHE_BYTES = 256 * 2**20


@dataclasses.dataclass(frozen=True)
class InputInfo:
    """What the input functions produce.

    Attributes:
        name: the data set name as given by the user.
        input_shape: shape of one example image, e.g. (8, 8, 1).
        num_classes: number of label classes.
        num_train_examples: examples in the training split.
        num_eval_examples: real (unpadded) examples in the evaluation split.
        eval_steps: evaluation batches per replica that cover the evaluation split
            once; the split is padded with zero-weight examples to fill them.
        eval_batch_size: examples per evaluation step over all replicas: the
            largest multiple of the global batch size up to 256 (at least one
            global batch).
    """
    name: str
    input_shape: tuple
    num_classes: int
    num_train_examples: int
    num_eval_examples: int
    eval_steps: int
    eval_batch_size: int = None


@dataclasses.dataclass(frozen=True)
class _Splits:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    input_shape: tuple
    num_classes: int
    num_train: int
    num_eval: int
    # Whether the decoded splits are kept in memory (`_in_memory`).
    cacheable: bool = True


def make_input_fns(dataset, global_batch_size, *, data_dir=None, seed=0,
                   synthetic_shape=(8, 8, 1),
                   synthetic_classes=10, synthetic_examples=2048,
                   eval_examples=None, eval_skip=0):
    """Builds distributed input functions for a data set.

    Args:
        dataset: "digits" (scikit-learn's bundled digits, built offline into
            `data_dir`), "distorted_digits" (20,118/2,160 distorted 16x16
            digits, built offline: `data.distorted_digits`), "stdlib_bytes"
            (32-byte windows of the Python stdlib's source as (bytes, next
            bytes) int32 pairs, 128 classes: `data.stdlib_text`; its smaller
            config for tests is "stdlib_bytes/small"), "synthetic" (random
            images whose label is a fixed linear function of the pixels, so it
            is learnable), or any TFDS name with an image/label supervised
            pair and a "test" or "validation" split.
        global_batch_size: examples per step, summed over all replicas.
        data_dir: TFDS data directory; defaults to ~/tensorflow_datasets.
        seed: shuffle seed. The training stream is a pure function of `seed`, so
            reruns see the same batches in the same order.
        synthetic_shape: example shape for "synthetic".
        synthetic_classes: number of classes for "synthetic".
        synthetic_examples: training examples for "synthetic" (a quarter as many
            are drawn for evaluation).
        eval_examples: evaluate on the first this many examples of the
            held-out split (in stored order, so always the same ones); None
            evaluates on all of it.
        eval_skip: leave out this many examples at the start of the held-out
            split first (`eval_examples` then counts from there): a
            comparison selects learning rates on one part of the split and
            reports on another.

    Returns:
        (train_fn, eval_fn, info): `train_fn(input_context, start_step=0)`
        yields an endless stream of per-replica `(images, labels)` batches,
        without the first `start_step` batches, so that a resumed run continues
        the stream where the interrupted run stopped instead of replaying it; `eval_fn(input_context)`
        yields exactly `info.eval_steps` per-replica `(images, labels, weights)`
        batches, where weight 0 marks padding; `info` is an `InputInfo`.

    Raises:
        ValueError: if `global_batch_size` or `eval_examples` is not
            positive or the data set has no evaluation split.
    """
    if global_batch_size < 1:
        raise ValueError("Expected global_batch_size >= 1. "
                         f"Received: global_batch_size={global_batch_size}")
    splits = _first_eval_examples(
        _load_splits(dataset, data_dir, tuple(synthetic_shape), synthetic_classes,
                     synthetic_examples), eval_examples, eval_skip)
    eval_batch = global_batch_size * max(1, _EVAL_BATCH // global_batch_size)
    eval_steps = max(1, math.ceil(splits.num_eval / eval_batch))
    info = InputInfo(name=dataset, input_shape=splits.input_shape,
                     num_classes=splits.num_classes,
                     num_train_examples=splits.num_train,
                     num_eval_examples=splits.num_eval, eval_steps=eval_steps,
                     eval_batch_size=eval_batch)
    shuffle_buffer = min(splits.num_train, _MAX_SHUFFLE_BUFFER)

    def train_fn(input_context, start_step=0):
        batch_size = input_context.get_per_replica_batch_size(global_batch_size)
        data = splits.train.shard(input_context.num_input_pipelines,
                                  input_context.input_pipeline_id)
        data = data.shuffle(shuffle_buffer, seed=seed,
                            reshuffle_each_iteration=True).repeat()
        data = data.batch(batch_size, drop_remainder=True)
        # Skipping whole batches is cheap for small data; for large data sets a
        # resumed run pays one pass over the skipped examples' file reads.
        return data.skip(start_step).prefetch(tf.data.AUTOTUNE).with_options(
            _options())

    def eval_fn(input_context):
        batch_size = input_context.get_per_replica_batch_size(eval_batch)
        real = splits.eval.map(lambda image, label: (image, label, 1.0))
        # Pad to whole global batches so that every replica on every worker runs
        # the same number of steps; collectives would hang otherwise.
        image_spec, label_spec = splits.eval.element_spec
        padding = tf.data.Dataset.from_tensors(
            (tf.zeros(image_spec.shape, image_spec.dtype),
             tf.zeros(label_spec.shape, label_spec.dtype), 0.0))
        padded_size = eval_steps * eval_batch
        data = real.concatenate(padding.repeat(padded_size - splits.num_eval))
        data = data.shard(input_context.num_input_pipelines,
                          input_context.input_pipeline_id)
        return data.batch(batch_size, drop_remainder=True).prefetch(
            tf.data.AUTOTUNE).with_options(_options())

    return train_fn, eval_fn, info


def load_arrays(dataset, split="eval", *, data_dir=None, limit=None,
                synthetic_shape=(8, 8, 1), synthetic_classes=10,
                synthetic_examples=2048):
    """Returns a split of a data set as NumPy arrays, in stored order.

    Args:
        dataset: a data set name accepted by `make_input_fns`.
        split: "train" or "eval" (the held-out split `make_input_fns` evaluates
            on).
        data_dir: TFDS data directory.
        limit: read at most this many examples; None reads the whole split.
        synthetic_shape: as for `make_input_fns`.
        synthetic_classes: as for `make_input_fns`.
        synthetic_examples: as for `make_input_fns`.

    Returns:
        (images, labels): float32 images scaled like the training inputs and
        int32 labels (for "stdlib_bytes": int32 byte windows and next bytes).

    Raises:
        ValueError: if `split` is not "train" or "eval".

    Example:
    >>> images, labels = load_arrays("synthetic", synthetic_examples=40)
    >>> images.shape, labels.shape
    ((10, 8, 8, 1), (10,))
    """
    if split not in ("train", "eval"):
        raise ValueError(f"Expected split 'train' or 'eval'. Received: "
                         f"split={split!r}")
    splits = _load_splits(dataset, data_dir, tuple(synthetic_shape),
                          synthetic_classes, synthetic_examples)
    data = splits.train if split == "train" else splits.eval
    if limit is not None:
        data = data.take(limit)
    images, labels = [], []
    for image, label in data.batch(1024).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    return np.concatenate(images), np.concatenate(labels)


def _options():
    """No autotuning: an autotuned iterator's model thread sleeps up to 60 s
    between optimisations, and deleting the iterator (a finished run's
    stream, freed by Python's collector at any later point) waits for it to
    wake. py-spy caught `make demo` idle in `~IteratorResource` ->
    `~LogicalThreadWrapper` for 60-160 s. Cached, in-memory data needs no
    tuning; prefetch keeps its default buffer."""
    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def _first_eval_examples(splits, eval_examples, eval_skip=0):
    if isinstance(eval_skip, bool) or not isinstance(eval_skip, int) or not (
            0 <= eval_skip < splits.num_eval):
        raise ValueError(f"Expected eval_skip to be a number of examples in "
                         f"[0, {splits.num_eval}) (the held-out split's size). "
                         f"Received: eval_skip={eval_skip!r}")
    if eval_skip:
        splits = dataclasses.replace(splits, eval=splits.eval.skip(eval_skip),
                                     num_eval=splits.num_eval - eval_skip)
    if eval_examples is None:
        return splits
    if isinstance(eval_examples, bool) or not isinstance(eval_examples, int) \
            or eval_examples < 1:
        raise ValueError(f"Expected eval_examples to be a positive number of "
                         f"examples or None (all). Received: "
                         f"eval_examples={eval_examples!r}")
    return dataclasses.replace(splits, eval=splits.eval.take(eval_examples),
                               num_eval=min(splits.num_eval, eval_examples))


# One process loads a data set once: the runs of a comparison (teacher,
# students, scratch twins) read the same in-memory splits.
@functools.lru_cache(maxsize=4)
def _load_splits(dataset, data_dir, synthetic_shape, synthetic_classes,
                 synthetic_examples):
    if dataset == SYNTHETIC:
        return _synthetic_splits(synthetic_shape, synthetic_classes,
                                 synthetic_examples)
    return _in_memory(_tfds_splits(dataset, data_dir))


def _in_memory(splits):
    """Caches small splits in memory, filled now by one whole pass each.

    A cache that a pass reads only in part (a run shorter than an epoch, an
    evaluation of the first N examples) is dropped when its iterator goes,
    with a tf.data warning, and the next run decodes the files again.
    """
    if not splits.cacheable:
        return splits
    train, held_out = splits.train.cache(), splits.eval.cache()
    for data in (train, held_out):
        data.batch(4096).reduce(0, lambda count, _: count + 1)
    return dataclasses.replace(splits, train=train, eval=held_out)


def _synthetic_splits(shape, num_classes, num_train):
    # Fixed seed: the synthetic data set is the same whatever the run's seed,
    # like any real data set would be.
    rng = np.random.default_rng(1234)
    num_eval = max(1, num_train // 4)
    images = rng.random((num_train + num_eval,) + shape, dtype=np.float32)
    projection = rng.standard_normal((int(np.prod(shape)), num_classes))
    centred = images.reshape(len(images), -1) - 0.5
    labels = np.argmax(centred @ projection, axis=1).astype(np.int32)

    def dataset(start, stop):
        return tf.data.Dataset.from_tensor_slices(
            (images[start:stop], labels[start:stop]))

    return _Splits(train=dataset(0, num_train),
                   eval=dataset(num_train, None), input_shape=shape,
                   num_classes=num_classes, num_train=num_train,
                   num_eval=num_eval, cacheable=False)  # In memory already.


def _tfds_splits(dataset, data_dir):
    import tensorflow_datasets as tfds  # Slow import; not needed for synthetic.
    data_dir = os.path.expanduser(data_dir or DEFAULT_DATA_DIR)
    name, _, config = dataset.partition("/")
    if name == STDLIB_BYTES:
        return _byte_splits(data_dir, config or None)
    if dataset == DIGITS:
        from keras_net2net.data import digits
        make_builder = lambda: digits.SklearnDigits(data_dir=data_dir)
        scale = float(digits.MAX_INTENSITY)
    elif dataset == DISTORTED_DIGITS:
        from keras_net2net.data import distorted_digits
        make_builder = lambda: distorted_digits.DistortedDigits(data_dir=data_dir)
        scale = 255.0
    else:
        make_builder = lambda: tfds.builder(dataset, data_dir=data_dir)
        scale = 255.0
    builder = _prepared(make_builder)
    splits = builder.info.splits
    eval_split = next((s for s in ("test", "validation") if s in splits), None)
    if eval_split is None:
        raise ValueError(
            f"Expected data set {dataset!r} to have a 'test' or 'validation' "
            f"split. Received: splits={sorted(splits)}")
    image_key, label_key = builder.info.supervised_keys
    features = builder.info.features
    input_shape = tuple(features[image_key].shape)
    if None in input_shape:
        raise ValueError(
            f"Expected data set {dataset!r} to have images of a fixed shape. "
            f"Received: shape={input_shape}")
    num_classes = features[label_key].num_classes
    cache = (splits["train"].num_examples * int(np.prod(input_shape)) * 4
             <= _MAX_CACHE_BYTES)

    def split(name):
        data = builder.as_dataset(split=name, as_supervised=True,
                                  shuffle_files=False)
        data = data.map(lambda image, label: (tf.cast(image, tf.float32) / scale,
                                              tf.cast(label, tf.int32)),
                        num_parallel_calls=tf.data.AUTOTUNE)
        return data

    return _Splits(train=split("train"), eval=split(eval_split),
                   input_shape=input_shape, num_classes=num_classes,
                   num_train=splits["train"].num_examples,
                   num_eval=splits[eval_split].num_examples, cacheable=cache)


def _byte_splits(data_dir, config):
    """Next-byte prediction pairs (bytes[:-1], bytes[1:]) of `stdlib_bytes`."""
    from keras_net2net.data import stdlib_text
    builder = _prepared(lambda: stdlib_text.StdlibBytes(data_dir=data_dir,
                                                        config=config))

    def split(name):
        data = builder.as_dataset(split=name, shuffle_files=False)
        data = data.map(lambda example: tf.cast(example["bytes"], tf.int32))
        return data.map(lambda row: (row[:-1], row[1:]))

    splits = builder.info.splits
    return _Splits(train=split("train"), eval=split("test"),
                   input_shape=(stdlib_text.WINDOW - 1,),
                   num_classes=stdlib_text.VOCAB,
                   num_train=splits["train"].num_examples,
                   num_eval=splits["test"].num_examples)


def _prepared(make_builder):
    """Returns a prepared TFDS builder, tolerating a concurrent preparation."""
    builder = make_builder()
    try:
        builder.download_and_prepare()
    except Exception:
        # Workers that share a data_dir may race to prepare it; TFDS writes to a
        # private directory and renames it, so the loser fails on the rename. If
        # the winner's copy is complete, read that; otherwise the error is real.
        if not (builder.data_path / "dataset_info.json").exists():
            raise
        builder = make_builder()
    return builder
