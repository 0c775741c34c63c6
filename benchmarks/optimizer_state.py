r"""Training loss across a growth step: carried optimizer state vs a fresh one.

A model trains with Adam; at --grow_at it grows (Net2Net: the function is
unchanged) and trains --after more steps in four arms on the same batches:

- carried: `keras_net2net.expand_optimizer` (slots mapped, step continues);
- fresh: a new Adam for the student (step count 0: Adam's own warm-up);
- zero_slots: a new Adam whose step count continues but whose slots are
  zero (what resetting the state inside a run gives: Keras bias-corrects
  with the global step, so every first update is ~3 learning rates);
- no_growth: the teacher keeps training.

Two models (--model):

- cnn: a digits CNN (widths 8, 16), grown with --widen and --deepen
  (default: conv2);
- transformer: a character-level language model on this Python's own
  standard-library sources (the text is already on the machine): byte
  embeddings plus position embeddings, two pre-LN blocks (causal
  multi-head self-attention, 4 heads of 8; GELU feed-forward of 64) of
  width 32, a final LayerNorm and next-byte logits, trained on random
  windows of --seq_len bytes. Grown with --widen (2.0 copies; 1.5 takes
  LayerNorm's mean-padding path); --deepen is empty by default.

Prints, averaged over seeds, the mean training loss over the first 10 and
the 100 steps after growth, the largest loss in the first 10, and writes the
per-step curves as JSON (--output).

    python benchmarks/optimizer_state.py --seeds=0,1,2 --output=/tmp/curves.json
    python benchmarks/optimizer_state.py --model=transformer --widen=1.5
"""

import glob
import json
import os
import sysconfig

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
    flags.DEFINE_enum("model", "cnn", ["cnn", "transformer"], "The model that grows.")
    flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds to average over.")
    flags.DEFINE_integer("grow_at", 300, "Teacher steps before growth.")
    flags.DEFINE_integer("after", 100, "Steps after growth.")
    flags.DEFINE_integer("batch_size", 32, "Examples per step.")
    flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
    flags.DEFINE_string("widen", "2.0", "Growth: widen factor.")
    flags.DEFINE_list("deepen", None, "Growth: layers to deepen after (default: conv2 "
                      "for the cnn, none for the transformer).")
    flags.DEFINE_integer("seq_len", 64, "transformer: bytes per training window.")
    flags.DEFINE_integer("text_bytes", 2_000_000, "transformer: bytes of stdlib "
                         "source to train on.")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_string("output", None, "Where to write the curves (JSON).")


VOCAB = 128  # bytes; the few non-ASCII ones are mapped to 0


def _batches(data, steps, batch_size, seed):
    """Random training batches: of (images, labels) for the cnn; of byte
    windows (inputs, next bytes) for the transformer."""
    rng = np.random.default_rng(seed)
    if FLAGS.model == "cnn":
        images, labels = data
        for _ in range(steps):
            index = rng.integers(0, len(labels), batch_size)
            yield images[index], labels[index]
        return
    length = FLAGS.seq_len
    for _ in range(steps):
        starts = rng.integers(0, len(data) - length - 1, batch_size)
        windows = data[starts[:, None] + np.arange(length + 1)]
        yield windows[:, :-1], windows[:, 1:]


def load_text(limit):
    """The first `limit` bytes of this Python's stdlib sources, as int32 byte
    values below VOCAB (files in sorted order)."""
    chunks, size = [], 0
    for path in sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py"))):
        with open(path, "rb") as f:
            chunks.append(f.read())
        size += len(chunks[-1])
        if size >= limit:
            break
    data = np.frombuffer(b"".join(chunks)[:limit], dtype=np.uint8).astype(np.int32)
    data[data >= VOCAB] = 0
    return data


