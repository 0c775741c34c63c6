"""Side-by-side evaluation of two classifiers on the same held-out data.

```python
images, labels = load_arrays("digits", "eval")
result = compare_models(teacher, student, images, labels)
print(format_table(result))   # accuracy, loss, agreement, params, latency
```
"""

import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from keras_net2net.training import loop


def compare_models(model_a, model_b, images, labels, *, batch_size=256,
                   latency_batches=20, names=("a", "b")):
    """Evaluates two models on the same examples and measures their agreement.

    Args:
        model_a: a `keras.Model` classifier (logits or softmax outputs).
        model_b: another one with the same input and number of classes.
        images: NumPy array of inputs.
        labels: NumPy array of integer labels.
        batch_size: examples per inference batch (also for the latency).
        latency_batches: timed batches per model; the median is reported.
        names: keys for the two models in the result.

    Returns:
        A dict: {name: {"accuracy", "loss", "params", "latency_ms_per_batch"}
        for each model, "agreement": fraction of examples where both predict the
        same class, "num_examples", "batch_size"}.

    Example:
    >>> result = compare_models(model, model, images, labels)
    >>> result["agreement"]
    1.0
    """
    result = {"num_examples": int(len(labels)), "batch_size": batch_size}
    predictions = []
    for name, model in zip(names, (model_a, model_b)):
        forward = _forward(model, images)
        outputs = _predict(forward, images, batch_size)
        predictions.append(np.argmax(outputs, axis=-1))
        result[name] = {
            "accuracy": float(np.mean(predictions[-1] == labels)),
            "loss": _cross_entropy(model, outputs, labels),
            "params": int(model.count_params()),
            "latency_ms_per_batch": _latency_ms(forward, images[:batch_size],
                                                latency_batches),
        }
    result["agreement"] = float(np.mean(predictions[0] == predictions[1]))
    return result


def format_table(result, names=("a", "b")):
    """Renders a `compare_models` result as a small text table."""
    rows = [("", *names),
            ("accuracy", *(f"{result[n]['accuracy']:.4f}" for n in names)),
            ("loss", *(f"{result[n]['loss']:.4f}" for n in names)),
            ("parameters", *(f"{result[n]['params']:,}" for n in names)),
            ("ms / batch of {}".format(result["batch_size"]),
             *(f"{result[n]['latency_ms_per_batch']:.2f}" for n in names))]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    lines.append(f"agreement: {result['agreement']:.4f} of "
                 f"{result['num_examples']} examples predict the same class")
    return "\n".join(lines)


def _forward(model, images):
    # Traced once for every batch size: eager calls of a transformer ran op
    # by op (3.7 s for 2,048 windows of the demo's GPT, against ~1 s).
    spec = tf.TensorSpec((None,) + images.shape[1:], tf.as_dtype(images.dtype))
    return tf.function(lambda x: model(x, training=False), input_signature=[spec])


def _predict(forward, images, batch_size):
    outputs = [np.asarray(forward(tf.constant(images[i:i + batch_size])))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def _cross_entropy(model, outputs, labels):
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=not loop.outputs_probabilities(model))
    return float(loss(labels, outputs))


def _latency_ms(forward, batch, repeats):
    batch = tf.constant(batch)
    forward(batch)  # Warm up outside the timing.
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        forward(batch).numpy()
        times.append(time.perf_counter() - began)
    return 1000.0 * statistics.median(times)
