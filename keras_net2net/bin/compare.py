r"""net2net-compare: do Net2Net students learn faster than random init?

Trains a teacher, grows it wider, deeper and both, trains each student, and
trains the same architecture from random weights (the "scratch twin") for at
least as many steps as teacher and student together, at its best learning
rate from a small sweep. Writes `report.json` and `curves.png` into
--model_dir and prints a table.

    net2net-compare --model_dir=runs/compare --dataset=distorted_digits
    net2net-compare --model_dir=runs/lm --dataset=stdlib_bytes \
        --teacher_model=gpt --arms=both --deepen=block1_ln1..block1_res2:1

The target is the scratch twin's converged value (mean of its last 5
evaluations: test accuracy, or validation loss with --metric=loss); a curve
reaches it at the first evaluation from which 3 consecutive evaluations
average at or past it. The speed-up is scratch steps / student steps; the
total speed-up adds the teacher's steps weighted by its training FLOPs per
step relative to the student's; both come with the ceiling the evaluation
grid can show (see `keras_net2net.training.comparison`).
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from keras_net2net import choices
from keras_net2net.bin import console
from keras_net2net.bin import flags as shared_flags

# Loaded when main first uses them, so that flags answer before TensorFlow.
models = console.lazy_module("keras_net2net.models")
comparison = console.lazy_module("keras_net2net.training.comparison")
curves = console.lazy_module("keras_net2net.training.curves")
experiment = console.lazy_module("keras_net2net.training.experiment")
strategy_lib = console.lazy_module("keras_net2net.training.strategy")

FLAGS = flags.FLAGS
REPORT_FILENAME = "report.json"
CURVES_FILENAME = "curves.png"
# Models that read token sequences, and the data sets that provide them.
SEQUENCE_MODELS = ("gpt",)
SEQUENCE_DATASETS = (choices.STDLIB_BYTES,)


def define_flags(flag_values=FLAGS):
    """Defines the shared flags plus the comparison's own.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    shared_flags.define_shared_flags(flag_values)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("teacher_model", "cnn", "Teacher architecture: "
                        f"{', '.join(choices.MODELS)} (gpt: a byte-level "
                        "language model for --dataset=stdlib_bytes).", **fv)
    flags.DEFINE_list("teacher_widths", ["4", "8", "16"],
                      "Teacher layer widths (mlp/cnn).", **fv)
    flags.DEFINE_integer("teacher_width", None, "Teacher width (gpt, "
                         "resnet_small).", lower_bound=1, **fv)
    flags.DEFINE_integer("teacher_depth", None, "Teacher blocks (gpt, "
                         "resnet_small).", lower_bound=1, **fv)
    flags.DEFINE_integer("teacher_steps", 1000, "Training steps of the "
                         "teacher.", lower_bound=1, **fv)
    flags.DEFINE_integer("student_steps", 600, "Training steps of each "
                         "student.", lower_bound=1, **fv)
    flags.DEFINE_integer("scratch_steps", None, "Training steps of each "
                         "scratch twin; default and minimum: teacher_steps + "
                         "student_steps.", lower_bound=1, **fv)
    flags.DEFINE_float("student_lr_scale", 0.1, "Student learning rate as a "
                       "fraction of --learning_rate (the paper uses 1/10).",
                       **fv)
    flags.DEFINE_list("scratch_lr_sweep", ["0.5", "1", "2"], "Scratch learning "
                      "rates to try (multiples of --learning_rate) on the first "
                      "seed; the best converged value is used for all seeds.",
                      **fv)
    flags.DEFINE_bool("sweep_every_arm", True, "Sweep the scratch learning rate "
                      "for every arm; --nosweep_every_arm sweeps the first arm's "
                      "twin only and gives its pick to the other arms (each sweep "
                      "point is one more scratch run).", **fv)
    flags.DEFINE_bool("carry_optimizer", False, "Start each student with the "
                      "teacher's optimizer state (keras_net2net."
                      "expand_optimizer) instead of a fresh optimizer.", **fv)
    flags.DEFINE_enum("metric", "auto", ["auto", "accuracy", "loss"],
                      "What the arms are compared on; auto: loss for gpt, "
                      "accuracy otherwise.", **fv)
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
                             lambda name: name in choices.MODELS,
                             message=f"expected one of {choices.MODELS}",
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
    flags.register_validator(
        "scratch_lr_sweep", _positive_floats,
        message="Expected positive multiples of --learning_rate such as "
        "0.5,1,2. Fix: e.g. --scratch_lr_sweep=1 for no sweep", **fv)
    flags.register_validator("widen", shared_flags.parses(shared_flags.parse_widen),
                             message="expected e.g. 2.0 or conv1=8,fc1=64",
                             **fv)
    flags.register_validator("deepen", shared_flags.parses(shared_flags.parse_deepen),
                             message="expected e.g. conv2,fc1", **fv)
    flags.register_multi_flags_validator(
        ["scratch_steps", "teacher_steps", "student_steps"],
        lambda v: v["scratch_steps"] is None or
        v["scratch_steps"] >= v["teacher_steps"] + v["student_steps"],
        message="Expected --scratch_steps >= --teacher_steps + --student_steps: "
        "the scratch twin trains at least as long as teacher and student "
        "together. Fix: raise --scratch_steps or leave it unset", **fv)
    flags.register_multi_flags_validator(
        ["teacher_model", "dataset"],
        lambda v: (v["teacher_model"] in SEQUENCE_MODELS)
        == ((v["dataset"] or "").partition("/")[0] in SEQUENCE_DATASETS),
        message=f"Expected a sequence model ({', '.join(SEQUENCE_MODELS)}) "
        f"exactly with a sequence data set ({', '.join(SEQUENCE_DATASETS)}). "
        "Fix: --teacher_model=gpt --dataset=stdlib_bytes, or an image model "
        "with an image data set", **fv)


