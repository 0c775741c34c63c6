"""Net2Net students vs the same architectures trained from scratch.

For each seed: train a teacher; for each arm (e.g. wider, deeper, both),
grow the teacher into a student with `keras_net2net.expand_model` and train
it; build the same architecture with fresh weights (`keras.models.clone_model`
re-runs the initialisers) and train that "scratch twin" on the same batches
and evaluation set. The protocol is meant not to flatter Net2Net:

- The student continues the teacher's data stream: its first batch is the
  one the teacher would have read next, never the teacher's first again.
- Each run follows `config`'s learning-rate schedule over its own budget
  (teacher, student and scratch twin each end in their own decay); a
  student that carries the teacher's optimizer starts the schedule at the
  teacher's step count.
- The scratch twin trains at least as many steps as teacher and student
  together, at its own best learning rate from a small sweep (run on the
  first seed; the sweep is reported).
- The target is the scratch twin's converged value: the mean of its last
  `LAST` evaluations (accuracy, or validation loss).
- A curve reaches the target at the first evaluation from which the mean of
  `WINDOW` consecutive evaluations is at or past it; a curve there at step 0
  is credited one evaluation interval (the finest step count it resolves).
- Two speed-ups: student steps only (the teacher as a sunk cost, as papers
  report it) and total, where the teacher's steps count at its training FLOPs
  per step relative to the student's; `compute_saved = 1 - (teacher FLOPs +
  student FLOPs to the target) / scratch FLOPs to the target`. Each comes
  with the ceiling the evaluation grid can show.

```python
arms = [Arm("wider", widen=2.0), Arm("deeper", deepen=["conv2", "fc1"])]
report = run_comparison(config, strategy, teacher_fn, arms, seeds=[0, 1, 2],
                        teacher_steps=1000, student_steps=600)
report["arms"]["wider"]["speedup"], report["arms"]["wider"]["speedup_total"]
```
"""

import dataclasses
import functools
import os
import time

from absl import logging
import keras
import numpy as np

import keras_net2net as n2n
from keras_net2net import spans
from keras_net2net.data import inputs
from keras_net2net.training import evaluation
from keras_net2net.training import experiment
from keras_net2net.training import flops as flops_lib
from keras_net2net.training import schedules

