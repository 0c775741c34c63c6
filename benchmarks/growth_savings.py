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
  fresh optimizer together), for a several-seed look at the best changes;
- growth time scaled with the budget: `share_0.25` (noise 0.5 and a fresh
  optimizer, the teacher given a quarter of each budget's compute: T = B/4,
  `round(0.25 B / flops_ratio)` teacher steps; the teachers are one
  warmup-stable run per seed with each growth point's cooldown branched off
  it, so each ends in its own decay); `share_0.25_lr3` the same with the
  peak rate swept over 0.5/1/2x for both arms;
- width initialisation, each `share_0.25` with one change (issue 23):
  `share_0.25_fresh` (`new_units="fresh"`: new FFN units and attention heads
  freshly drawn with zero outgoing weights; the residual stream keeps
  copies), `share_0.25_split` (`split="random"`: LEMON-like unequal splits of
  the copies' outgoing weights), `share_0.25_fresh_split` (both),
  `share_0.25_noise_1.0` (balanced noise 1.0 instead of 0.5);
- growth from the teacher's stable phase (`grow_from="stable"`: each budget's
  teacher is a point of one warmup-stable run, no cooldown trained):
  `stable_0.25` (fresh Adam; `stable_0.125`: an eighth of each budget to
  the teacher), `stable_0.25_carry` (the teacher run's Adam
  state carried, its schedule continued), `stable_0.25_carry_rewarm` /
  `_rewarm150` (re-warmed over 20 / 150 steps), `stable_0.25_warm150` (a
  fresh Adam warmed up over 150 steps), `stable_0.25_noise_0.1`,
  `stable_0.25_fresh_split`, `stable_0.25_sp` (shrink and perturb 0.9 / 0.1
  after growth: not exact), and `stable_0.25_wider` / `stable_0.25_deeper`
  (width or depth alone, each against its own scratch);
- the residual stream rotated after growth (exact; `training.stream_rotation`):
  `stable_0.25_rot` (angle 1 radian), `stable_0.25_rot_pi` (pi),
  `stable_0.25_fresh_split_rot` (with fresh units and random splits);
- an eighth of each budget to the teacher: `stable_0.125`, and depth or
  width alone `stable_0.125_deeper` / `_wider`; `stable_0.125_deeper_stack`
  (depth alone, trained blocks stacked: G_stack, not exact),
  `stable_0.125_deeper4` (x4 deep alone, three identity copies per block),
  and the same at a quarter and a sixteenth: `stable_0.25_deeper4`,
  `stable_0.0625_deeper4`; `stable_0.125_deeper8` (x8 deep alone, seven
  identity copies per block);
- `stable_0.25_sp_0.5`: shrink 0.5 and perturb 0.1 after growth (Ash &
  Adams' shrink; not exact).

`--scratch_cache=FILE` keeps scratch's runs in a file (pickle) across
processes: a later study with the same profile, seeds and rate sweep reads
them instead of running them again.

Scratch's runs are the same for every recipe (same seeds, budgets and rate
sweep): they run once and are shared. With `--eval_every` the stable phases
are evaluated on the way, and each recipe also reports where staged
training's rule would grow (the first teacher evaluation whose loss gain per
FLOP falls below scratch's at the same loss, from the constant-rate parts of
the curves) and writes the loss slope against loss for both arms.

Each arm is also timed: seconds per teacher and per student step, measured
side by side in this process, give the wall-clock view (the teacher counted
at its measured time per step instead of its FLOPs).

Prints one line per recipe (compute saved at scratch's best quality and at its
half-compute quality, teacher counted; quality gain at equal compute per
budget) and writes every report to --out.

    python benchmarks/growth_savings.py --profile=quick      # ~10 min, 2 cores
    python benchmarks/growth_savings.py --profile=medium     # ~30 min a recipe, 2 cores
    python benchmarks/growth_savings.py --profile=full       # hours on 2 cores
    python benchmarks/growth_savings.py --profile=full --recipes=arms,noise_0.5
    python benchmarks/growth_savings.py --profile=full --recipes=stable_0.25 \
        --learning_rate=4e-3 --lr_sweep=0.5,1,2 --eval_every=360   # ~40 min, 2 cores
    python benchmarks/growth_savings.py --profile=full --recipes=stable_0.25 \
        --learning_rate=4e-3 --lr_sweep=0.5,1,2 --eval_every=360 \
        --dataset=stdlib_bytes/large   # the same on data no run reads twice