def char_lm(length, dim=32, heads=4, key_dim=8, ffn=64, blocks=2):
    """A pre-LN causal transformer over bytes: next-byte logits at every
    position. Position ids are computed from the input, so that the position
    embedding is a layer of the graph rather than a folded constant."""
    layers = keras.layers
    tokens = keras.Input((length,), dtype="int32", name="bytes")
    positions = 0 * tokens + keras.ops.arange(length, dtype="int32")
    x = layers.Embedding(VOCAB, dim, name="byte_embedding")(tokens)
    x = x + layers.Embedding(length, dim, name="position_embedding")(positions)
    for b in range(1, blocks + 1):
        h = layers.LayerNormalization(name=f"block{b}_ln1")(x)
        h = layers.MultiHeadAttention(heads, key_dim, name=f"block{b}_mha")(
            h, h, use_causal_mask=True)
        x = layers.Add(name=f"block{b}_res1")([x, h])
        h = layers.LayerNormalization(name=f"block{b}_ln2")(x)
        h = layers.Dense(ffn, activation="gelu", name=f"block{b}_ffn_in")(h)
        h = layers.Dense(dim, name=f"block{b}_ffn_out")(h)
        x = layers.Add(name=f"block{b}_res2")([x, h])
    x = layers.LayerNormalization(name="final_ln")(x)
    return keras.Model(tokens, layers.Dense(VOCAB, name="logits")(x), name="char_lm")


def _deepen():
    if FLAGS.deepen is not None:
        return FLAGS.deepen or None
    return ["conv2"] if FLAGS.model == "cnn" else None


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


def run_seed(seed, data):
    keras.utils.set_random_seed(seed)
    if FLAGS.model == "cnn":
        teacher = models.build_model("cnn", data[0].shape[1:], 10, widths=[8, 16])
    else:
        teacher = char_lm(FLAGS.seq_len)
    optimizer = keras.optimizers.Adam(FLAGS.learning_rate)
    _trainer(teacher, optimizer)(_batches(data, FLAGS.grow_at, FLAGS.batch_size, seed))
    after = list(_batches(data, FLAGS.after, FLAGS.batch_size, seed + 1000))
    curves = {}
    for arm in ARMS:
        if arm == "no_growth":
            model, arm_optimizer = _continue(teacher, optimizer)
        else:
            model = n2n.expand_model(teacher, widen=float(FLAGS.widen), deepen=_deepen(),
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
                    "max_first10": float(mean[:10].max()), "curve": mean.tolist(),
                    "first10_per_seed": losses[:, :10].mean(axis=1).tolist(),
                    "first100_per_seed": losses.mean(axis=1).tolist()}
    return out


def main(argv):
    del argv
    if FLAGS.model == "cnn":
        data = inputs.load_arrays("digits", "train", data_dir=FLAGS.data_dir)
        what = "digits CNN"
    else:
        data = load_text(FLAGS.text_bytes)
        what = (f"byte-level transformer LM on {len(data):,} bytes of stdlib source, "
                f"windows of {FLAGS.seq_len}")
    runs = [run_seed(int(s), data) for s in FLAGS.seeds]
    summary = summarise(runs)
    print(f"{what}, Adam lr {FLAGS.learning_rate}, batch {FLAGS.batch_size}, grown at step "
          f"{FLAGS.grow_at} (widen {FLAGS.widen}, deepen {_deepen()}), mean of {len(runs)} "
          f"seeds:")
    print(f"{'arm':<12}{'loss 1-10':>11}{'max 1-10':>10}{'loss 1-100':>12}"
          f"   per seed: loss 1-10 | loss 1-100")
    for arm, row in summary.items():
        print(f"{arm:<12}{row['first10']:>11.4f}{row['max_first10']:>10.4f}"
              f"{row['first100']:>12.4f}   "
              + " ".join(f"{v:.4f}" for v in row["first10_per_seed"]) + " | "
              + " ".join(f"{v:.4f}" for v in row["first100_per_seed"]))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump({"settings": {**{k: FLAGS[k].value for k in (
                "model", "seeds", "grow_at", "after", "batch_size", "learning_rate", "widen",
                "seq_len", "text_bytes")}, "deepen": _deepen()},
                "arms": summary}, f, indent=1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
