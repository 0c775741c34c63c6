r"""net2net-compare: do Net2Net students learn faster than random init?

Trains a teacher, grows it wider, deeper and both, and trains each student
and the same architecture from random weights for the same steps. Writes
`report.json` and `curves.png` into --model_dir and prints a table.

    net2net-compare --model_dir=runs/compare --seeds=3

The speed-up of an arm is (steps the scratch model needs to reach its own
final accuracy) / (steps the student needs to reach that accuracy), on the
seed-averaged curves, each counted as at least one --eval_every interval.
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from keras_net2net import models
from keras_net2net.bin import flags as shared_flags
from keras_net2net.training import comparison
from keras_net2net.training import curves
from keras_net2net.training import experiment
from keras_net2net.training import strategy as strategy_lib

FLAGS = flags.FLAGS
REPORT_FILENAME = "report.json"
CURVES_FILENAME = "curves.png"


def define_flags(flag_values=FLAGS):
    """Defines the shared flags plus the comparison's own.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    shared_flags.define_shared_flags(flag_values)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("teacher_model", "cnn", "Teacher architecture: "
                        f"{', '.join(models.BUILT_IN)}.", **fv)
    flags.DEFINE_list("teacher_widths", ["4", "8", "16"],
                      "Teacher layer widths (mlp/cnn).", **fv)
    flags.DEFINE_integer("teacher_steps", 1000, "Training steps of the "
                         "teacher.", lower_bound=1, **fv)
    flags.DEFINE_integer("student_steps", 600, "Training steps of each "
                         "student and scratch model.", lower_bound=1, **fv)
    flags.DEFINE_float("student_lr_scale", 0.1, "Student learning rate as a "
                       "fraction of --learning_rate (the paper uses 1/10); "
                       "scratch models use --learning_rate.", **fv)
    flags.DEFINE_string("widen", "2.0", "--widen of the 'wider' and 'both' "
                        "arms (see net2net-expand).", **fv)
    flags.DEFINE_string("deepen", "conv2,fc1", "--deepen of the 'deeper' and "
                        "'both' arms (see net2net-expand).", **fv)
    flags.DEFINE_list("arms", ["wider", "deeper", "both"], "Arms to run.",
                      **fv)
    flags.DEFINE_float("noise", 0.0, "Symmetry-breaking noise of the "
                       "expansion.", lower_bound=0.0, **fv)
    flags.DEFINE_integer("seeds", 3, "Repeat with seeds --seed, --seed+1, "
                         "...; curves are averaged.", lower_bound=1, **fv)
    flag_values.set_default("eval_every", 20)
    flag_values.set_default("log_every", 200)
    flags.mark_flag_as_required("model_dir", **fv)
    flags.register_validator("teacher_model",
                             lambda name: name in models.BUILT_IN,
                             message=f"expected one of {models.BUILT_IN}",
                             **fv)
    flags.register_validator(
        "arms", lambda arms: bool(arms) and set(arms) <= {
            "wider", "deeper", "both"},
        message="expected a list of wider, deeper, both", **fv)
    flags.register_validator("eval_every", lambda steps: steps > 0,
                             message="expected > 0: curves need evaluations",
                             **fv)
    flags.register_validator("student_lr_scale", lambda scale: scale > 0,
                             message="expected > 0", **fv)
    flags.register_validator("widen", shared_flags.parses(shared_flags.parse_widen),
                             message="expected e.g. 2.0 or conv1=8,fc1=64",
                             **fv)
    flags.register_validator("deepen", shared_flags.parses(shared_flags.parse_deepen),
                             message="expected e.g. conv2,fc1", **fv)


def arms_from_flags(flag_values=FLAGS):
    """The `comparison.Arm`s the flags ask for, in the order given."""
    widen = shared_flags.parse_widen(flag_values.widen)
    deepen = shared_flags.parse_deepen(flag_values.deepen)
    choices = {"wider": comparison.Arm("wider", widen=widen),
               "deeper": comparison.Arm("deeper", deepen=deepen),
               "both": comparison.Arm("both", widen=widen, deepen=deepen)}
    return [choices[name] for name in flag_values.arms]


def format_table(report):
    """A short text table of a comparison report."""
    lines = [f"teacher accuracy {report['teacher']['accuracy']:.4f} "
             f"(mean of {len(report['seeds'])} seeds, "
             f"{sum(report['teacher']['train_seconds_per_seed']):.1f} s of "
             "teacher training)",
             f"{'arm':<8}{'params':>9}{'student':>9}{'scratch':>9}"
             f"{'target':>8}{'steps st':>9}{'steps sc':>9}{'speed-up':>9}"
             f"{'sc>=teacher':>12}{'max rel err':>13}"]
    for name, arm in report["arms"].items():
        speed = "never" if arm["speedup"] is None else f"{arm['speedup']:.1f}x"
        lines.append(
            f"{name:<8}{arm['params']['student']:>9,}"
            f"{arm['final_accuracy']['student']:>9.4f}"
            f"{arm['final_accuracy']['scratch']:>9.4f}"
            f"{arm['target_accuracy']:>8.4f}{_step(arm['steps_student']):>9}"
            f"{arm['steps_scratch']:>9}{speed:>9}"
            f"{_step(arm['steps_scratch_to_teacher']):>12}"
            f"{max(arm['max_relative_error_per_seed']):>13.2e}")
    lines.append("student/scratch: final test accuracy (mean over seeds); "
                 "steps st/sc: steps to reach target, the scratch arm's final "
                 "accuracy; sc>=teacher: steps scratch needs to match the "
                 "teacher; max rel err: function preservation at growth.")
    return "\n".join(lines)


def _step(step):
    return "never" if step is None else str(step)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = shared_flags.run_config()
    strategy = experiment.prepare_process(config)
    widths = [int(w) for w in FLAGS.teacher_widths]
    teacher_fn = lambda info: models.build_model(
        FLAGS.teacher_model, info.input_shape, info.num_classes,
        widths=widths if FLAGS.teacher_model != "resnet_small" else None)
    seeds = list(range(FLAGS.seed, FLAGS.seed + FLAGS.seeds))
    is_chief = strategy_lib.task_info(strategy)[2]
    report = comparison.run_comparison(
        config, strategy, teacher_fn, arms_from_flags(), seeds=seeds,
        teacher_steps=FLAGS.teacher_steps, student_steps=FLAGS.student_steps,
        student_lr_scale=FLAGS.student_lr_scale, noise=FLAGS.noise,
        output_dir=os.path.join(config.model_dir, "models") if is_chief
        else None)
    if not is_chief:
        return  # Every worker trains; only the chief writes.
    report_path = os.path.join(config.model_dir, REPORT_FILENAME)
    curves_path = os.path.join(config.model_dir, CURVES_FILENAME)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    curves.plot_comparison(report, curves_path)
    print(format_table(report))
    print(f"report: {report_path}\ncurves: {curves_path}")
    logging.info("Wrote %s and %s.", report_path, curves_path)


def run():
    """Console entry point: net2net-compare."""
    shared_flags.run_main(define_flags, main)


if __name__ == "__main__":
    run()
