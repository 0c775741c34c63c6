r"""Does growing pay, and which recipe pays most? The savings study.

Runs the frontier protocol of `keras_net2net.training.comparison` (every run
ending in its own decay, compute counted with the teacher, learning rates
swept for both arms on a selection split, mean and 95% interval over seeds)
on the byte-level GPT of `make demo`, for a set of recipes:

- arms (one run, one shared teacher per seed): `both` (x2 wide, each block
  followed by an identity copy), `wider`, `deeper`, `both_stack` (each
  block followed by a stacked copy of its trained weights, G_stack: not
  function-preserving);
- options, each a run of the `both` arm against the baseline's settings:
  `noise_0.5` (balanced symmetry-breaking noise 0.5 instead of 0.05),
  `fresh_optimizer` (a new Adam with warmup instead of the teacher's state),
  `no_rewarm` (the carried state without re-warmup);
- growth time: `teacher_half` / `teacher_double` grow after half / twice
  the baseline's teacher steps;
- `both` (the baseline's arm alone) and `noise_0.5_fresh` (noise 0.5 and a
  fresh optimizer together), for a several-seed look at the best changes.

Prints one line per recipe (compute saved at scratch's best quality and at its
half-compute quality, teacher counted; quality gain at equal compute per
budget) and writes every report to --out.

    python benchmarks/growth_savings.py --profile=quick      # ~10 min, 2 cores
    python benchmarks/growth_savings.py --profile=medium     # ~30 min a recipe, 2 cores
    python benchmarks/growth_savings.py --profile=full       # hours on 2 cores
    python benchmarks/growth_savings.py --profile=full --recipes=arms,noise_0.5

On a GPU machine the same command runs on the GPU (TensorFlow's default
device); `--global_batch_size` and `--width` scale the study up.
"""

import dataclasses
import json
import os
import time

from absl import app
from absl import flags

from keras_net2net import choices
from keras_net2net.training import config as config_lib

FLAGS = flags.FLAGS
PROFILES = {
    # Budgets in student-step equivalents of the x2-wide x2-deep student.
    "quick": dict(budgets=(90, 180, 360), teacher_steps=100, seeds=1,
                  eval_examples=1024, lr_sweep=(1.0, 2.0)),
    "medium": dict(budgets=(360, 720, 1440), teacher_steps=200, seeds=2,
                   eval_examples=1024, lr_sweep=(1.0, 2.0)),
    "full": dict(budgets=(360, 720, 1440, 2880), teacher_steps=400, seeds=3,
                 eval_examples=2048, lr_sweep=(0.5, 1.0, 2.0)),
}
RECIPES = ("arms", "noise_0.5", "fresh_optimizer", "no_rewarm", "teacher_half",
           "teacher_double", "both", "noise_0.5_fresh")


def define_flags():
    flags.DEFINE_enum("profile", "quick", list(PROFILES), "Study size.")
    flags.DEFINE_list("recipes", list(RECIPES), f"Recipes to run: {', '.join(RECIPES)}.")
    flags.DEFINE_string("data_dir", "runs/tensorflow_datasets", "TFDS data directory "
                        "(the byte data set is built offline into it).")
    flags.DEFINE_string("out", "runs/growth_savings", "Where the reports go.")
    flags.DEFINE_integer("width", 32, "Teacher width (the demo's).")
    flags.DEFINE_integer("depth", 2, "Teacher blocks (the demo's).")
    flags.DEFINE_integer("global_batch_size", 32, "Examples per step.")
    flags.DEFINE_float("learning_rate", 2e-3, "Base peak rate (swept x the profile's "
                       "multiples for both arms).")
    flags.DEFINE_integer("seeds", None, "Override the profile's seed count.")


def _deepen(depth, how):
    return {(f"block{i}_ln1", f"block{i}_res2"): how for i in range(1, depth + 1)}