On a GPU machine the same command runs on the GPU (TensorFlow's default
device); `--global_batch_size` and `--width` scale the study up.
"""

import dataclasses
import json
import math
import os
import time

from absl import app
from absl import flags

from keras_net2net import choices
from keras_net2net.bin import flags as shared_flags
from keras_net2net.training import comparison_options
from keras_net2net.training import config as config_lib

FLAGS = flags.FLAGS
PROFILES = {
    # A minute's check that the study runs end to end; its figures mean nothing.
    "smoke": dict(budgets=(40, 60, 80), teacher_steps=20, seeds=1,
                  eval_examples=64, lr_sweep=(1.0,)),
    # Budgets in student-step equivalents of the x2-wide x2-deep student.
    "quick": dict(budgets=(90, 180, 360), teacher_steps=100, seeds=1,
                  eval_examples=1024, lr_sweep=(1.0, 2.0)),
    "medium": dict(budgets=(360, 720, 1440), teacher_steps=200, seeds=2,
                   eval_examples=1024, lr_sweep=(1.0, 2.0)),
    "full": dict(budgets=(360, 720, 1440, 2880), teacher_steps=400, seeds=3,
                 eval_examples=2048, lr_sweep=(0.5, 1.0, 2.0)),
}


def define_recipes_flag(flag_values=FLAGS):
    names = list(recipes(teacher_steps=1, depth=1))
    flags.DEFINE_list("recipes", names, f"Recipes to run: {', '.join(names)}.",
                      flag_values=flag_values)
    flags.register_validator(
        "recipes", lambda value: shared_flags.raise_problem(_recipes_problem(value, names)),
        flag_values=flag_values)


def _recipes_problem(value, names):
    """What is wrong with a --recipes value, or None (as the binaries'
    `*_problem` checks)."""
    unknown = [name for name in value if name not in names]
    if not unknown:
        return None
    return f"no recipe is called {', '.join(unknown)}; pick from {', '.join(names)}."


def define_flags():
    flags.DEFINE_enum("profile", "quick", list(PROFILES), "Study size.")
    define_recipes_flag()
    flags.DEFINE_string("data_dir", "runs/tensorflow_datasets", "TFDS data directory "
                        "(the byte data set is built offline into it).")
    flags.DEFINE_string("out", "runs/growth_savings", "Where the reports go.")
    flags.DEFINE_string("dataset", choices.STDLIB_BYTES, "The byte data set: "
                        "stdlib_bytes (2.5 MB, the demo's: the longest grown runs read "
                        "it three times) or stdlib_bytes/large (12 MB: no run of the "
                        "full profile reads a window twice).")
    flags.DEFINE_integer("width", 32, "Teacher width (the demo's).")
    flags.DEFINE_integer("depth", 2, "Teacher blocks (the demo's).")
    flags.DEFINE_integer("global_batch_size", 32, "Examples per step.")
    flags.DEFINE_float("learning_rate", 2e-3, "Base peak rate (swept x the profile's "
                       "multiples for both arms).")
    flags.DEFINE_integer("seeds", None, "Override the profile's seed count.")
    flags.DEFINE_integer("first_seed", 0, "Seeds first_seed .. first_seed + seeds - 1: "
                         "more seeds for a recipe run before, in another process "
                         "(per-seed figures combine; the rates are chosen per seed).",
                         lower_bound=0)
    flags.DEFINE_list("lr_sweep", None, "Override the profile's peak-rate sweep "
                      "(multiples of --learning_rate, for both arms), e.g. 1,2,4.")
    flags.DEFINE_integer("eval_every", 0, "Evaluate the stable phases every this "
                         "many steps (0: only the runs' ends); needed for the "
                         "staged-training rule and the slope curves.")
    flags.DEFINE_bool("small_alone", False, "Also train the teacher's architecture "
                      "alone to each budget's compute (net2net-compare --small_alone): "
                      "is the grown model better than the small one trained on?")
    flags.DEFINE_string("scratch_cache", None, "A file (pickle) holding scratch's "
                        "runs across processes: read at the start if it exists, "
                        "written after every recipe. Only for the same profile, "
                        "seeds, data and model flags (the runs are keyed by "
                        "seed, budgets, rate sweep, eval rhythm, base rate and batch).")


def _deepen(depth, how):
    return {(f"block{i}_ln1", f"block{i}_res2"): how for i in range(1, depth + 1)}


def recipes(teacher_steps, depth):
    """{name: (arms, run_comparison keyword arguments)} for a teacher of `depth`
    blocks and a profile of `teacher_steps`. Reads no flags: the flag list of
    recipe names is built from it before flags are parsed."""
    Arm = comparison_options.Arm
    identity, stacked = _deepen(depth, 1), _deepen(depth, "stack")
    both = [Arm("both", widen=2.0, deepen=identity)]
    # x4 deep alone: three identity copies after each block.
    deeper4 = [Arm("deeper4", deepen=_deepen(depth, 3))]
    # x8 deep: seven identity copies after each block (the teacher ~1/8 of a
    # student step).
    deeper8 = [Arm("deeper8", deepen=_deepen(depth, 7))]
    base = dict(teacher_steps=teacher_steps, carry_optimizer=True,
                rewarm_steps=10, noise=0.05)
    share = {**base, "noise": 0.5, "carry_optimizer": False, "rewarm_steps": 0,
             "teacher_share": 0.25}
    # Growth from the teacher's stable phase (before its decay), fresh Adam.
    stable = {**share, "grow_from": "stable"}
    eighth = {**stable, "teacher_share": 0.125}
    sixteenth = {**stable, "teacher_share": 0.0625}
    return {
        "arms": ([Arm("both", widen=2.0, deepen=identity), Arm("wider", widen=2.0),
                  Arm("deeper", deepen=identity),
                  Arm("both_stack", widen=2.0, deepen=stacked)], base),
        "noise_0.5": (both, {**base, "noise": 0.5}),
        "fresh_optimizer": (both, {**base, "carry_optimizer": False, "rewarm_steps": 0}),
        "no_rewarm": (both, {**base, "rewarm_steps": 0}),
        "teacher_half": (both, {**base, "teacher_steps": teacher_steps // 2}),
        "teacher_double": (both, {**base, "teacher_steps": teacher_steps * 2}),
        # The baseline's `both` arm alone, and the two best single changes of
        # the quick profile together.
        "both": (both, base),
        "noise_0.5_fresh": (both, {**base, "noise": 0.5, "carry_optimizer": False,
                                   "rewarm_steps": 0}),
        # Growth time scaled with the budget (T = B/4 in compute).
        "share_0.25": (both, share),
        "share_0.25_lr3": (both, {**share, "lr_scales": [0.5, 1.0, 2.0]}),
        # Width initialisation (issue 23): the copies of Net2WiderNet against
        # fresh new units, LEMON-like unequal splits, more noise.
        "share_0.25_fresh": (both, {**share, "growth_options": {"new_units": "fresh"}}),
        "share_0.25_split": (both, {**share, "growth_options": {"split": "random"}}),
        "share_0.25_fresh_split": (both, {**share, "growth_options": {
            "new_units": "fresh", "split": "random"}}),
        "share_0.25_noise_1.0": (both, {**share, "noise": 1.0}),
        # Growth from the teacher's stable phase (before its decay): growth
        # inside one run. With a fresh Adam, or the teacher's state carried
        # (its schedule continued, no re-warmup; or 20 steps from 0.1 x).
        "stable_0.25": (both, stable),
        # Growth earlier: an eighth of each budget to the teacher (at 2,880 that
        # is 2,430 teacher steps, where staged training's rule grows).
        "stable_0.125": (both, eighth),
        # Earlier still (a sixteenth: 152 to 1,215 teacher steps), past staged
        # training's rule at every budget: does the trend from 0.25 to 0.125 go on?
        "stable_0.0625": (both, sixteenth),
        "stable_0.25_carry": (both, {**stable, "carry_optimizer": True}),
        "stable_0.25_carry_rewarm": (both, {**stable, "carry_optimizer": True,
                                            "rewarm_steps": 20}),
        # Shrink and perturb after growth (Ash & Adams 2020; not exact).
        "stable_0.25_sp": (both, {**stable, "shrink_perturb": (0.9, 0.1)}),
        # Ash & Adams' own shrink (0.5): more of the trained weights given up
        # for plasticity (the warm-starting gap is their finding).
        "stable_0.25_sp_0.5": (both, {**stable, "shrink_perturb": (0.5, 0.1)}),
        # A longer warmup of the grown arm: right after growth each copy
        # takes a full Adam step and the copies move together.
        "stable_0.25_warm150": (both, {**stable, "student_warmup_steps": 150}),
        "stable_0.25_carry_rewarm150": (both, {**stable, "carry_optimizer": True,
                                               "rewarm_steps": 150, "rewarm_from": 0.25}),
        # Less balanced noise: less hidden error to surface as copies part.
        "stable_0.25_noise_0.1": (both, {**stable, "noise": 0.1}),
        "stable_0.25_fresh_split": (both, {**stable, "growth_options": {
            "new_units": "fresh", "split": "random"}}),
        # The residual stream rotated after growth (exact): its copy pairs
        # stop being coordinate pairs, so Adam moves them apart with no
        # hidden error. Angle 1 radian, or a thorough mix (pi).
        "stable_0.25_rot": (both, {**stable, "rotate_stream": 1.0}),
        "stable_0.25_rot_pi": (both, {**stable, "rotate_stream": math.pi}),
        "stable_0.25_fresh_split_rot": (both, {**stable, "rotate_stream": 1.0, "growth_options": {
            "new_units": "fresh", "split": "random"}}),
        # Width or depth alone, each against its own scratch.
        "stable_0.25_wider": ([Arm("wider", widen=2.0)], stable),
        "stable_0.25_deeper": ([Arm("deeper", deepen=identity)], stable),
        # The same at the share that did best at 1,440.
        "stable_0.125_wider": ([Arm("wider", widen=2.0)], eighth),
        "stable_0.125_deeper": ([Arm("deeper", deepen=identity)], eighth),
        # Depth alone with trained blocks stacked (G_stack; not exact), against
        # the same scratch as the identity blocks (same arm name, same cache key).
        "stable_0.125_deeper_stack": ([Arm("deeper", deepen=stacked)], eighth),
        # Depth alone x4 (three identity copies per block): the teacher costs
        # ~a quarter of a student step, so its head start is cheaper.
        "stable_0.125_deeper4": (deeper4, eighth),
        # The same at a quarter and a sixteenth of each budget to the teacher:
        # a teacher step costs ~a quarter of a student step here, so is its
        # head start worth more teacher steps, or the student more steps?
        "stable_0.25_deeper4": (deeper4, stable),
        "stable_0.0625_deeper4": (deeper4, sixteenth),
        # x8 deep at the share that kept x4 closest to scratch at 2,880: does
        # a cheaper teacher step buy more head start for the same share?
        "stable_0.125_deeper8": (deeper8, eighth),
    }


def _line(name, arm_name, arm):
    def percent(stat):
        mean = stat.get("mean")
        if mean is None:
            return "not reached"
        ci = stat.get("ci")
        return f"{100 * mean:+.0f}%" + (f" [{100 * ci[0]:+.0f}, {100 * ci[1]:+.0f}]"
                                         if ci else "")
    gains = ", ".join(f"{g['compute']:.0f}: {g['mean']:+.3f}" for g in
                      arm["quality_gain_equal_compute"] if g.get("mean") is not None)
    text = (f"{name + ' ' + arm_name:<28} saved at best {percent(arm['compute_saved']):<22}"
            f" at half {percent(arm['compute_saved_at_half']):<22} gain in nats at equal "
            f"compute (+ = grown better) {gains}")
    small = arm.get("small_alone")
    if small:
        text += (f"\n{'':<28} small model alone ({'/'.join(map(str, small['steps']))} "
                 "steps) loss " + ", ".join(f"{c:.0f}: {m:.3f}" for c, m in
                                            zip(small["compute"], small["mean"]))
                 + "; grown minus small (+ = grown better) " + ", ".join(
                     f"{g['compute']:.0f}: {g['mean']:+.3f}" for g in
                     small["grown_gain_equal_compute"] if g.get("mean") is not None))
    if arm.get("compute_saved_wall"):
        wall_gains = ", ".join(f"{g['compute']:.0f}: {g['mean']:+.3f}" for g in
                               arm["quality_gain_equal_wall"] if g.get("mean") is not None)
        text += (f"\n{'':<28} wall clock (teacher step = {arm['teacher_wall_ratio']:.3f} "
                 f"student steps of time, FLOPs say {arm['teacher_flops_ratio']:.3f}): "
                 f"saved at best {percent(arm['compute_saved_wall'])}, gain {wall_gains}")
    return text


def _slopes(curve, unit):
    """(loss midpoints, loss change per unit of compute) between successive
    evaluations of a curve's stable phase (branch None), compute = step x
    unit."""
    points = [(p["step"] * unit, p["loss"]) for p in curve if p.get("branch") is None]
    points.sort()
    mids, slopes = [], []
    for (c0, l0), (c1, l1) in zip(points, points[1:]):
        if c1 > c0:
            mids.append((l0 + l1) / 2)
            slopes.append((l1 - l0) / (c1 - c0))
    return mids, slopes


def staged_rule(report):
    """Where staged training's rule would grow, per seed and arm: the first
    teacher evaluation (teacher steps) after which the teacher's loss falls
    more slowly per unit of compute (student-step equivalents) than
    scratch's does at the same loss, interpolated in loss on scratch's
    stable-phase curve. Needs curves evaluated on the way (--eval_every);
    None where the teacher never falls behind on its measured curve.
    Also the slope-against-loss points of teacher, scratch and grown arms,
    to tell a head start (same slope at the same loss) from a rate."""
    import numpy as np

    out = {}
    teacher_curves = report["teacher"]["curve"]
    for arm_name, arm in report["arms"].items():
        ratio = arm["teacher_flops_ratio"]
        rows = []
        for seed, scratch_curve in enumerate(arm["curves"]["scratch"]):
            t_mid, t_slope = _slopes(teacher_curves[seed] or [], ratio)
            s_mid, s_slope = _slopes(scratch_curve or [], 1.0)
            g_mid, g_slope = _slopes(arm["curves"]["grown"][seed] or [], 1.0)
            grow = None
            if len(s_mid) >= 2 and t_mid:
                order = np.argsort(s_mid)
                steps = sorted(p["step"] for p in teacher_curves[seed]
                               if p.get("branch") is None)
                for k, (loss, slope) in enumerate(zip(t_mid, t_slope)):
                    if not s_mid[order[0]] <= loss <= s_mid[order[-1]]:
                        continue
                    scratch_slope = np.interp(loss, np.asarray(s_mid)[order],
                                              np.asarray(s_slope)[order])
                    if slope > scratch_slope:  # losses fall: slopes < 0
                        grow = {"teacher_steps": steps[k + 1], "loss": loss,
                                "teacher_slope": slope, "scratch_slope": float(scratch_slope)}
                        break
            rows.append({"grow_at": grow,
                         "teacher": {"loss": t_mid, "slope": t_slope},
                         "scratch": {"loss": s_mid, "slope": s_slope},
                         "grown": {"loss": g_mid, "slope": g_slope}})
        out[arm_name] = rows
    return out


def _load_cache(path):
    import pickle

    if path and os.path.exists(path):
        with open(path, "rb") as f:
            cache = pickle.load(f)
        print(f"scratch cache {path}: {len(cache)} run set(s)", flush=True)
        return cache
    return {}


def _save_cache(path, cache):
    import pickle

    if path:
        with open(path + ".tmp", "wb") as f:
            pickle.dump(cache, f)
        os.replace(path + ".tmp", path)


def slopes_at_equal_loss(report):
    """Head start or rate? Per arm and seed, at each loss the grown run's
    stable phase passes (after its first evaluation past growth: the
    re-warmup's rise is left out), its loss change per student step beside
    scratch's at the same loss (interpolated on scratch's stable curve):
    [(loss, grown slope, scratch slope)]. Equal slopes at equal loss: a head
    start; a steeper grown slope: a rate. With a teacher per budget
    (`teacher_share`) the grown curve is the largest budget's run."""
    import numpy as np

    out = {}
    for arm_name, rows in report["staged_rule"].items():
        per_seed = []
        for row in rows:
            s_loss = np.asarray(row["scratch"]["loss"])
            s_slope = np.asarray(row["scratch"]["slope"])
            order = np.argsort(s_loss)
            pairs = []
            for k, (loss, slope) in enumerate(zip(row["grown"]["loss"], row["grown"]["slope"])):
                if k == 0 or not len(order) or not s_loss[order[0]] <= loss <= s_loss[order[-1]]:
                    continue
                pairs.append((loss, slope, float(np.interp(loss, s_loss[order], s_slope[order]))))
            per_seed.append(pairs)
        out[arm_name] = per_seed
    return out