def _positive_floats(values):
    try:
        return bool(values) and all(float(v) > 0 for v in values)
    except ValueError:
        return False


def arms_from_flags(flag_values=FLAGS):
    """The `comparison.Arm`s the flags ask for, in the order given."""
    widen = shared_flags.parse_widen(flag_values.widen)
    deepen = shared_flags.parse_deepen(flag_values.deepen)
    by_name = {"wider": comparison.Arm("wider", widen=widen),
               "deeper": comparison.Arm("deeper", deepen=deepen),
               "both": comparison.Arm("both", widen=widen, deepen=deepen)}
    return [by_name[name] for name in flag_values.arms]


def metric_from_flags(flag_values=FLAGS):
    """The metric to compare on: --metric, or loss for sequence models."""
    if flag_values.metric != "auto":
        return flag_values.metric
    return "loss" if flag_values.teacher_model in SEQUENCE_MODELS else "accuracy"


def teacher_fn_from_flags(flag_values=FLAGS):
    """`teacher_fn(info)` that builds the teacher the flags describe."""
    name = flag_values.teacher_model
    widths = ([int(w) for w in flag_values.teacher_widths]
              if name in ("mlp", "cnn") else None)
    width, depth = flag_values.teacher_width, flag_values.teacher_depth
    return lambda info: models.build_model(
        name, info.input_shape, info.num_classes, widths=widths, width=width,
        depth=depth)


