r"""Does growing pay on the image task? LEMON's shape on the demo's CNN.

LEMON (Wang et al., ICLR 2024) trains the grown model on a shorter schedule
than scratch's, a fraction of scratch's budget, and asks whether it reaches
scratch's quality. Here, on `make demo`'s image task (the 4/8/16 CNN on
`distorted_digits`), with the frontier protocol of
`keras_net2net.training.comparison`:

- scratch trains --budget steps of the student's architecture, and also
  --fractions of it (each run ending in its own WSD cooldown, branched off
  one stable run per learning rate);
- each grown arm (wider: x2 channels, --widen; deeper: identity layers after the
  --deepen layers, by default one after conv2 and one after fc1; both: the
  two) gets the same compute budgets with the teacher
  counted: a student given fraction f of scratch's budget trains
  `f x budget - teacher cost` steps after growth (the teacher's steps at
  its training FLOPs per step relative to the student's), a fresh Adam with
  warmup, balanced noise 0.5 (the LM study's best recipe, unchanged);
- peak rates swept for both arms alike (--lr_sweep) on the first seed,
  chosen per budget on the selection half of the held-out split; every
  accuracy reported on the other half; --seeds seeds.

Prints per arm: LEMON's question (the grown student at f x scratch's
budget against scratch at its full budget: the accuracy difference with its
95% interval, and the compute that costs: teacher counted and teacher
already paid for), the quality gain at equal compute per budget, and the
compute saved at scratch's best accuracy (interpolated, never
extrapolated), teacher counted, paid for, and by the wall clock (the
teacher at its seconds per step measured beside the student's on this
machine). Writes the report, the frontier, the curves and the slope plot to
--out.

    python benchmarks/image_savings.py                          # minutes, 2 cores
    python benchmarks/image_savings.py --budget=2400 --teacher_steps=300
    python benchmarks/image_savings.py --teacher_share=0.25     # T = B/4 per budget
    python benchmarks/image_savings.py --arms=deeper --deepen=conv2:3,conv3:3,fc1:3 \
        --small_alone                                  # make demo's x4 deep
"""

import json
import os
import time

from absl import app
from absl import flags

from keras_net2net import choices
from keras_net2net.bin import compare
from keras_net2net.bin import flags as shared_flags
from keras_net2net.training import comparison_options
from keras_net2net.training import config as config_lib

FLAGS = flags.FLAGS
ARMS = ("wider", "deeper", "both")


def define_flags():
    flags.DEFINE_integer("budget", 1200, "Scratch's full budget in steps of the "
                         "student's architecture (student-step equivalents).",
                         lower_bound=10)
    flags.DEFINE_list("fractions", ["0.5", "0.75"], "Fractions of --budget given "
                      "to the grown students (teacher counted), each also a "
                      "scratch budget; below 1, increasing.")
    flags.DEFINE_integer("teacher_steps", 150, "Teacher steps (the demo's), "
                         "unless --teacher_share.", lower_bound=1)
    flags.DEFINE_float("teacher_share", None, "Instead of --teacher_steps: each "
                       "budget's teacher trains this fraction of its compute.")
    flags.DEFINE_enum("grow_from", "cooldown", ["cooldown", "stable"], "With "
                      "--teacher_share: grow from each teacher's cooldown or from "
                      "its stable phase (see net2net-compare --grow_from).")
    flags.DEFINE_bool("carry_optimizer", False, "Carry the teacher's Adam state "
                      "(with --teacher_steps, or --grow_from=stable).")
    flags.DEFINE_list("arms", ["wider", "both"], f"Arms: {', '.join(ARMS)}.")
    flags.DEFINE_string("widen", "2.0", "--widen of the wider and both arms (see "
                        "net2net-expand).")
    flags.DEFINE_string("deepen", "conv2,fc1", "--deepen of the deeper and both "
                        "arms (see net2net-expand); make demo's: conv2:3,conv3:3,fc1:3.")
    flags.DEFINE_bool("small_alone", False, "Also train the teacher's architecture "
                      "alone to each budget's compute (net2net-compare --small_alone).")
    flags.DEFINE_integer("seeds", 3, "Seeds 0..seeds-1.", lower_bound=1)
    flags.DEFINE_list("lr_sweep", ["1", "2"], "Peak rates as multiples of "
                      "--learning_rate, swept for both arms on seed 0.")
    flags.DEFINE_float("learning_rate", 2e-3, "Base peak rate.")
    flags.DEFINE_float("noise", 0.5, "Balanced symmetry-breaking noise.",
                       lower_bound=0.0)
    flags.DEFINE_integer("eval_every", 100, "Evaluations of the stable phases "
                         "(for the curves and the slope plot); 0: ends only.",
                         lower_bound=0)
    flags.DEFINE_string("data_dir", "runs/tensorflow_datasets", "TFDS data "
                        "directory (distorted_digits is built offline into it).")
    flags.DEFINE_string("out", "runs/image_savings", "Where the report and "
                        "plots go.")
    flags.register_validator(
        "fractions", lambda values: all(_fraction(v) for v in values) and [
            float(v) for v in values] == sorted({float(v) for v in values}),
        message="Expected increasing fractions in (0, 1) such as 0.5,0.75. Fix: "
        "e.g. --fractions=0.5,0.75")
    flags.register_validator(
        "teacher_share", lambda share: comparison_options.teacher_share_problem(
            share) is None,
        message="Expected --teacher_share in (0, 1), e.g. 0.25")
    flags.register_validator(
        "widen", shared_flags.parses(shared_flags.parse_widen),
        message="Expected a factor or name=width pairs. Fix: e.g. --widen=2.0")
    flags.register_validator(
        "deepen", shared_flags.parses(shared_flags.parse_deepen),
        message="Expected layer names, or name:count pairs. Fix: e.g. "
        "--deepen=conv2,fc1 or --deepen=conv2:3,conv3:3,fc1:3")
    flags.register_validator(
        "arms", lambda arms: bool(arms) and set(arms) <= set(ARMS),
        message=f"Expected arms among {', '.join(ARMS)}")
    flags.register_multi_flags_validator(
        ["grow_from", "teacher_share"],
        lambda v: comparison_options.grow_from_problem(
            v["grow_from"], v["teacher_share"]) is None,
        message="Expected --teacher_share with --grow_from=stable")


