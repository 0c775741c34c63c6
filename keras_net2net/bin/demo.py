r"""What `make demo` runs: net2net-compare on an image task and a language model.

1. Image: a small CNN teacher (4/8/16 channels) on `distorted_digits` (20,118
   training and 2,160 test images of distorted 16x16 digits, built offline
   from scikit-learn's bundled digits), where it clearly underfits; grown
   x4 deep (three identity convs after each of conv2 and conv3, three
   identity Dense layers after fc1); 3 seeds.
2. Language model: a 2-block GPT of width 32 on `stdlib_bytes` (byte windows
   of this Python's standard library sources), grown x4 deep (each
   transformer block followed by three copies of itself whose output
   projections start at zero: `keras_net2net.spans`); each budget's teacher
   trains a quarter of the budget's compute (`--teacher_share=0.25`), and
   the student grows from the teacher run's stable phase, before any decay
   (`--grow_from=stable`); 3 seeds.

Both parts measure the frontier of net2net-compare: scratch and the grown
arm at three compute budgets each, every run ending in its own cooldown, the
grown arm grown with balanced noise 0.5 and trained by a fresh Adam with
warmup (the best recipe of benchmarks/growth_savings.py). Both also train the
small model alone (`--small_alone`: the teacher's architecture given each
budget's compute), the baseline that says whether the grown model was worth
its size.

Writes `<model_dir>/report.json` with a "headline" object (per arm the
frontier, "compute_saved" and "compute_saved_sunk" at scratch's best quality
with a 95% interval over seeds, "quality_gain_equal_compute", and the
wall-clock view "compute_saved_wall" / "quality_gain_equal_wall", the
teacher counted at its seconds per step measured beside the student's) and both
parts' reports; `frontier.png`, `curves.png` and `slope.png` (image arms:
the loss slope per student-step equivalent against the loss, from the
evaluations every --eval_every steps), `lm_frontier.png`, `lm_curves.png` and
`lm_slope.png`. Needs no network. `--teacher_share`, `--grow_from` and
`--[no]small_alone` apply to both parts.

    python -m keras_net2net.bin.demo --model_dir=runs/demo
    python -m keras_net2net.bin.demo --model_dir=runs/demo --parts=lm

The flags of net2net-compare set the image part (only the defaults
differ); the language model's settings are `LM_SETTINGS`, with the
device, strategy and data-directory flags carried over.
"""

import json
import os
import time

from absl import app
from absl import flags

from keras_net2net import choices
from keras_net2net.bin import compare
from keras_net2net.bin import console
from keras_net2net.bin import flags as shared_flags

experiment = console.lazy_module("keras_net2net.training.experiment")

FLAGS = flags.FLAGS

