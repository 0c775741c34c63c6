r"""Training loss across a growth step: carried optimizer state vs a fresh one.

A digits CNN trains with Adam; at --grow_at it grows (Net2Net: the function
is unchanged) and trains --after more steps in four arms on the same batches:

- carried: `keras_net2net.expand_optimizer` (slots mapped, step continues);
- fresh: a new Adam for the student (step count 0: Adam's own warm-up);
- zero_slots: a new Adam whose step count continues but whose slots are
  zero (what resetting the state inside a run gives: Keras bias-corrects
  with the global step, so every first update is ~3 learning rates);
- no_growth: the teacher keeps training.

Prints, averaged over seeds, the mean training loss over the first 10 and
the 100 steps after growth, the largest loss in the first 10, and writes the
per-step curves as JSON (--output).

    python benchmarks/optimizer_state.py --seeds=0,1,2 --output=/tmp/curves.json
"""

import json

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

import keras_net2net as n2n
from keras_net2net import models
from keras_net2net.data import inputs

FLAGS = flags.FLAGS
ARMS = ("carried", "fresh", "zero_slots", "no_growth")


def define_flags():
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to average over.")
    flags.DEFINE_integer("grow_at", 300, "Teacher steps before growth.")
    flags.DEFINE_integer("after", 100, "Steps after growth.")
    flags.DEFINE_integer("batch_size", 32, "Examples per step.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
    flags.DEFINE_string("widen", "2.0", "Growth: widen factor.")
    flags.DEFINE_list("deepen", ["conv2"], "Growth: layers to deepen after.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_string("output", None, "Where to write the curves (JSON).")


def _batches(images, labels, steps, batch_size, seed):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        index = rng.integers(0, len(labels), batch_size)
        yield images[index], labels[index]


def _trainer(model, optimizer):
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda batches: [float(step(x, y)) for x, y in batches]


def run_seed(seed, images, labels):
    keras.utils.set_random_seed(seed)
    teacher = models.build_model("cnn", images.shape[1:], 10, widths=[8, 16])
    optimizer = keras.optimizers.Adam(FLAGS.learning_rate)
    _trainer(teacher, optimizer)(_batches(images, labels, FLAGS.grow_at,
                                          FLAGS.batch_size, seed))
    after = list(_batches(images, labels, FLAGS.after, FLAGS.batch_size, seed + 1000))
    curves = {}
    for arm in ARMS:
        if arm == "no_growth":
            model, arm_optimizer = _continue(teacher, optimizer)
        else:
            model = n2n.expand_model(teacher, widen=float(FLAGS.widen), deepen=FLAGS.deepen,
                                     seed=seed)
            if arm == "carried":
                arm_optimizer = n2n.expand_optimizer(optimizer, model)
            else:
                arm_optimizer = keras.optimizers.Adam(FLAGS.learning_rate)
                arm_optimizer.build(model.trainable_variables)
                if arm == "zero_slots":
                    arm_optimizer.iterations.assign(optimizer.iterations)
        curves[arm] = _trainer(model, arm_optimizer)(after)
    return curves


def _continue(teacher, optimizer):
    """The teacher and a copy of its optimizer state, so that each arm starts
    from the same point (the teacher itself is grown by the other arms)."""
    model = keras.models.clone_model(teacher)
    model.set_weights(teacher.get_weights())
    copy = keras.optimizers.Adam.from_config(optimizer.get_config())
    copy.build(model.trainable_variables)
    for a, b in zip(copy.variables, optimizer.variables):
        a.assign(b)
    return model, copy


def summarise(runs):
    out = {}
    for arm in ARMS:
        losses = np.array([run[arm] for run in runs])  # seeds x steps
        mean = losses.mean(axis=0)
        out[arm] = {"first10": float(mean[:10].mean()), "first100": float(mean.mean()),
                    "max_first10": float(mean[:10].max()), "curve": mean.tolist()}
    return out


def main(argv):
    del argv
    images, labels = inputs.load_arrays("digits", "train", data_dir=FLAGS.data_dir)
    runs = [run_seed(int(s), images, labels) for s in FLAGS.seeds]
    summary = summarise(runs)
    print(f"digits CNN, Adam lr {FLAGS.learning_rate}, grown at step {FLAGS.grow_at} "
          f"(widen {FLAGS.widen}, deepen {FLAGS.deepen}), mean of {len(runs)} seeds:")
    print(f"{'arm':<12}{'loss 1-10':>11}{'max 1-10':>10}{'loss 1-100':>12}")
    for arm, row in summary.items():
        print(f"{arm:<12}{row['first10']:>11.4f}{row['max_first10']:>10.4f}"
              f"{row['first100']:>12.4f}")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"settings": {k: FLAGS[k].value for k in (
                "seeds", "grow_at", "after", "batch_size", "learning_rate", "widen", "deepen")},
                "arms": summary}, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
