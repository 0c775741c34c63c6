r"""net2net-compare: does growing pay? Quality against compute.

Trains a teacher, grows it wider, deeper and both, and trains each grown
model and the same architecture from random weights ("scratch") at several
compute budgets (--budgets, in student-step equivalents: a teacher step counts
at its training FLOPs per step relative to the student's). Every run ends in
its own warmup-stable-decay cooldown, branched off one stable run per
learning rate; the grown arm runs at scratch's peak rate, with the teacher's
optimizer carried and re-warmed (--carry_optimizer --rewarm_steps) or a fresh
one warmed up (--warmup_steps). Peak rates (--lr_sweep) are tried for both
alike on the first seed and chosen per budget on the first half of the
held-out examples; the second half is reported.

Writes `report.json`, `curves.png` (stable phases), `frontier.png`
(quality vs compute) and, with --eval_every > 0, `slope.png` (the loss
slope per student-step equivalent against the loss, grown and scratch: a
head start or a rate) into --model_dir and prints a table: per budget the
final quality of both (mean ± s.e. over seeds), the quality gain at equal
compute, and the compute saved at scratch's best quality and at its
half-compute quality, teacher counted and teacher already paid for, with 95%
intervals over seeds (see `keras_net2net.training.comparison` and
`keras_net2net.training.frontier`).

    net2net-compare --model_dir=runs/compare --dataset=distorted_digits \
        --budgets=180,360,720 --teacher_steps=150 --carry_optimizer
    net2net-compare --model_dir=runs/lm --dataset=stdlib_bytes \
        --teacher_model=gpt --arms=both --deepen=block1_ln1..block1_res2:1
    net2net-compare --model_dir=runs/share --teacher_share=0.25   # T = B/4
"""

import json
import os

from absl import app
from absl import flags
from absl import logging