def _recipes(profile):
    """{name: (arms, run_comparison keyword arguments)}."""
    from keras_net2net.training import comparison

    Arm = comparison.Arm
    identity, stacked = _deepen(FLAGS.depth, 1), _deepen(FLAGS.depth, "stack")
    both = [Arm("both", widen=2.0, deepen=identity)]
    base = dict(teacher_steps=profile["teacher_steps"], carry_optimizer=True,
                rewarm_steps=10, noise=0.05)
    teacher = profile["teacher_steps"]
    return {
        "arms": ([Arm("both", widen=2.0, deepen=identity), Arm("wider", widen=2.0),
                  Arm("deeper", deepen=identity),
                  Arm("both_stack", widen=2.0, deepen=stacked)], base),
        "noise_0.5": (both, {**base, "noise": 0.5}),
        "fresh_optimizer": (both, {**base, "carry_optimizer": False, "rewarm_steps": 0}),
        "no_rewarm": (both, {**base, "rewarm_steps": 0}),
        "teacher_half": (both, {**base, "teacher_steps": teacher // 2}),
        "teacher_double": (both, {**base, "teacher_steps": teacher * 2}),
        # The baseline's `both` arm alone, and the two best single changes of
        # the quick profile together.
        "both": (both, base),
        "noise_0.5_fresh": (both, {**base, "noise": 0.5, "carry_optimizer": False,
                                   "rewarm_steps": 0}),
    }


def _line(name, arm_name, arm):
    def percent(stat):
        mean = stat.get("mean")
        if mean is None:
            return "not reached"
        ci = stat.get("ci")
        return f"{100 * mean:+.0f}%" + (f" [{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}]"
                                         if ci else "")
    gains = ", ".join(f"{g['compute']:g}: {g['mean']:+.3f}" for g in
                      arm["quality_gain_equal_compute"] if g.get("mean") is not None)
    return (f"{name:<16}{arm_name:<12} saved at best {percent(arm['compute_saved']):<22}"
            f" at half {percent(arm['compute_saved_at_half']):<22} gain in nats at equal "
            f"compute (+ = grown better) {gains}")


def main(argv):
    del argv
    from keras_net2net import models
    from keras_net2net.training import comparison
    from keras_net2net.training import experiment

    profile = dict(PROFILES[FLAGS.profile])
    seeds = FLAGS.seeds or profile["seeds"]
    config = config_lib.RunConfig(
        dataset=choices.STDLIB_BYTES, data_dir=FLAGS.data_dir,
        global_batch_size=FLAGS.global_batch_size, learning_rate=FLAGS.learning_rate,
        lr_schedule="wsd", warmup_steps=10, eval_every=0,
        eval_examples=profile["eval_examples"], log_every=10_000)
    strategy = experiment.prepare_process(config)
    teacher_fn = lambda info: models.build_model(
        "gpt", info.input_shape, info.num_classes, width=FLAGS.width, depth=FLAGS.depth)
    os.makedirs(FLAGS.out, exist_ok=True)
    recipes = _recipes(profile)
    lines, began = [], time.perf_counter()
    for name in FLAGS.recipes:
        arms, options = recipes[name]
        print(f"== {name}: {', '.join(a.name for a in arms)}, {options}", flush=True)
        report = comparison.run_comparison(
            dataclasses.replace(config), strategy, teacher_fn, arms,
            seeds=list(range(seeds)), budgets=list(profile["budgets"]),
            lr_scales=list(profile["lr_sweep"]), metric="loss", progress=print,
            **options)
        report["recipe"] = {"name": name, **{k: v for k, v in options.items()}}
        with open(os.path.join(FLAGS.out, f"{name}.json"), "w") as f:
            json.dump(report, f, indent=1)
        for arm_name, arm in report["arms"].items():
            lines.append(_line(name, arm_name, arm))
        print("\n".join(lines[-len(report["arms"]):]), flush=True)
    print(f"\n== growth savings study, profile {FLAGS.profile} ({seeds} seed(s), budgets "
          f"{profile['budgets']}, {time.perf_counter() - began:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    app.run(main)
