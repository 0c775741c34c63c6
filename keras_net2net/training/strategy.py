"""Distribution strategies and numeric precision, chosen by name.

`get_strategy` is the one place that maps a `--strategy` flag to a
`tf.distribute.Strategy`; everything downstream only sees the strategy.

```python
configure_cpu_devices(2)            # before TensorFlow runs anything
strategy = get_strategy("mirrored")
with strategy.scope():
    model = ...                       # variables are mirrored on both devices
```
"""

import json
import os

import keras
import tensorflow as tf

from keras_net2net import choices

STRATEGIES = choices.STRATEGIES
PRECISIONS = choices.PRECISIONS


def configure_cpu_devices(num_devices):
    """Splits the host CPU into `num_devices` logical devices.

    Lets mirrored and multi-device code run, and be tested, without GPUs. It
    must run before TensorFlow initialises its devices, i.e. before the first
    op, strategy or variable.

    Args:
        num_devices: number of logical CPU devices; 1 leaves the CPU as it is.

    Raises:
        ValueError: if `num_devices` < 1.
        RuntimeError: if TensorFlow has already initialised its devices.

    Example:
    >>> configure_cpu_devices(1)  # a no-op, safe at any time
    """
    if num_devices < 1:
        raise ValueError("Expected num_cpu_devices >= 1. "
                         f"Received: num_cpu_devices={num_devices}")
    if num_devices == 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as error:
        raise RuntimeError(
            "Cannot split the CPU into logical devices after TensorFlow has "
            "initialised them; configure num_cpu_devices before creating any "
            f"tensor or strategy. Received: num_cpu_devices={num_devices}"
        ) from error


def get_strategy(name, *, num_gpus=0, tpu=None):
    """Returns the distribution strategy for a `--strategy` flag value.

    Args:
        name: one of `STRATEGIES`:
            "default": TensorFlow's default (no distribution, current device).
            "one_device": everything on /gpu:0 if `num_gpus` > 0, else /cpu:0.
            "mirrored": synchronous data parallelism on `num_gpus` GPUs, or on all
                logical CPU devices when `num_gpus` is 0 (see
                `configure_cpu_devices`).
            "multi_worker": `MultiWorkerMirroredStrategy`; the cluster and this
                process's task come from the TF_CONFIG environment variable.
            "tpu": `TPUStrategy` on the TPU named by `tpu` ("" or "local" for a
                TPU VM).
        num_gpus: GPUs to use for "one_device" and "mirrored".
        tpu: TPU address or name, for "tpu".

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: if `name` is unknown, `num_gpus` exceeds the GPUs present, or
            "multi_worker" runs without a valid TF_CONFIG.

    Example:
    >>> get_strategy("one_device").num_replicas_in_sync
    1
    """
    if name not in STRATEGIES:
        raise ValueError(f"Expected strategy in {STRATEGIES}. "
                         f"Received: strategy={name!r}")
    # Physical, not logical: listing logical devices initialises TensorFlow,
    # after which multi-worker collectives can no longer be configured.
    num_present = len(tf.config.list_physical_devices("GPU"))
    if num_gpus > num_present:
        raise ValueError(
            f"Expected num_gpus <= {num_present}, the GPUs on this machine. "
            f"Received: num_gpus={num_gpus}")
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    if name == "mirrored":
        devices = ([f"/gpu:{i}" for i in range(num_gpus)] if num_gpus else
                   [cpu.name for cpu in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def task_info(strategy):
    """Returns (task_type, task_id, is_chief) of this process.

    Args:
        strategy: a `tf.distribute.Strategy`.

    Returns:
        A tuple; single-process strategies report ("worker", 0, True).
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "worker", 0, True
    task_type, task_id = resolver.task_type, resolver.task_id or 0
    # With no explicit chief in TF_CONFIG, worker 0 plays the chief's role.
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
    return task_type, task_id, is_chief


def set_precision(policy):
    """Sets Keras' global dtype policy from a `--mixed_precision` value.

    Args:
        policy: "none" (float32), "mixed_float16" or "mixed_bfloat16". Must be
            set before the model is built.

    Raises:
        ValueError: if `policy` is unknown.
    """
    if policy not in PRECISIONS:
        raise ValueError(f"Expected mixed_precision in {PRECISIONS}. "
                         f"Received: mixed_precision={policy!r}")
    keras.mixed_precision.set_global_policy(
        "float32" if policy == "none" else policy)


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "Expected the TF_CONFIG environment variable to describe the cluster "
            "for strategy=multi_worker, e.g. {\"cluster\": {\"worker\": "
            "[\"host1:port\", \"host2:port\"]}, \"task\": {\"type\": \"worker\", "
            "\"index\": 0}}. Received: TF_CONFIG unset")
    try:
        config = json.loads(raw)
    except ValueError:
        config = None
    if not (isinstance(config, dict) and "cluster" in config
            and "type" in (config.get("task") or {})):
        raise ValueError(
            "Expected TF_CONFIG to be JSON with 'cluster' and 'task' entries. "
            f"Received: TF_CONFIG={raw!r}")