from keras_net2net import choices
from keras_net2net.bin import console
from keras_net2net.training import comparison_options
from keras_net2net.training import schedule_options
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
FRONTIER_FILENAME = "frontier.png"
# The loss slope against the loss, written when the stable phases were
# evaluated on the way (--eval_every > 0).
SLOPE_FILENAME = "slope.png"
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
    flags.DEFINE_float(
        "teacher_share", None, "Scale growth time with the budget: each budget's "
        "teacher trains this fraction of the budget's compute (round(share x "
        "budget / the teacher's FLOPs ratio) teacher steps) and its student the "
        "rest; the teachers are cooldowns branched off one teacher run, each "
        "student grows from its own. Strictly between 0 and 1, e.g. 0.25. Not "
        "with an explicit --teacher_steps (which it replaces), nor with "
        "--carry_optimizer unless --grow_from=stable. Default: one teacher of "
        "--teacher_steps for every budget.", **fv)
    flags.DEFINE_enum(
        "grow_from", "cooldown", list(comparison_options.GROW_FROM),
        "With --teacher_share, where each student grows from: cooldown (each "
        "teacher ends in its own decay; the student then re-warms) or stable "
        "(the teacher run at its growth point, before any decay: growth inside "
        "one run, no teacher compute spent on a cooldown the student undoes; "
        "allows --carry_optimizer, which continues the teacher's schedule).",
        **fv)
    flags.DEFINE_list(
        "budgets", [str(b) for b in comparison_options.DEFAULT_BUDGETS],
        "Compute budgets in student-step equivalents, increasing, at least "
        f"{comparison_options.MIN_BUDGETS}: scratch trains each many steps; a "
        "grown arm trains each minus the teacher's cost (--teacher_steps x the "
        "teacher's training FLOPs per step / the student's). Every run ends in "
        "its own warmup-stable-decay cooldown (--cooldown_fraction, "
        "--min_lr_ratio), branched off one stable run.", **fv)
    flags.DEFINE_list(
        "lr_sweep", ["1"], "Peak learning rates to try, as multiples of "
        "--learning_rate, for scratch and the grown arms alike, on the first "
        "seed; chosen per budget on the first half of the held-out examples "
        "(every reported figure uses the second half).", **fv)
    flags.DEFINE_bool("carry_optimizer", False, "Start each student with the "
                      "teacher's optimizer state (keras_net2net."
                      "expand_optimizer), re-warmed over --rewarm_steps, instead "
                      "of a fresh optimizer with --warmup_steps of warmup.", **fv)
    flags.DEFINE_integer(
        "rewarm_steps", 0, "With --carry_optimizer: steps of linear re-warmup "
        "of the grown arm from --rewarm_from x the peak rate; 0: none.", **fv)
    flags.DEFINE_float(
        "rewarm_from", schedule_options.DEFAULT_REWARM_FROM, "With "
        "--rewarm_steps: the re-warmup's start as a fraction of the rate, in "
        "(0, 1].", **fv)
    flags.DEFINE_enum("metric", "auto", ["auto", "accuracy", "loss"],
                      "What the arms are compared on; auto: loss for gpt, "
                      "accuracy otherwise.", **fv)
    flags.DEFINE_string("widen", "2.0", "--widen of the 'wider' and 'both' "
                        "arms (see net2net-expand).", **fv)
    flags.DEFINE_string("deepen", "conv2,fc1", "--deepen of the 'deeper' and "
                        "'both' arms (see net2net-expand).", **fv)
    flags.DEFINE_list("arms", ["wider", "deeper", "both"], "Arms to run.",
                      **fv)
    flags.DEFINE_float("noise", 0.5, "Balanced symmetry-breaking noise of the "
                       "expansion (the function stays exact). 0.5 with a fresh "
                       "optimizer was the best recipe of benchmarks/growth_savings.py "
                       "(BUILD_NOTES.md).", lower_bound=0.0, **fv)
    flags.DEFINE_float(
        "rotate_stream", None, "After growth, rotate each student's residual "
        "stream (a pre-LN transformer's: gpt) by a random orthogonal map keeping "
        "the all-ones direction, turning at most this many radians, in (0, pi]. "
        "Exact; its copies stop being coordinate pairs, so Adam moves them apart "
        "(training/stream_rotation.py). Needs --nocarry_optimizer. Default: off.",
        **fv)
    flags.DEFINE_bool(
        "small_alone", False, "Also train the teacher's architecture alone, from "
        "fresh weights, to each budget's compute (budget / the teacher's FLOPs "
        "ratio steps, the same rate sweep): is the grown model better than the "
        "small one trained on for the same compute? Reported per arm under "
        "\"small_alone\" and drawn on the frontier.", **fv)
    flags.DEFINE_integer("seeds", 3, "Repeat with seeds --seed, --seed+1, "
                         "...; curves are averaged.", lower_bound=1, **fv)
    flag_values.set_default("eval_every", 20)
    flag_values.set_default("lr_schedule", "wsd")
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
    flags.register_validator(
        "eval_every", lambda steps: steps >= 0,
        message="Expected --eval_every >= 0 (steps between evaluations of the "
        "stable phases; 0: only the end of each run). Fix: e.g. --eval_every=20",
        **fv)
    flags.register_validator(
        "budgets", lambda budgets: shared_flags.raise_problem(
            comparison_options.budgets_problem(
                budgets, min_budgets=comparison_options.MIN_BUDGETS)), **fv)
    flags.register_validator(
        "lr_sweep", lambda scales: shared_flags.raise_problem(
            comparison_options.lr_scales_problem(scales)), **fv)
    for name in ("rewarm_steps", "rewarm_from"):
        flags.register_validator(
            name, lambda value, name=name: shared_flags.raise_problem(
                schedule_options.rewarm_problem(**{name: value})), **fv)
    flags.register_validator(
        "teacher_share", lambda share: shared_flags.raise_problem(
            comparison_options.teacher_share_problem(share)), **fv)
    # A share sets the teacher steps of every budget: an explicit
    # --teacher_steps beside it would be silently ignored, so it is refused.
    flags.register_multi_flags_validator(
        ["teacher_share", "teacher_steps"],
        lambda v: v["teacher_share"] is None or not flag_values["teacher_steps"].present
        or shared_flags.raise_problem(
            f"Expected --teacher_share or --teacher_steps, not both (a share "
            f"gives each budget its own teacher of round(share x budget / FLOPs "
            f"ratio) steps). Received: --teacher_share={v['teacher_share']} "
            f"--teacher_steps={v['teacher_steps']}. Fix: drop one of them."), **fv)
    flags.register_multi_flags_validator(
        ["teacher_share", "carry_optimizer", "grow_from"],
        lambda v: v["teacher_share"] is None or not v["carry_optimizer"]
        or v["grow_from"] == "stable"
        or shared_flags.raise_problem(
            f"Expected a fresh optimizer with --teacher_share (each budget's "
            f"teacher is a cooldown branch; no optimizer state is kept to carry). "
            f"Received: --teacher_share={v['teacher_share']} --carry_optimizer. "
            f"Fix: --nocarry_optimizer, --grow_from=stable, or --teacher_steps "
            f"instead of --teacher_share."), **fv)
    flags.register_validator(
        "rotate_stream", lambda angle: angle is None or shared_flags.raise_problem(
            comparison_options.rotate_stream_problem(angle)), **fv)
    flags.register_multi_flags_validator(
        ["rotate_stream", "carry_optimizer"],
        lambda v: v["rotate_stream"] is None or not v["carry_optimizer"]
        or shared_flags.raise_problem(
            f"Expected a fresh optimizer with --rotate_stream (Adam's moments are "
            f"per coordinate of the unrotated stream). Received: --rotate_stream="
            f"{v['rotate_stream']} --carry_optimizer. Fix: --nocarry_optimizer, or "
            f"drop --rotate_stream."), **fv)
    flags.register_multi_flags_validator(
        ["grow_from", "teacher_share"],
        lambda v: shared_flags.raise_problem(comparison_options.grow_from_problem(
            v["grow_from"], v["teacher_share"])), **fv)
    flags.register_validator("widen", shared_flags.parses(shared_flags.parse_widen),
                             message="expected e.g. 2.0 or conv1=8,fc1=64",
                             **fv)
    flags.register_validator("deepen", shared_flags.parses(shared_flags.parse_deepen),
                             message="expected e.g. conv2,fc1", **fv)
    flags.register_multi_flags_validator(
        ["teacher_model", "dataset"],
        lambda v: (v["teacher_model"] in SEQUENCE_MODELS)
        == ((v["dataset"] or "").partition("/")[0] in SEQUENCE_DATASETS),
        message=f"Expected a sequence model ({', '.join(SEQUENCE_MODELS)}) "
        f"exactly with a sequence data set ({', '.join(SEQUENCE_DATASETS)}). "
        "Fix: --teacher_model=gpt --dataset=stdlib_bytes, or an image model "
        "with an image data set", **fv)


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
                   flag_values=FLAGS, progress=None,
                   frontier_filename=FRONTIER_FILENAME):
    """Runs the comparison the flags describe; the chief writes the report,
    the curves, the frontier and the table.

    Args:
        config: an `experiment.RunConfig`.
        strategy: from `experiment.prepare_process`.
        output_dir: where report.json, the curves and models go.
        curves_filename: the learning curves' file name.
        flag_values: parsed flags of `define_flags`.
        progress: `progress(message)` at each phase (see `run_comparison`).
        frontier_filename: the quality-vs-compute plot's file name.

    Returns:
        The report, or None on a worker that is not the chief.
    """
    seeds = list(range(flag_values.seed, flag_values.seed + flag_values.seeds))
    is_chief = strategy_lib.task_info(strategy)[2]
    report = comparison.run_comparison(
        config, strategy, teacher_fn_from_flags(flag_values),
        arms_from_flags(flag_values), seeds=seeds,
        teacher_steps=flag_values.teacher_steps,
        budgets=[int(b) for b in flag_values.budgets],
        lr_scales=[float(s) for s in flag_values.lr_sweep],
        carry_optimizer=flag_values.carry_optimizer,
        rewarm_steps=flag_values.rewarm_steps, rewarm_from=flag_values.rewarm_from,
        metric=metric_from_flags(flag_values), noise=flag_values.noise,
        teacher_share=flag_values.teacher_share, grow_from=flag_values.grow_from,
        rotate_stream=flag_values.rotate_stream,
        small_alone=flag_values.small_alone,
        min_budgets=comparison_options.MIN_BUDGETS,
        output_dir=os.path.join(output_dir, "models") if is_chief else None,
        progress=progress)
    if not is_chief:
        return None  # Every worker trains; only the chief writes.
    os.makedirs(output_dir, exist_ok=True)
    report_path = os.path.join(output_dir, REPORT_FILENAME)
    curves_path = os.path.join(output_dir, curves_filename)
    frontier_path = os.path.join(output_dir, frontier_filename)
    with open(report_path, "w") as f:
        json.dump(report, f, indent=1)
    curves.plot_comparison(report, curves_path)
    curves.plot_frontier(report, frontier_path)
    slope_path = os.path.join(output_dir, SLOPE_FILENAME)
    if not curves.plot_slopes(report, slope_path):
        slope_path = None  # no evaluations on the way (--eval_every=0)
    print(format_table(report), flush=True)
    print(f"report: {report_path}\ncurves: {curves_path}\nfrontier: "
          f"{frontier_path}" + (f"\nslope: {slope_path}" if slope_path else ""),
          flush=True)
    logging.info("Wrote %s, %s, %s%s.", report_path, curves_path, frontier_path,
                 f" and {slope_path}" if slope_path else "")
    return report