# Sized to fit 10 minutes on 2 cores (see BUILD_NOTES.md for the timing it
# rests on). Budgets are in student-step equivalents; each arm's runs at all
# three share one stable phase (cooldowns branched off it). The grown arm
# takes the best recipe of benchmarks/growth_savings.py (BUILD_NOTES.md):
# balanced noise 0.5 (still exact) and a fresh Adam with 10 warmup steps, as
# scratch has. Peak rates: the sweep tried for every arm alike on the first seed.
DEMO_DEFAULTS = {
    "model_dir": "runs/demo",
    "data_dir": "runs/tensorflow_datasets",
    "dataset": choices.DISTORTED_DIGITS,
    "teacher_widths": ["4", "8", "16"],
    "teacher_steps": 150,
    "budgets": ["150", "300", "600"],
    # x4 deep: the shape that paid on the LM. x2 wide alone ended level with
    # scratch or below it here; x2 wide and x4 deep ("both") saved 15% [-6, 36],
    # but its small model alone (13,568 steps at 600) took the demo past 10
    # minutes (BUILD_NOTES.md, "The small model alone"). A deep plain CNN
    # trains slowly from random weights, which the identity start avoids, so
    # the small model alone is the baseline to read beside scratch.
    "arms": ["deeper"],
    "deepen": "conv2:3,conv3:3,fc1:3",
    "small_alone": True,
    "eval_every": 50,
    "global_batch_size": 64,
    "learning_rate": 2e-3,
    "lr_schedule": "wsd",
    "warmup_steps": 10,
    "carry_optimizer": False,
    "noise": 0.5,
    # Bracketed on these settings for scratch and the grown arm (1x and 2x);
    # the small model alone chose 4x at 150.
    "lr_sweep": ["0.5", "1", "2", "4"],
    "seeds": 3,
}
LM_SETTINGS = {
    "dataset": choices.STDLIB_BYTES,
    "teacher_model": "gpt",
    "teacher_width": 32,
    "teacher_depth": 2,
    # x4 deep (three identity copies after each block, width kept): ahead
    # of scratch on the mean at every budget up to 2,880 steps in the savings
    # study (BUILD_NOTES.md, "Depth x4 alone"; six seeds, one 0.012 nats
    # behind at 2,880). x8 did better there ("Depth x8") but runs a 16-block
    # scratch twin, not timed in the demo yet. On these settings x4 saved 47%
    # [29, 66] at scratch's best loss against 32% [21, 44] for x2 wide and x2
    # deep, and 49% against 13% by the wall clock (its teacher step costs
    # ~0.25 of a student step in time, 0.276 in FLOPs; x2 wide's cost 0.32
    # for 0.148).
    "arms": ["deeper"],
    "deepen": "block1_ln1..block1_res2:3,block2_ln1..block2_res2:3",
    # Growth time scaled with the budget: each budget's teacher trains a
    # quarter of its compute (82/163/326 teacher steps at FLOPs ratio 0.276),
    # its cooldown branched off one teacher run. Measured against one
    # 100-step teacher on the demo's own settings, x2 wide x2 deep (BUILD_NOTES.md, "The
    # frontier in the binaries"): saved at scratch's best loss 31% [17, 45]
    # against 16% [7, 25], 3 seeds.
    "teacher_share": 0.25,
    # Each student grows from its teacher's stable phase (no teacher cooldown
    # for the student to undo): 32% [21, 44] saved (seeds 33/28/37%) against
    # 31% [17, 45] (31/25/36%) grown from cooled-down teachers, on these
    # settings (x2 wide x2 deep); medium profile of benchmarks/growth_savings.py alike.
    "grow_from": "stable",
    "budgets": ["90", "180", "360"],
    # Evaluations on the way for lm_slope.png (the slope against the loss).
    "eval_every": 45,
    # 1,024 selection and 1,024 reported sequences: each evaluation of the
    # whole split costs as much as ~40 training steps.
    "eval_examples": 2048,
    "global_batch_size": 32,
    "learning_rate": 2e-3,
    "lr_schedule": "wsd",
    "warmup_steps": 10,
    "carry_optimizer": False,
    "lr_sweep": ["1", "2"],
    "noise": 0.5,
    "small_alone": True,
    "seeds": 3,
}
# Flags of the command line the language model part keeps.
_CARRIED = ("data_dir", "strategy", "num_gpus", "tpu", "num_cpu_devices",
            "mixed_precision", "jit_compile", "seed", "log_every")
PARTS = ("image", "lm")


def define_flags(flag_values=FLAGS):
    """net2net-compare's flags with the demo's defaults, plus --parts."""
    compare.define_flags(flag_values)
    for name, value in DEMO_DEFAULTS.items():
        flag_values.set_default(name, value)
    flags.DEFINE_list("parts", list(PARTS), "Parts of the demo to run: image, "
                      "lm.", flag_values=flag_values)
    flags.register_validator(
        "parts", lambda parts: bool(parts) and set(parts) <= set(PARTS),
        message="Expected a list of image, lm such as image,lm. Fix: e.g. "
        "--parts=lm", flag_values=flag_values)


