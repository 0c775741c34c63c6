"""Optimizers by `--optimizer` name."""

import keras

from keras_net2net import choices

OPTIMIZERS = choices.OPTIMIZERS


def make_optimizer(name, learning_rate, *, loss_scale=False):
    """Builds a Keras optimizer; create it under the strategy's scope.

    Args:
        name: one of `OPTIMIZERS`; "momentum" is SGD with Nesterov momentum 0.9.
        learning_rate: a float, or a
            `keras.optimizers.schedules.LearningRateSchedule` (see
            `keras_net2net.training.schedules`).
        loss_scale: wrap it in a dynamic `LossScaleOptimizer`, as float16 needs
            so that small gradients do not underflow.

    Returns:
        A `keras.optimizers.Optimizer`.

    Raises:
        ValueError: if `name` or `learning_rate` is invalid.

    Example:
    >>> make_optimizer("sgd", 0.1).learning_rate.numpy()
    0.1
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"Expected optimizer in {OPTIMIZERS}. "
                         f"Received: optimizer={name!r}")
    if not isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) \
            and not learning_rate > 0:
        raise ValueError("Expected learning_rate > 0. "
                         f"Received: learning_rate={learning_rate}")
    if name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate)
    elif name == "momentum":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9,
                                         nesterov=True)
    else:
        optimizer = keras.optimizers.RMSprop(learning_rate)
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scale else (
        optimizer)