def format_table(report):
    """A short text table of a comparison report: per arm, the frontier and
    the savings."""
    metric = report["metric"]
    teacher = report["teacher"]
    seeds = len(report["seeds"])
    lines = [f"teacher {metric} {teacher[metric]:.4f} (mean of {seeds} seeds, "
             f"{sum(teacher['train_seconds_per_seed']):.1f} s of teacher "
             f"training); {report['eval_examples']} reported and "
             f"{report['selection_examples']} selection examples"]
    for name, arm in report["arms"].items():
        front = arm["frontier"]
        lines.append(
            f"{name}: params {arm['params']['teacher']:,} -> "
            f"{arm['params']['student']:,}; teacher/student FLOPs per step "
            f"{arm['teacher_flops_ratio']:.3f}, teacher cost "
            f"{_teacher_cost(arm)} student steps; max rel err "
            f"{max(arm['max_relative_error_per_seed']):.1e}")
        lines.append(f"  {'budget':>7}{'scratch':>17}{'grown steps':>12}"
                     f"{'grown':>17}{'gain (equal compute)':>24}{'lr x sc/gr':>12}")
        sweep = arm["lr_sweep"]
        for j, budget in enumerate(front["budgets"]):
            gain = arm["quality_gain_equal_compute"][j]
            lines.append(
                f"  {budget:>7}{_mean_se(front['scratch'], j):>17}"
                f"{front['grown']['student_steps'][j]:>12}"
                f"{_mean_se(front['grown'], j):>17}"
                f"  {_value_ci(gain, '+.4f'):>22}"
                f"{sweep['scratch']['chosen_scale'][j]:>6g}/"
                f"{sweep['grown']['chosen_scale'][j]:<5g}")
        for key, label in (("compute_saved", "teacher counted"),
                           ("compute_saved_sunk", "teacher paid for")):
            saved = arm[key]
            per_seed = ", ".join(_percent(v) if v is not None else status
                                 for v, status in zip(saved["per_seed"],
                                                      saved["status_per_seed"]))
            lines.append(f"  saved at scratch's best {metric} ({label}): "
                         f"{_value_ci(saved, '.0%')}; per seed {per_seed}")
        half = arm["compute_saved_at_half"]
        lines.append(f"  saved at scratch's half-compute {metric} (teacher "
                     f"counted): {_value_ci(half, '.0%')}")
        if arm.get("small_alone"):
            lines.extend(small_alone_lines(arm["small_alone"], metric))
        if arm.get("compute_saved_wall"):
            timing = arm["seconds_per_step"]
            gains = ", ".join(f"{g['compute']:g}: " + _value_ci(g, '+.4f')
                              for g in arm["quality_gain_equal_wall"])
            lines.append(
                f"  wall clock (a teacher step took {arm['teacher_wall_ratio']:.3f} "
                f"student steps of time: {timing['teacher_seconds_per_step']:.4f} s "
                f"against {timing['student_seconds_per_step']:.4f} s; its FLOPs "
                f"say {arm['teacher_flops_ratio']:.3f}): saved at scratch's best "
                f"{metric} {_value_ci(arm['compute_saved_wall'], '.0%')}; gain at "
                f"equal time {gains}")
    lines.append(
        "budget: compute in student-step equivalents; scratch / grown: final "
        f"{metric} (mean ± s.e. over seeds) of runs each ending in its own "
        "cooldown, the grown arm with the teacher counted; gain: grown minus "
        "scratch at equal compute (positive = grown better), 95% interval; saved: "
        "1 - grown compute / scratch compute to reach the quality, interpolated, "
        "never extrapolated.")
    return "\n".join(lines)