def _fraction(text):
    try:
        return 0.0 < float(text) < 1.0
    except ValueError:
        return False


def budgets():
    """Scratch's budgets: each fraction of --budget, then --budget."""
    return [int(round(float(f) * FLAGS.budget)) for f in FLAGS.fractions] + [FLAGS.budget]


def lemon_rows(report):
    """Per arm and fraction f: the grown student at f x budget (teacher
    counted) against scratch at the full budget, per seed, with the compute
    that costs."""
    from keras_net2net.training import frontier

    rows = {}
    for name, arm in report["arms"].items():
        front = arm["frontier"]
        scratch = front["scratch"]["per_seed"]
        grown = front["grown"]["per_seed"]
        out = []
        for j, fraction in enumerate(FLAGS.fractions):
            diff = frontier.summarize([g[j] - s[-1] for g, s in zip(grown, scratch)])
            out.append({
                "fraction": float(fraction),
                "student_steps": front["grown"]["student_steps"][j],
                "compute_counted": front["grown"]["compute"][j],
                "compute_sunk": front["grown"]["compute_sunk"][j],
                "scratch_compute": front["scratch"]["compute"][-1],
                "grown_accuracy": frontier.summarize([g[j] for g in grown]),
                "scratch_accuracy": frontier.summarize([s[-1] for s in scratch]),
                "difference": diff,
                "seeds_at_least_scratch": sum(g[j] >= s[-1]
                                              for g, s in zip(grown, scratch)),
            })
        rows[name] = out
    return rows


def _ci(summary, spec):
    if summary.get("mean") is None:
        missing = summary.get("missing", 0)
        return f"- ({missing} of {summary['n']} seeds not reached)"
    text = format(summary["mean"], spec)
    if summary.get("ci"):
        text += f" [{format(summary['ci'][0], spec)}, {format(summary['ci'][1], spec)}]"
    return text


