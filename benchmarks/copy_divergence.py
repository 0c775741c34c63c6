r"""Do the copies of a widened unit separate, or does the student train as a
narrower model? A diagnostic for the width initialisations of issue 23.

Trains the demo's byte-level GPT teacher, grows it (x2 wide, each block
followed by an identity copy: the savings study's `both` arm) with each
width initialisation, trains each student with a fresh Adam (linear warmup,
then a constant rate), and every `--every` steps measures, for each new unit
j and the teacher unit g(j) it was made from (the mapping of
`ExpansionReport.mappings()`):

- the cosine between their incoming weights (FFN hidden units: `ffn_in`
  kernel columns; residual-stream channels: the columns `ffn_out` writes);
- the correlation of their activations over a probe batch (FFN: after the
  GELU; stream: the block's output);
- the student's loss on that batch (256 held-out windows), the teacher's
  as `teacher_loss`: the rise after growth, if any.

1.0 at both means the pair is one unit in two places (the student computes
as the narrower teacher does); fresh units start near 0. Means over pairs
of block 1 (the teacher's first block, grown in place).

    python benchmarks/copy_divergence.py                 # ~5 min, 2 cores
    python benchmarks/copy_divergence.py --inits=copy,fresh --student_steps=720
"""

import json
import os

from absl import app
from absl import flags

FLAGS = flags.FLAGS
INITS = {
    # name: expand_model keywords
    "copy_noise0": dict(noise=0.0),
    "copy": dict(noise=0.5),
    "split": dict(noise=0.5, split="random"),
    "fresh": dict(noise=0.5, new_units="fresh"),
    "fresh_split": dict(noise=0.5, new_units="fresh", split="random"),
}


def define_flags():
    flags.DEFINE_list("inits", list(INITS), f"Width initialisations: {', '.join(INITS)}.")
    flags.DEFINE_integer("teacher_steps", 600, "Teacher training steps.")
    flags.DEFINE_integer("student_steps", 360, "Student training steps.")
    flags.DEFINE_integer("every", 40, "Measure every this many student steps.")
    flags.DEFINE_float("learning_rate", 4e-3, "Peak rate (2x the study's base, the "
                       "rate its sweep chose).")
    flags.DEFINE_integer("seed", 0, "Seed of the data, the teacher and the growth.")
    flags.DEFINE_string("data_dir", "runs/tensorflow_datasets", "TFDS data directory.")
    flags.DEFINE_string("out", "runs/copy_divergence.json", "Where the series go.")


def _schedule(rate, warmup=10):
    """Linear warmup over `warmup` steps, then (in effect) constant: a
    built-in schedule, so that the compiled teacher clones."""
    import keras

    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=10**9, warmup_target=rate, warmup_steps=warmup)


def _compile(model, rate):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(_schedule(rate)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def _train(model, batches, steps):
    for _ in range(steps):
        x, y = next(batches)
        model.train_on_batch(x, y)


def _pairs(mapping, old):
    """(new positions, their teacher units): the positions past the old
    width (the first `old` positions are the teacher's units)."""
    import numpy as np

    g = np.asarray(mapping)
    return np.arange(old, len(g)), g[old:]


def _cos(a, b):
    import numpy as np

    num = np.sum(a * b, axis=0)
    den = np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def _corr(a, b):
    import numpy as np

    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt(np.sum(a * a, 0) * np.sum(b * b, 0))
    return float(np.mean(np.sum(a * b, 0) / np.maximum(den, 1e-12)))


def _loss(model, tokens, labels):
    import keras
    import numpy as np

    logits = model(tokens)
    return float(np.mean(keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)))


def measure(student, tokens, maps, width, labels=None):
    import keras
    import numpy as np

    probe = keras.Model(student.input, [student.get_layer("block1_ffn_in").output,
                                        student.get_layer("block1_res2").output])
    hidden, stream = (np.asarray(t).reshape(-1, t.shape[-1]) for t in probe(tokens))
    ffn_in = student.get_layer("block1_ffn_in").get_weights()[0]
    ffn_out = student.get_layer("block1_ffn_out").get_weights()[0]
    out = {} if labels is None else {"loss": _loss(student, tokens, labels)}
    new, src = _pairs(maps["block1_ffn_in"], 4 * width)
    out["ffn_weight_cos"] = _cos(ffn_in[:, new], ffn_in[:, src])
    out["ffn_activation_corr"] = _corr(hidden[:, new], hidden[:, src])
    new, src = _pairs(maps["token_embedding"], width)
    out["stream_weight_cos"] = _cos(ffn_out[:, new],
                                    ffn_out[:, src])
    out["stream_activation_corr"] = _corr(stream[:, new], stream[:, src])
    return out


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    import keras_net2net as n2n
    from keras_net2net import choices
    from keras_net2net import models
    from keras_net2net.data import inputs

    train_fn, eval_fn, info = inputs.make_input_fns(
        choices.STDLIB_BYTES, 32, data_dir=FLAGS.data_dir, seed=FLAGS.seed, eval_examples=256)
    context = tf.distribute.InputContext()
    batches = list(eval_fn(context))  # the 256 held-out windows
    probe_tokens = tf.concat([b[0] for b in batches], 0)
    probe_labels = tf.concat([b[1] for b in batches], 0)
    print("probe windows", int(probe_tokens.shape[0]), flush=True)
    keras.utils.set_random_seed(FLAGS.seed)
    width = 32
    teacher = models.build_model("gpt", info.input_shape, info.num_classes, width=width,
                                 depth=2)
    _compile(teacher, FLAGS.learning_rate)
    stream = iter(train_fn(context))
    _train(teacher, stream, FLAGS.teacher_steps)
    teacher_loss = _loss(teacher, probe_tokens, probe_labels)
    print("teacher loss", round(teacher_loss, 3), flush=True)
    deepen = {(f"block{i}_ln1", f"block{i}_res2"): 1 for i in (1, 2)}
    results = {}
    for name in FLAGS.inits:
        student, report = n2n.expand_model(teacher, widen=2.0, deepen=deepen,
                                           seed=FLAGS.seed, return_report=True, **INITS[name])
        maps = report.mappings()
        _compile(student, FLAGS.learning_rate)
        data = iter(train_fn(context, start_step=FLAGS.teacher_steps))
        series = []
        for step in range(0, FLAGS.student_steps + 1, FLAGS.every):
            if step:
                _train(student, data, FLAGS.every)
            row = {"step": step, **measure(student, probe_tokens, maps, width, probe_labels)}
            series.append(row)
            print(name, {k: round(v, 3) if isinstance(v, float) else v
                         for k, v in row.items()}, flush=True)
        results[name] = {"options": INITS[name], "teacher_loss": teacher_loss, "exact": report.verification["exact"],
                         "series": series}
    os.makedirs(os.path.dirname(FLAGS.out) or ".", exist_ok=True)
    with open(FLAGS.out, "w") as f:
        json.dump({"teacher_steps": FLAGS.teacher_steps, "learning_rate": FLAGS.learning_rate,
                   "seed": FLAGS.seed, "results": results}, f, indent=1)
    keys = ("loss", "ffn_weight_cos", "ffn_activation_corr", "stream_weight_cos",
            "stream_activation_corr")
    print("\ninit          step " + " ".join(f"{k:>22}" for k in keys))
    for name, r in results.items():
        for row in (r["series"][0], r["series"][len(r["series"]) // 2], r["series"][-1]):
            print(f"{name:<13} {row['step']:>4} " + " ".join(f"{row[k]:>22.3f}" for k in keys))


if __name__ == "__main__":
    define_flags()
    app.run(main)