def small_alone_lines(small, metric):
    """The small model alone (--small_alone): its frontier and the grown arm's
    and scratch's gains over it at equal compute."""
    # Compute is whole teacher steps x the FLOPs ratio: the budgets, to a step.
    points = ", ".join(f"{c:.0f}: {_mean_se(small, j)}"
                       for j, c in enumerate(small["compute"]))
    gains = lambda key: ", ".join(f"{g['compute']:.0f}: " + _value_ci(g, '+.4f')
                                  for g in small[key])
    return [f"  small model alone (the teacher's architecture, "
            f"{'/'.join(map(str, small['steps']))} steps): final {metric} {points}",
            f"    grown minus small at equal compute: {gains('grown_gain_equal_compute')}",
            f"    scratch minus small at equal compute: "
            f"{gains('scratch_gain_equal_compute')}"]


def _teacher_cost(arm):
    """The teacher's cost: one number, or per budget (--teacher_share) with
    each budget's teacher steps."""
    cost = arm["teacher_cost_in_student_steps"]
    if not isinstance(cost, list):
        return f"{cost:.1f}"
    return ("/".join(f"{c:.1f}" for c in cost) + " (teachers of "
            + "/".join(str(t) for t in arm["teacher_steps"]) + " steps)")


def _mean_se(points, j):
    mean = points["mean"][j]
    se = points["se"][j] if points["se"] else None
    return f"{mean:.4f}" + ("" if se is None else f" ± {se:.4f}")


def _value_ci(summary, spec):
    if summary["mean"] is None:
        missing = summary.get("missing", 0)
        return (f"- ({missing} of {summary['n']} seeds without a value)"
                if missing else "-")
    text = format(summary["mean"], spec)
    if summary.get("ci"):
        low, high = summary["ci"]
        text += f" [{format(low, spec)}, {format(high, spec)}]"
    return text


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
