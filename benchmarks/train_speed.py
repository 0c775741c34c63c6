r"""Training throughput: the custom tf.distribute loop vs `model.fit`.

Same model, same tf.data pipeline, same optimizer, same one-device strategy;
then the custom loop on a mirrored strategy over two logical CPU devices.
Prints examples/s for each and the ratios.

    python benchmarks/train_speed.py --steps=2000 --repeats=3

`steps_per_call` is how many steps one `tf.function` call runs: `model.fit`'s
`steps_per_execution`, and the custom loop's chunk between log lines. Both
sides are measured at 1 (the fit default) and at a larger value.
"""

import statistics
import time

from absl import app
from absl import flags
import keras
import tensorflow as tf

from keras_net2net import models
from keras_net2net.data import inputs
from keras_net2net.training import loop
from keras_net2net.training import strategy as strategy_lib

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("model", "cnn", "Built-in architecture.")
    flags.DEFINE_list("widths", ["16", "32", "64"], "Layer widths.")
    flags.DEFINE_string("dataset", "synthetic", "Data set (see net2net-train).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_integer("global_batch_size", 128, "Examples per step.")
    flags.DEFINE_integer("steps", 1000, "Timed steps per measurement.")
    flags.DEFINE_integer("repeats", 3, "Measurements per arm; the median "
                         "is reported.")
    flags.DEFINE_list("steps_per_call", ["1", "50"], "Steps per tf.function "
                      "call to compare at.")


def _build(info):
    keras.utils.set_random_seed(0)
    return models.build_model(FLAGS.model, info.input_shape, info.num_classes,
                              widths=[int(w) for w in FLAGS.widths])


def _custom_loop(strategy, train_fn, eval_fn, info, steps_per_call):
    """Returns run(steps) training the custom loop, already traced."""
    with strategy.scope():
        model = _build(info)
        optimizer = keras.optimizers.Adam(1e-3)
    trainer = loop.Trainer(strategy, model, optimizer, train_fn, eval_fn, info,
                           FLAGS.global_batch_size)
    iterator = trainer.train_iterator(start_step=0)

    def run(steps):
        for _ in range(steps // steps_per_call):
            trainer.train_steps(iterator, steps_per_call)

    run(steps_per_call)  # Trace outside the timing.
    return run


def _fit(strategy, train_fn, info, steps_per_call):
    """Returns run(steps) training with model.fit, already traced."""
    with strategy.scope():
        model = _build(info)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"], steps_per_execution=steps_per_call,
            jit_compile=False)
    # The very same pipeline the custom loop reads, as one replica sees it.
    data = train_fn(tf.distribute.InputContext())

    def run(steps):
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)

    run(steps_per_call)
    return run


def _rate(run):
    began = time.perf_counter()
    run(FLAGS.steps)
    return FLAGS.steps * FLAGS.global_batch_size / (time.perf_counter() - began)


def main(argv):
    del argv
    # Before anything touches TensorFlow's devices.
    strategy_lib.configure_cpu_devices(2)
    one_device = strategy_lib.get_strategy("one_device")
    mirrored = strategy_lib.get_strategy("mirrored")
    train_fn, eval_fn, info = inputs.make_input_fns(
        FLAGS.dataset, FLAGS.global_batch_size, data_dir=FLAGS.data_dir)
    print(f"model={FLAGS.model} widths={','.join(FLAGS.widths)} "
          f"dataset={FLAGS.dataset} global_batch_size={FLAGS.global_batch_size}"
          f" steps={FLAGS.steps}; medians of {FLAGS.repeats} interleaved "
          "repeats (ratios per repeat)")
    print(f"{'steps/call':>10} {'fit ex/s':>10} {'loop ex/s':>10} "
          f"{'loop/fit':>9} {'mirrored2 ex/s':>15} {'mirrored/one':>13}")
    for steps_per_call in (int(s) for s in FLAGS.steps_per_call):
        runs = {"fit": _fit(one_device, train_fn, info, steps_per_call),
                "loop": _custom_loop(one_device, train_fn, eval_fn, info,
                                     steps_per_call),
                "mirrored": _custom_loop(mirrored, train_fn, eval_fn, info,
                                         steps_per_call)}
        rates = {name: [] for name in runs}
        # Interleaved, so that a busy moment on the machine hits every arm.
        for _ in range(FLAGS.repeats):
            for name, run in runs.items():
                rates[name].append(_rate(run))
        median = {name: statistics.median(r) for name, r in rates.items()}
        loop_vs_fit = statistics.median(
            l / f for l, f in zip(rates["loop"], rates["fit"]))
        scaling = statistics.median(
            m / l for m, l in zip(rates["mirrored"], rates["loop"]))
        print(f"{steps_per_call:>10} {median['fit']:>10.0f} "
              f"{median['loop']:>10.0f} {loop_vs_fit:>8.2f}x "
              f"{median['mirrored']:>15.0f} {scaling:>12.2f}x")


if __name__ == "__main__":
    define_flags()
    app.run(main)