def main(argv):
    del argv
    from keras_net2net import models
    from keras_net2net.training import comparison
    from keras_net2net.training import experiment

    profile = dict(PROFILES[FLAGS.profile])
    seeds = FLAGS.seeds or profile["seeds"]
    config = config_lib.RunConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir,
        global_batch_size=FLAGS.global_batch_size, learning_rate=FLAGS.learning_rate,
        lr_schedule="wsd", warmup_steps=10, eval_every=FLAGS.eval_every,
        eval_examples=profile["eval_examples"], log_every=10_000)
    strategy = experiment.prepare_process(config)
    teacher_fn = lambda info: models.build_model(
        "gpt", info.input_shape, info.num_classes, width=FLAGS.width, depth=FLAGS.depth)
    os.makedirs(FLAGS.out, exist_ok=True)
    table = recipes(profile["teacher_steps"], FLAGS.depth)
    lines, began = [], time.perf_counter()
    scratch_cache = _load_cache(FLAGS.scratch_cache)
    for name in FLAGS.recipes:
        arms, options = table[name]
        options = dict(options)
        lr_scales = options.pop("lr_scales", [float(x) for x in FLAGS.lr_sweep]
                                if FLAGS.lr_sweep else list(profile["lr_sweep"]))
        print(f"== {name}: {', '.join(a.name for a in arms)}, {options}, lr x "
              f"{lr_scales}", flush=True)
        recipe_began = time.perf_counter()
        report = comparison.run_comparison(
            dataclasses.replace(config), strategy, teacher_fn, arms,
            seeds=list(range(FLAGS.first_seed, FLAGS.first_seed + seeds)),
            budgets=list(profile["budgets"]),
            lr_scales=lr_scales, metric="loss", progress=print,
            scratch_cache=scratch_cache, small_alone=FLAGS.small_alone, **options)
        report["recipe"] = {"name": name, "lr_scales": lr_scales,
                            "seconds": time.perf_counter() - recipe_began,
                            **{k: v for k, v in options.items()}}
        if FLAGS.eval_every:
            report["staged_rule"] = staged_rule(report)
            for arm_name, rows in report["staged_rule"].items():
                print(f"{name} {arm_name}: staged training's rule grows at "
                      + ", ".join("never (on the measured curve)" if r["grow_at"] is None
                                  else f"{r['grow_at']['teacher_steps']} teacher steps "
                                  f"(loss {r['grow_at']['loss']:.3f})" for r in rows)
                      + f"; this recipe grows at {report['arms'][arm_name]['teacher_steps']}")
            report["slopes_at_equal_loss"] = slopes_at_equal_loss(report)
            for arm_name, per_seed in report["slopes_at_equal_loss"].items():
                print(f"{name} {arm_name}: loss change per student step at equal loss "
                      "(grown vs scratch, x1e-4): " + "; ".join(
                          ", ".join(f"{l:.3f}: {1e4 * g:+.2f} vs {1e4 * sc:+.2f}"
                                    for l, g, sc in pairs) or "none" for pairs in per_seed))
        with open(os.path.join(FLAGS.out, f"{name}.json"), "w") as f:
            json.dump(report, f, indent=1)
        _save_cache(FLAGS.scratch_cache, scratch_cache)
        for arm_name, arm in report["arms"].items():
            lines.append(_line(name, arm_name, arm))
        print("\n".join(lines[-len(report["arms"]):]), flush=True)
    print(f"\n== growth savings study, profile {FLAGS.profile} ({seeds} seed(s), budgets "
          f"{profile['budgets']}, {time.perf_counter() - began:.0f} s)")
    print("\n".join(lines))


if __name__ == "__main__":
    define_flags()
    app.run(main)