LAST = 5  # evaluations averaged into the scratch twin's converged value
WINDOW = 3  # consecutive evaluations whose mean must reach the target
METRICS = ("accuracy", "loss")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One way to grow the teacher.

    Attributes:
        name: a label such as "wider".
        widen: as for `keras_net2net.expand_model`.
        deepen: as for `keras_net2net.expand_model`.
    """
    name: str
    widen: object = None
    deepen: object = None


def converged(values, last=LAST):
    """The mean of the last `last` evaluations of a curve.

    Example:
    >>> converged([0.1, 0.5, 0.8, 0.9, 0.9, 0.9, 1.0], last=5)
    0.9
    """
    return float(np.mean(values[-last:]))


def steps_to_reach(steps, values, target, *, higher_is_better=True,
                   window=WINDOW):
    """The first evaluated step from which `window` evaluations reach `target`.

    Args:
        steps: evaluated step numbers, ascending.
        values: the metric at each of them.
        target: the value to reach.
        higher_is_better: True for accuracy (reach: mean >= target), False
            for a loss (reach: mean <= target).
        window: consecutive evaluations averaged; 1 is the first evaluation
            at or past the target.

    Returns:
        The step, or None if no window of the curve reaches `target`.

    Example:
    >>> steps_to_reach([0, 10, 20, 30], [0.1, 0.9, 0.7, 0.9], 0.8)
    10
    >>> steps_to_reach([0, 10, 20, 30], [2.0, 1.0, 1.4, 1.3], 1.2,
    ...                higher_is_better=False) is None
    True
    """
    sign = 1.0 if higher_is_better else -1.0
    for i in range(len(values) - window + 1):
        if sign * float(np.mean(values[i:i + window])) >= sign * target:
            return steps[i]
    return None


def speedup(student_steps, student, scratch_steps, scratch, interval, *,
            higher_is_better=True, teacher_cost=0.0):
    """How much sooner a student reaches its scratch twin's converged value.

    Args:
        student_steps: the student's evaluated steps, from 0.
        student: the student's metric at each.
        scratch_steps: the scratch twin's evaluated steps, from 0.
        scratch: the scratch twin's metric at each.
        interval: steps between evaluations. Reaching the target at step 0
            counts as one interval: the grid cannot resolve anything finer.
        higher_is_better: True for accuracy, False for a loss.
        teacher_cost: the teacher's training in student-step equivalents
            (teacher steps x teacher FLOPs per step / student FLOPs per step).

    Returns:
        A dict: "target" (scratch's converged value); "steps_scratch" (where
        scratch reaches it, its last step if no window does: it is its own
        final value); "steps_student" (None: never); "speedup" (scratch steps
        / student steps); "speedup_total" (scratch steps / (teacher_cost +
        student steps)); "compute_saved" (1 - 1 / speedup_total); "ceiling"
        and "ceiling_total" (the largest values the grid can show: scratch's
        budget over one interval, with the teacher's cost for the total);
        "final_student", "final_scratch" (converged values of both).

    Example:
    >>> r = speedup([0, 10, 20, 30, 40], [0.9] * 5, list(range(0, 110, 10)),
    ...             [0.1, 0.5, 0.7, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9],
    ...             interval=10, teacher_cost=20)
    >>> r["steps_scratch"], r["steps_student"], r["speedup"], r["speedup_total"]
    (50, 10, 5.0, 1.6666666666666667)
    """
    target = converged(scratch)
    reach = lambda steps, values: steps_to_reach(
        steps, values, target, higher_is_better=higher_is_better)
    steps_scratch = reach(scratch_steps, scratch)
    steps_scratch = max(scratch_steps[-1] if steps_scratch is None
                        else steps_scratch, interval)
    steps_student = reach(student_steps, student)
    if steps_student is not None:
        steps_student = max(steps_student, interval)
    total = None if steps_student is None else teacher_cost + steps_student
    budget = scratch_steps[-1]
    return {
        "target": target, "steps_scratch": steps_scratch,
        "steps_student": steps_student,
        "speedup": None if total is None else steps_scratch / steps_student,
        "speedup_total": None if total is None else steps_scratch / total,
        "compute_saved": None if total is None else 1.0 - total / steps_scratch,
        "ceiling": budget / interval,
        "ceiling_total": budget / (teacher_cost + interval),
        "final_student": converged(student), "final_scratch": target,
    }


def run_comparison(config, strategy, teacher_fn, arms, *, seeds,
                   teacher_steps, student_steps, scratch_steps=None,
                   student_lr_scale=0.1, scratch_lr_scales=(0.5, 1.0, 2.0),
                   carry_optimizer=False, metric="accuracy", noise=0.0,
                   sweep_every_arm=True, output_dir=None, progress=None):
    """Trains teachers, students and scratch twins and compares them.

    Args:
        config: an `experiment.RunConfig` (optimizer, learning rate, batch
            size, eval_every, data, precision...). `eval_every` must be > 0.
        strategy: from `experiment.prepare_process`.
        teacher_fn: `teacher_fn(info)` builds a fresh teacher model.
        arms: a list of `Arm`.
        seeds: seeds to repeat everything with (weights and data order).
        teacher_steps: training steps of each teacher.
        student_steps: training steps of each student.
        scratch_steps: training steps of each scratch twin; default and
            minimum `teacher_steps + student_steps`.
        student_lr_scale: student learning rate / `config.learning_rate`.
        scratch_lr_scales: the sweep: scratch learning rates as multiples of
            `config.learning_rate`, tried on the first seed; the best
            converged value wins for the other seeds.
        carry_optimizer: start each student with the teacher's optimizer
            state (`keras_net2net.expand_optimizer`) instead of a fresh one.
        metric: "accuracy" (higher is better) or "loss" (the evaluation
            loss; lower is better) to compare on.
        noise: symmetry-breaking noise for `expand_model`.
        sweep_every_arm: sweep each arm's twin; False sweeps the first arm's
            only and gives its pick to the others (for time: each sweep point
            is one more scratch run).
        output_dir: where to keep each seed's teacher and final models
            (`seed_<s>/<name>.keras`); None keeps none.
        progress: `progress(message)` is called at the start of every phase;
            default: absl logging.

    Returns:
        A JSON-ready dict; see `bin/compare.py` for the layout.

    Raises:
        ValueError: if `config.eval_every` is not positive, `arms`, `seeds`
            or `scratch_lr_scales` is empty, `metric` is unknown, or
            `scratch_steps` is below `teacher_steps + student_steps`.
    """
    if config.eval_every <= 0:
        raise ValueError("Expected eval_every > 0 to draw learning curves. "
                         f"Received: eval_every={config.eval_every}")
    if not arms or not seeds or not scratch_lr_scales:
        raise ValueError(f"Expected at least one arm, seed and scratch learning "
                         f"rate. Received: arms={arms}, seeds={seeds}, "
                         f"scratch_lr_scales={scratch_lr_scales}")
    if metric not in METRICS:
        raise ValueError(f"Expected metric in {METRICS}. Received: "
                         f"metric={metric!r}")
    scratch_steps = scratch_steps or teacher_steps + student_steps
    if scratch_steps < teacher_steps + student_steps:
        raise ValueError(
            f"Expected scratch_steps >= teacher_steps + student_steps = "
            f"{teacher_steps + student_steps}: the scratch twin gets at least "
            f"the steps of teacher and student together. Received: "
            f"scratch_steps={scratch_steps}. Fix: raise it or leave it unset.")
    began = time.perf_counter()
    say = progress or (lambda message: logging.info("%s", message))
    log = lambda message: say(f"[{time.perf_counter() - began:6.0f} s] {message}")
    input_fns = experiment.make_inputs(config)
    eval_arrays = inputs.load_arrays(
        config.dataset, "eval", data_dir=config.data_dir,
        limit=config.eval_examples, synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes)
    plan = _Plan(teacher_steps, student_steps, scratch_steps, student_lr_scale,
                 tuple(scratch_lr_scales), carry_optimizer, metric, noise,
                 sweep_every_arm)
    # Teachers share one trainer, and each arm's student and scratch twins
    # (one architecture) another: each traces its training step once.
    sweeps, runs, trainers = {}, [], {}
    for seed in seeds:
        runs.append(_run_seed(
            dataclasses.replace(config, seed=seed), strategy, teacher_fn, arms,
            input_fns, eval_arrays, plan, sweeps, log,
            output_dir and os.path.join(output_dir, f"seed_{seed}"), trainers))
    log("Comparison done.")
    return _summarise(runs, arms, seeds, config, plan, sweeps,
                      len(eval_arrays[1]))


@dataclasses.dataclass(frozen=True)
class _Plan:
    teacher_steps: int
    student_steps: int
    scratch_steps: int
    student_lr_scale: float
    scratch_lr_scales: tuple
    carry_optimizer: bool
    metric: str
    noise: float
    sweep_every_arm: bool = True


def _run_seed(config, strategy, teacher_fn, arms, input_fns, eval_arrays, plan,
              sweeps, log, output_dir, trainers):
    def train(model_fn, **kwargs):
        return experiment.train(config, strategy, model_fn, model_dir="",
                                input_fns=input_fns, eval_at_start=True,
                                trainers=trainers, **kwargs)

    held = {}

    def teacher_optimizer(model, learning_rate):
        del model
        held["optimizer"] = experiment.make_optimizer(config, learning_rate,
                                                      plan.teacher_steps)
        return held["optimizer"]

    log(f"seed {config.seed}: teacher, {plan.teacher_steps} steps")
    teacher, teacher_history = train(teacher_fn, train_steps=plan.teacher_steps,
                                     optimizer_fn=teacher_optimizer,
                                     reuse_key="teacher")
    run = {"teacher": teacher_history, "arms": {}}
    models = {"teacher": teacher}
    student_lr = config.learning_rate * plan.student_lr_scale
    for arm in arms:
        expanded = {}

        def grow(info, arm=arm, expanded=expanded):
            del info
            student, expanded["report"] = n2n.expand_model(
                teacher, widen=arm.widen, deepen=arm.deepen, noise=plan.noise,
                seed=config.seed, return_report=True)
            return student

        def student_optimizer(model, learning_rate):
            if not plan.carry_optimizer:
                return experiment.make_optimizer(config, learning_rate,
                                                 plan.student_steps)
            optimizer = n2n.expand_optimizer(held["optimizer"], model)
            # Its own schedule over its own budget, from the carried step count.
            schedules.set_learning_rate(optimizer, experiment.learning_rate_schedule(
                config, learning_rate, plan.student_steps,
                start_step=plan.teacher_steps))
            return optimizer

        log(f"seed {config.seed}: {arm.name} student, {plan.student_steps} steps")
        student, student_history = train(
            grow, train_steps=plan.student_steps, learning_rate=student_lr,
            optimizer_fn=student_optimizer, reuse_key=arm.name,
            data_offset=plan.teacher_steps)
        # Same architecture, fresh weights: clone_model re-runs every
        # layer's initialiser instead of copying the student's weights.
        twin = lambda info, student=student: keras.models.clone_model(student)
        swept = arm.name if plan.sweep_every_arm else arms[0].name
        if swept not in sweeps:
            sweep = _sweep(functools.partial(train, reuse_key=arm.name), twin,
                           arm, config, plan, log)
            sweeps[swept] = sweep
            scratch, scratch_history = sweep.pop("best_run")
        else:
            sweeps[arm.name] = sweeps[swept]
            scale = sweeps[swept]["chosen_scale"]
            log(f"seed {config.seed}: {arm.name} scratch twin, "
                f"{plan.scratch_steps} steps at {scale:g} x lr")
            scratch, scratch_history = train(
                twin, train_steps=plan.scratch_steps,
                learning_rate=config.learning_rate * scale, reuse_key=arm.name)
        # Latency is a by-product here (net2net-evaluate is the tool for it):
        # a median of 5 batches, not 20.
        versus = evaluation.compare_models(
            teacher, student, *eval_arrays, names=("teacher", "student"),
            latency_batches=5)
        run["arms"][arm.name] = {
            "student": student_history, "scratch": scratch_history,
            "max_relative_error": expanded["report"].max_relative_error,
            "params": {"teacher": teacher.count_params(),
                       "student": student.count_params()},
            "train_flops_per_step": {
                "teacher": flops_lib.training_flops(teacher, config.global_batch_size),
                "student": flops_lib.training_flops(student, config.global_batch_size)},
            "teacher_vs_final_student": versus,
        }
        models[f"{arm.name}_student"] = student
        models[f"{arm.name}_scratch"] = scratch
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        for name, model in models.items():
            model.save(os.path.join(output_dir, f"{name}.keras"))
    return run


def _sweep(train, twin, arm, config, plan, log):
    """Trains the scratch twin at every learning rate of the sweep; keeps the
    run with the best converged value."""
    results, best = [], None
    for scale in plan.scratch_lr_scales:
        log(f"seed {config.seed}: {arm.name} scratch twin, {plan.scratch_steps} "
            f"steps at {scale:g} x lr (sweep)")
        model, history = train(twin, train_steps=plan.scratch_steps,
                               learning_rate=config.learning_rate * scale)
        value = converged(_curve(history, plan.metric)[1])
        results.append(value)
        better = best is None or (value > best[0] if plan.metric == "accuracy"
                                  else value < best[0])
        if better:
            best = (value, scale, (model, history))
    return {"seed": config.seed, "arm": arm.name, "scales": list(plan.scratch_lr_scales),
            "learning_rates": [config.learning_rate * s
                               for s in plan.scratch_lr_scales],
            "converged": results, "chosen_scale": best[1],
            "chosen_learning_rate": config.learning_rate * best[1],
            "best_run": best[2]}


def _curve(history, metric):
    return ([e["step"] for e in history["eval"]],
            [e[metric] for e in history["eval"]])


def _summarise(runs, arms, seeds, config, plan, sweeps, eval_examples):
    metric = plan.metric
    higher = metric == "accuracy"
    teacher_final = [converged(_curve(r["teacher"], metric)[1]) for r in runs]
    report = {
        "seeds": list(seeds),
        "metric": metric,
        "eval_examples": eval_examples,
        "protocol": {"last": LAST, "window": WINDOW,
                     "interval": config.eval_every,
                     "training_flops": "3 x forward (flops.TRAINING_MULTIPLIER)"},
        "settings": {**dataclasses.asdict(config),
                     **dataclasses.asdict(plan),
                     "student_learning_rate":
                         config.learning_rate * plan.student_lr_scale},
        "teacher": {
            f"{metric}_per_seed": teacher_final,
            metric: float(np.mean(teacher_final)),
            "train_seconds_per_seed": [r["teacher"]["train_seconds"]
                                       for r in runs],
        },
        "arms": {},
    }
    for arm in arms:
        per_seed = [r["arms"][arm.name] for r in runs]
        flops = per_seed[0]["train_flops_per_step"]
        ratio = flops["teacher"] / flops["student"]
        cost = plan.teacher_steps * ratio
        steps = _curve(per_seed[0]["student"], metric)[0]
        scratch_steps = _curve(per_seed[0]["scratch"], metric)[0]
        student = [_curve(s["student"], metric)[1] for s in per_seed]
        scratch = [_curve(s["scratch"], metric)[1] for s in per_seed]
        mean_student = np.mean(student, axis=0).tolist()
        mean_scratch = np.mean(scratch, axis=0).tolist()
        compare = lambda a, b: speedup(steps, a, scratch_steps, b,
                                       config.eval_every, higher_is_better=higher,
                                       teacher_cost=cost)
        seeds_result = [compare(a, b) for a, b in zip(student, scratch)]
        summary = compare(mean_student, mean_scratch)
        report["arms"][arm.name] = {
            "widen": arm.widen, "deepen": spans.jsonable(arm.deepen),
            "params": per_seed[0]["params"],
            "train_flops_per_step": flops,
            "teacher_flops_ratio": ratio,
            "teacher_cost_in_student_steps": cost,
            "max_relative_error_per_seed": [s["max_relative_error"]
                                            for s in per_seed],
            "scratch_sweep": sweeps[arm.name],
            "steps": steps, "scratch_steps": scratch_steps,
            f"student_{metric}": mean_student,
            f"scratch_{metric}": mean_scratch,
            f"student_{metric}_per_seed": student,
            f"scratch_{metric}_per_seed": scratch,
            **summary,
            "per_seed": {key: [r[key] for r in seeds_result] for key in (
                "target", "steps_scratch", "steps_student", "speedup",
                "speedup_total", "compute_saved", "final_student")},
            # The student starts at the teacher's value; how long scratch
            # takes to get there is the other half of the paper's picture.
            "steps_scratch_to_teacher": steps_to_reach(
                scratch_steps, mean_scratch, report["teacher"][metric],
                higher_is_better=higher),
            "teacher_vs_final_student": [s["teacher_vs_final_student"]
                                         for s in per_seed],
        }
    return report