def lm_flag_values(flag_values=FLAGS):
    """Parsed compare flags for the language model part: `LM_SETTINGS` plus
    the device and data flags of the command line."""
    lm = flags.FlagValues()
    compare.define_flags(lm)
    settings = {**LM_SETTINGS, **{n: flag_values[n].value for n in _CARRIED},
                "model_dir": os.path.join(flag_values.model_dir, "lm")}
    # These, given to the demo, apply to both parts.
    for name in ("teacher_share", "grow_from", "small_alone"):
        if flag_values[name].present:
            settings[name] = flag_values[name].value
    if settings.get("teacher_share") is not None:
        settings.pop("teacher_steps", None)  # the share sets them per budget
    # Parsed as one command line, so that the validators that tie flags
    # together (model and data set) see all of them at once.
    lm(["demo-lm"] + [_argument(lm[name], value) for name, value in settings.items()
                      if value is not None])
    return lm


def _argument(flag, value):
    if isinstance(value, bool):
        return f"--{'' if value else 'no'}{flag.name}"
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    return f"--{flag.name}={value}"


HEADLINE_KEYS = ("frontier", "compute_saved", "compute_saved_sunk",
                 "compute_saved_at_half", "quality_gain_equal_compute",
                 "teacher_flops_ratio", "teacher_steps",
                 "teacher_cost_in_student_steps", "compute_saved_wall",
                 "quality_gain_equal_wall", "teacher_wall_ratio", "seconds_per_step",
                 "small_alone")


def headline(image, lm):
    """The figures a reader looks at first, from the two parts' reports: per
    arm the frontier, the compute saved at scratch's best quality (teacher
    counted, and already paid for) with its 95% interval over seeds, and the
    quality gain at equal compute per budget."""
    out = {}
    for part, report in (("image", image), ("lm", lm)):
        if report:
            out[part] = {name: {key: _brief(key, arm.get(key)) for key in HEADLINE_KEYS}
                         for name, arm in report["arms"].items()}
            out[part]["metric"] = report["metric"]
            out[part]["eval_examples"] = report["eval_examples"]
            out[part]["seeds"] = len(report["seeds"])
    return out


def _brief(key, value):
    """The small model's figures without its curves and sweep (in the report)."""
    if key == "small_alone" and value:
        return {k: v for k, v in value.items() if k not in ("curves", "lr_sweep")}
    return value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    began = time.perf_counter()
    progress = lambda message: print(message, flush=True)
    config = shared_flags.run_config()
    strategy = experiment.prepare_process(config)
    model_dir = config.model_dir
    image = lm = None
    if "image" in FLAGS.parts:
        progress(f"== image: {config.dataset}, {FLAGS.teacher_model} teacher, "
                 f"arms {','.join(FLAGS.arms)}, {FLAGS.seeds} seed(s)")
        image = compare.run_from_flags(config, strategy,
                                       os.path.join(model_dir, "image"),
                                       progress=progress)
    if "lm" in FLAGS.parts:
        lm_flags = lm_flag_values()
        progress(f"== language model: {lm_flags.dataset}, gpt width "
                 f"{lm_flags.teacher_width} x {lm_flags.teacher_depth} blocks")
        lm = compare.run_from_flags(shared_flags.run_config(lm_flags), strategy,
                                    lm_flags.model_dir, flag_values=lm_flags,
                                    progress=progress)
    if image is None and lm is None:
        return  # not the chief
    seconds = time.perf_counter() - began
    report = {"headline": headline(image, lm), "wall_seconds": seconds,
              "image": image, "lm": lm}
    for part, sub, prefix in ((image, "image", ""), (lm, "lm", "lm_")):
        if part is not None:
            for name in (compare.CURVES_FILENAME, compare.FRONTIER_FILENAME,
                         compare.SLOPE_FILENAME):
                if os.path.exists(os.path.join(model_dir, sub, name)):
                    os.replace(os.path.join(model_dir, sub, name),
                               os.path.join(model_dir, prefix + name))
    with open(os.path.join(model_dir, compare.REPORT_FILENAME), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report["headline"], indent=1))
    print(f"demo finished in {seconds:.0f} s; see {model_dir}/report.json, "
          f"{model_dir}/frontier.png, {model_dir}/lm_frontier.png and the "
          f"learning curves and slope plots beside them.")


def run():
    """Entry point of `python -m keras_net2net.bin.demo`."""
    # The demo's progress is its own printed lines; the runs' step logs come
    # back with -v 0.
    console.run_main(define_flags, main, project_info=False)


if __name__ == "__main__":
    run()