def run_from_flags(config, strategy, output_dir, curves_filename=CURVES_FILENAME,
                   flag_values=FLAGS, progress=None):
    """Runs the comparison the flags describe; the chief writes the report,
    the curves and the table.

    Args:
        config: an `experiment.RunConfig`.
        strategy: from `experiment.prepare_process`.
        output_dir: where report.json, the curves and models go.
        curves_filename: the picture's file name.
        flag_values: parsed flags of `define_flags`.
        progress: `progress(message)` at each phase (see `run_comparison`).

    Returns:
        The report, or None on a worker that is not the chief.
    """
    seeds = list(range(flag_values.seed, flag_values.seed + flag_values.seeds))
    is_chief = strategy_lib.task_info(strategy)[2]
    report = comparison.run_comparison(
        config, strategy, teacher_fn_from_flags(flag_values),
        arms_from_flags(flag_values), seeds=seeds,
        teacher_steps=flag_values.teacher_steps,
        student_steps=flag_values.student_steps,
        scratch_steps=flag_values.scratch_steps,
        student_lr_scale=flag_values.student_lr_scale,
        scratch_lr_scales=[float(s) for s in flag_values.scratch_lr_sweep],
        carry_optimizer=flag_values.carry_optimizer,
        metric=metric_from_flags(flag_values), noise=flag_values.noise,
        sweep_every_arm=flag_values.sweep_every_arm,
        output_dir=os.path.join(output_dir, "models") if is_chief else None,
        progress=progress)
    if not is_chief:
        return None  # Every worker trains; only the chief writes.
    os.makedirs(output_dir, exist_ok=True)
    report_path = os.path.join(output_dir, REPORT_FILENAME)
    curves_path = os.path.join(output_dir, curves_filename)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    curves.plot_comparison(report, curves_path)
    print(format_table(report), flush=True)
    print(f"report: {report_path}\ncurves: {curves_path}", flush=True)
    logging.info("Wrote %s and %s.", report_path, curves_path)
    return report


def format_table(report):
    """A short text table of a comparison report."""
    metric = report["metric"]
    teacher = report["teacher"]
    lines = [f"teacher {metric} {teacher[metric]:.4f} (converged, mean of "
             f"{len(report['seeds'])} seeds, "
             f"{sum(teacher['train_seconds_per_seed']):.1f} s of teacher "
             f"training); {report['eval_examples']} evaluation examples",
             f"{'arm':<8}{'params':>9}{'t/s flops':>10}{'student':>9}"
             f"{'target':>8}{'steps st':>9}{'steps sc':>9}{'speed-up':>9}"
             f"{'total':>7}{'saved':>7}{'ceiling':>9}{'scratch lr':>11}"
             f"{'max rel err':>12}"]
    for name, arm in report["arms"].items():
        sweep = arm["scratch_sweep"]
        lines.append(
            f"{name:<8}{arm['params']['student']:>9,}"
            f"{arm['teacher_flops_ratio']:>10.3f}"
            f"{arm['final_student']:>9.4f}{arm['target']:>8.4f}"
            f"{_step(arm['steps_student']):>9}{arm['steps_scratch']:>9}"
            f"{_times(arm['speedup']):>9}{_times(arm['speedup_total']):>7}"
            f"{_percent(arm['compute_saved']):>7}"
            f"{arm['ceiling']:>5.0f}/{arm['ceiling_total']:<3.0f}"
            f"{sweep['chosen_learning_rate']:>11.2g}"
            f"{max(arm['max_relative_error_per_seed']):>12.2e}")
        per_seed = ", ".join(_times(s) for s in arm["per_seed"]["speedup"])
        total = ", ".join(_times(s) for s in arm["per_seed"]["speedup_total"])
        sweep_text = ", ".join(f"{lr:.2g}: {v:.4f}" for lr, v in zip(
            sweep["learning_rates"], sweep["converged"]))
        lines.append(f"{'':<8}per seed: speed-up {per_seed}; total {total}; "
                     f"scratch sweep (seed {sweep['seed']}) {sweep_text}")
    lines.append(
        f"student: converged {metric} (mean of the last {report['protocol']['last']} "
        f"evaluations); target: the scratch twin's; steps st/sc: steps to reach "
        f"it ({report['protocol']['window']} evaluations averaged); total: "
        "counting the teacher's steps at its FLOPs per step (t/s flops); saved: "
        "compute saved counting the teacher; ceiling: the largest speed-up / "
        "total the evaluation grid can show.")
    return "\n".join(lines)


def _step(step):
    return "never" if step is None else str(step)


def _times(value):
    return "never" if value is None else f"{value:.1f}x"


def _percent(value):
    return "-" if value is None else f"{100 * value:.0f}%"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = shared_flags.run_config(FLAGS)
    strategy = experiment.prepare_process(config)
    run_from_flags(config, strategy, config.model_dir, flag_values=FLAGS)


def run():
    """Console entry point: net2net-compare."""
    console.run_main(define_flags, main)


if __name__ == "__main__":
    run()