def table(report, rows):
    lines = []
    seeds = len(report["seeds"])
    for name, arm in report["arms"].items():
        cost = arm["teacher_cost_in_student_steps"]
        cost = (f"{cost:.1f}" if not isinstance(cost, list)
                else "/".join(f"{c:.1f}" for c in cost))
        lines.append(f"{name}: params {arm['params']['teacher']:,} -> "
                     f"{arm['params']['student']:,}, teacher/student FLOPs "
                     f"{arm['teacher_flops_ratio']:.3f}, teacher cost {cost} student "
                     f"steps, teacher wall ratio {arm['teacher_wall_ratio'] or 0:.3f}")
        for row in rows[name]:
            lines.append(
                f"  student at {row['fraction']:g} x scratch's budget: "
                f"{row['student_steps']} steps, compute {row['compute_counted']:.0f} "
                f"(teacher counted) / {row['compute_sunk']} (paid for) vs "
                f"scratch {row['scratch_compute']:.0f}: accuracy "
                f"{_ci(row['grown_accuracy'], '.4f')} vs "
                f"{_ci(row['scratch_accuracy'], '.4f')}, difference "
                f"{_ci(row['difference'], '+.4f')}; {row['seeds_at_least_scratch']} of "
                f"{seeds} seeds at least scratch's")
        gains = "; ".join(f"{g['compute']:g}: {_ci(g, '+.4f')}"
                          for g in arm["quality_gain_equal_compute"])
        lines.append(f"  gain at equal compute (teacher counted): {gains}")
        for key, label in (("compute_saved", "teacher counted"),
                           ("compute_saved_sunk", "teacher paid for"),
                           ("compute_saved_wall", "wall clock")):
            if arm.get(key):
                lines.append(f"  saved at scratch's best accuracy ({label}): "
                             f"{_ci(arm[key], '.0%')}; per seed "
                             + ", ".join("-" if v is None else f"{100 * v:.0f}%"
                                         for v in arm[key]["per_seed"])
                             + f" ({', '.join(arm[key]['status_per_seed'])})")
        if arm.get("small_alone"):
            lines.extend(compare.small_alone_lines(arm["small_alone"], "accuracy"))
        if arm.get("quality_gain_equal_wall"):
            gains = "; ".join(f"{g['compute']:g}: {_ci(g, '+.4f')}"
                              for g in arm["quality_gain_equal_wall"])
            lines.append(f"  gain at equal wall clock: {gains}")
    return "\n".join(lines)


def main(argv):
    del argv
    from keras_net2net import models
    from keras_net2net.training import comparison
    from keras_net2net.training import curves
    from keras_net2net.training import experiment

    config = config_lib.RunConfig(
        dataset=choices.DISTORTED_DIGITS, data_dir=FLAGS.data_dir,
        global_batch_size=64, learning_rate=FLAGS.learning_rate, lr_schedule="wsd",
        warmup_steps=10, eval_every=FLAGS.eval_every, log_every=10_000)
    strategy = experiment.prepare_process(config)
    teacher_fn = lambda info: models.build_model(
        "cnn", info.input_shape, info.num_classes, widths=[4, 8, 16])
    began = time.perf_counter()
    report = comparison.run_comparison(
        config, strategy, teacher_fn, compare.arms_from_flags(FLAGS),
        seeds=list(range(FLAGS.seeds)), teacher_steps=FLAGS.teacher_steps,
        teacher_share=FLAGS.teacher_share, budgets=budgets(),
        lr_scales=[float(s) for s in FLAGS.lr_sweep], noise=FLAGS.noise,
        grow_from=FLAGS.grow_from, carry_optimizer=FLAGS.carry_optimizer,
        small_alone=FLAGS.small_alone, metric="accuracy", progress=print)
    seconds = time.perf_counter() - began
    rows = lemon_rows(report)
    report["lemon"] = rows
    report["benchmark"] = {"seconds": seconds, "budget": FLAGS.budget,
                           "fractions": [float(f) for f in FLAGS.fractions],
                           "load_average": os.getloadavg()}
    os.makedirs(FLAGS.out, exist_ok=True)
    with open(os.path.join(FLAGS.out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    curves.plot_frontier(report, os.path.join(FLAGS.out, "frontier.png"))
    curves.plot_comparison(report, os.path.join(FLAGS.out, "curves.png"))
    curves.plot_slopes(report, os.path.join(FLAGS.out, "slope.png"))
    print(f"\n== image savings, LEMON's shape: budgets {budgets()}, teacher "
          + (f"share {FLAGS.teacher_share}, grown from its {FLAGS.grow_from}"
             if FLAGS.teacher_share else f"{FLAGS.teacher_steps} steps")
          + (", Adam carried" if FLAGS.carry_optimizer else "")
          + f", {FLAGS.seeds} seeds, {seconds:.0f} s (load average at the end "
          f"{os.getloadavg()[0]:.1f})")
    print(f"teacher accuracy {report['teacher']['accuracy']:.4f}")
    print(table(report, rows))


if __name__ == "__main__":
    define_flags()
    app.run(main)
