"""Does growing pay? Net2Net students against scratch as compute-to-quality
frontiers.

For each seed: train a teacher; for each arm (e.g. wider, both), grow it into
a student with `keras_net2net.expand_model`, and train the student and the
same architecture from fresh weights ("scratch") at several compute budgets.
The protocol is the published work's (staged training, LEMON, MSG, G_stack;
see DESIGN.md "Measuring whether growth pays"), meant not to flatter growth:

- Compute is counted in student-step equivalents: a step of the student's
  architecture is 1, a teacher step its training FLOPs per step relative to
  the student's (`flops.training_flops`). Scratch trains `budget` steps; the
  grown arm `budget - teacher_steps x ratio` steps after growth, so both
  spend the same compute with the teacher counted.
- Every run ends in its own decay: warmup-stable-decay over its own budget.
  The stable phase runs once per learning rate and each budget's cooldown
  branches off a copy of the model and optimizer (Hägele et al. 2024: a WSD
  cooldown branched off one stable run matches a full run of that length).
- The grown arm runs at scratch's peak rate: with the teacher's optimizer
  state carried and a short re-warmup (`carry_optimizer`, `rewarm_steps`),
  or a fresh optimizer with `config.warmup_steps` of warmup, as scratch has.
  It continues the teacher's data stream.
- The peak rate is swept for both arms alike (`lr_scales`) on the first
  seed and chosen per budget on a selection split: the first half of the
  held-out examples. Every quality reported comes from the second half.
- The figures come from `training.frontier` on the final qualities: the
  compute saved at scratch's best quality and at the quality scratch reaches
  with half its largest compute (interpolated, never extrapolated; "not
  reached" said as such), and the quality gain at equal compute per scratch
  budget; teacher counted and teacher already paid for; mean, standard
  error and 95% interval over seeds, with per-seed values. No window rule.
- With `small_alone`, the teacher's architecture is also trained alone to
  each budget's compute: scratch asks whether growing was cheaper than
  training the large model, the small model whether the large model was
  worth its compute at all (`report["arms"][name]["small_alone"]`).

```python
arms = [Arm("wider", widen=2.0), Arm("both", widen=2.0, deepen=["conv2"])]
report = run_comparison(config, strategy, teacher_fn, arms, seeds=[0, 1, 2],
                        teacher_steps=150, budgets=[90, 180, 360])
report["arms"]["wider"]["compute_saved"]["mean"]
```

`speedup` and `steps_to_reach` are the previous protocol's race to one point
on a learning curve, kept for curves measured that way.
"""

import dataclasses
import functools
import math
import os
import time

from absl import logging
import keras
import numpy as np

import keras_net2net as n2n
from keras_net2net import options
from keras_net2net.data import inputs
from keras_net2net.training import comparison_options
from keras_net2net.training import experiment
from keras_net2net.training import flops as flops_lib
from keras_net2net.training import frontier as frontier_lib
from keras_net2net.training import loop
from keras_net2net.training import optimizers
from keras_net2net.training import perturb as perturb_lib
from keras_net2net.training import schedule_options
from keras_net2net.training import schedules
from keras_net2net.training import stream_rotation

LAST = 5  # evaluations averaged into the scratch twin's converged value
WINDOW = 3  # consecutive evaluations whose mean must reach the target
METRICS = comparison_options.METRICS


Arm = comparison_options.Arm


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


def run_comparison(config, strategy, teacher_fn, arms, *, seeds, teacher_steps,
                   budgets, lr_scales=(1.0,), carry_optimizer=False,
                   rewarm_steps=0, rewarm_from=schedule_options.DEFAULT_REWARM_FROM,
                   metric="accuracy", noise=0.0, output_dir=None, progress=None,
                   min_budgets=1, teacher_share=None, time_steps=True,
                   scratch_cache=None, growth_options=None, grow_from="cooldown",
                   shrink_perturb=None, student_warmup_steps=None,
                   rotate_stream=None, small_alone=False):
    """Grown arms against scratch as compute-to-quality frontiers.

    Args:
        config: an `experiment.RunConfig`: optimizer, base learning rate,
            batch size, data, `warmup_steps`, `cooldown_fraction`,
            `min_lr_ratio`; `eval_every` sets the learning curves' rhythm (0:
            only the ends of the runs). The teacher follows its
            `lr_schedule` over `teacher_steps`.
        strategy: from `experiment.prepare_process`.
        teacher_fn: `teacher_fn(info)` builds a fresh teacher model.
        arms: a list of `Arm`.
        seeds: seeds to repeat everything with (weights); paired by index.
        teacher_steps: training steps of each teacher.
        budgets: increasing compute budgets in student-step equivalents.
            Scratch trains that many steps; a grown arm trains `budget -
            teacher_steps x teacher_flops_ratio` steps after growth.
        lr_scales: peak rates as multiples of `config.learning_rate`, swept
            for scratch and the grown arm alike on the first seed, chosen per
            budget on the selection split.
        carry_optimizer: start each student with the teacher's optimizer
            state (`keras_net2net.expand_optimizer`) and re-warm it over
            `rewarm_steps` from `rewarm_from` x the rate; False: a fresh
            optimizer with `student_warmup_steps` of warmup.
        rewarm_steps: the carried optimizer's re-warmup (0: none).
        rewarm_from: its start as a fraction of the peak rate.
        metric: "accuracy" (higher is better) or "loss".
        noise: symmetry-breaking noise for `expand_model`.
        growth_options: None, or more `expand_model` keywords for every
            growth (`new_units`, `split`), e.g. {"new_units": "fresh"}.
        student_warmup_steps: the fresh optimizer's warmup in the grown arm;
            None: `config.warmup_steps`, as scratch's. (Right after growth
            Adam moves the grown model further per step than its teacher:
            each copy takes a full step and the copies move together.)
        shrink_perturb: None, or (shrink, perturb): each student's weights
            become `shrink x w + perturb x` a fresh initialisation after
            growth (`training.perturb`, Ash & Adams 2020). Not exact: the
            arms then report `"exact": false`.
        rotate_stream: None, or an angle in (0, pi]: after growth each
            student's residual stream is rotated by a random orthogonal map
            that keeps the all-ones direction (`training.stream_rotation`):
            exact, and it makes the stream's copy pairs no longer coordinate
            pairs, so Adam moves them apart. Needs a fresh optimizer (carried
            Adam moments are per coordinate of the old basis).
        small_alone: also train the teacher's architecture alone, from fresh
            weights, to each budget's compute (`budget / teacher_flops_ratio`
            steps, rounded so that its compute stays within the budgets; its
            own WSD per budget, branched off one stable run; the same rate
            sweep): is the grown model better than the small model trained on
            for the same compute? Reported per arm under "small_alone"; with
            `output_dir`, its largest-budget model is kept as
            `<arm>_small.keras`.
        output_dir: where to keep each seed's teacher and its largest-budget
            students and scratch models (`seed_<s>/<name>.keras`); None keeps
            none.
        progress: `progress(message)` at each phase; default absl logging.
        min_budgets: fewest budgets accepted (net2net-compare asks for 3).
        teacher_share: None: every budget's student grows from one teacher
            trained `teacher_steps`. A fraction in (0, 1): growth time scales
            with the budget; the teacher gets `teacher_share` of each budget's
            compute (`round(teacher_share x budget / teacher_flops_ratio)`
            teacher steps) and the student the rest. The teachers are one
            warmup-stable run per seed with each growth point's cooldown
            branched off it (as the students' budgets are), so every teacher
            ends in its own decay; each budget's student grows from its own
            teacher and continues that teacher's data stream. Needs a fresh
            optimizer (`carry_optimizer=False`) unless `grow_from="stable"`.
            `teacher_steps` is ignored.
        grow_from: with `teacher_share`, where each student grows from:
            "cooldown" (each teacher ends in its own decay, then the student
            starts a fresh schedule), or "stable" (the teacher's warmup-stable
            run at its growth point, before any decay: growth inside one run,
            the teacher's steps all at the peak, none spent on a cooldown the
            student would undo). "stable" also allows `carry_optimizer`: the
            teacher's Adam state at that point, its schedule continued from the
            teacher's step count (re-warmed over `rewarm_steps`).
        time_steps: measure seconds per teacher step and per student step
            side by side (first seed) for the wall-clock view
            ("compute_saved_wall"); False: no wall-clock view.
        scratch_cache: a dict shared by comparisons whose scratch runs are the
            same (same config, arms, budgets and rate sweep: a study of several
            growth recipes): scratch's runs, rate sweep and choices are kept in
            it and taken from it. None: scratch runs every time.

    Returns:
        A JSON-ready dict; see the module docstring.

    Raises:
        ValueError: for an empty `arms`, `seeds` or `lr_scales`, an unknown
            `metric`, budgets that are not increasing, or budgets too small to
            hold the teacher's cost, the warmup and the cooldown.
    """
    problem = (comparison_options.budgets_problem(budgets, min_budgets=min_budgets)
               or comparison_options.lr_scales_problem(list(lr_scales)))
    if problem:
        raise ValueError(problem)
    if not arms or not seeds:
        raise ValueError(f"Expected at least one arm and seed. Received: "
                         f"arms={arms}, seeds={seeds}")
    if metric not in METRICS:
        raise ValueError(f"Expected metric in {METRICS}. Received: "
                         f"metric={metric!r}")
    if config.eval_every < 0:
        raise ValueError(f"Expected eval_every >= 0. Received: "
                         f"eval_every={config.eval_every}")
    problem = (comparison_options.grow_from_problem(grow_from, teacher_share)
               or (shrink_perturb is not None
                   and perturb_lib.problem(*shrink_perturb))
               or (rotate_stream is not None
                   and comparison_options.rotate_stream_problem(rotate_stream)))
    if problem:
        raise ValueError(problem)
    if rotate_stream is not None and carry_optimizer:
        raise ValueError("Expected carry_optimizer=False with rotate_stream (Adam's "
                         "moments are per coordinate of the unrotated stream). "
                         "Received: carry_optimizer=True. Fix: carry_optimizer=False, "
                         "or rotate_stream=None.")
    if student_warmup_steps is not None and (
            not isinstance(student_warmup_steps, int) or student_warmup_steps < 0):
        raise ValueError(f"Expected student_warmup_steps a whole number >= 0 or "
                         f"None. Received: student_warmup_steps="
                         f"{student_warmup_steps!r}.")
    if teacher_share is not None:
        problem = comparison_options.teacher_share_problem(teacher_share)
        if problem:
            raise ValueError(problem)
        if carry_optimizer and grow_from != "stable":
            raise ValueError("Expected carry_optimizer=False with teacher_share "
                             "(each budget's teacher is a cooldown branch; its "
                             "optimizer state is not kept). Received: "
                             "carry_optimizer=True. Fix: carry_optimizer=False, "
                             "or grow_from=\"stable\".")
    budgets = [int(b) for b in budgets]
    began = time.perf_counter()
    say = progress or (lambda message: logging.info("%s", message))
    log = lambda message: say(f"[{time.perf_counter() - began:6.0f} s] {message}")
    fns = _split_inputs(config)
    plan = _Plan(teacher_steps, tuple(budgets), tuple(float(s) for s in lr_scales),
                 carry_optimizer, rewarm_steps, rewarm_from, metric, noise,
                 None if teacher_share is None else float(teacher_share),
                 bool(time_steps), tuple(sorted((growth_options or {}).items())),
                 grow_from, None if shrink_perturb is None else
                 tuple(float(x) for x in shrink_perturb),
                 config.warmup_steps if student_warmup_steps is None
                 else student_warmup_steps,
                 None if rotate_stream is None else float(rotate_stream),
                 bool(small_alone))
    facts = {arm.name: _arm_facts(config, teacher_fn, arm, fns.info, plan)
             for arm in arms}
    state = {"trainers": {}, "runners": {}, "chosen": {}, "sweeps": {},
             "scratch_cache": scratch_cache}
    runs = []
    for seed in seeds:
        runs.append(_run_seed(
            dataclasses.replace(config, seed=seed), strategy, teacher_fn, arms,
            fns, plan, facts, state, log,
            output_dir and os.path.join(output_dir, f"seed_{seed}")))
    log("Comparison done.")
    return _summarise(runs, arms, seeds, config, plan, facts, state, fns)


@dataclasses.dataclass(frozen=True)
class _Plan:
    teacher_steps: int
    budgets: tuple
    lr_scales: tuple
    carry_optimizer: bool
    rewarm_steps: int
    rewarm_from: float
    metric: str
    noise: float
    teacher_share: object = None
    time_steps: bool = True
    growth_options: tuple = ()
    grow_from: str = "cooldown"
    shrink_perturb: object = None
    student_warmup_steps: int = 0
    rotate_stream: object = None
    small_alone: bool = False


@dataclasses.dataclass(frozen=True)
class _Inputs:
    train_fn: object
    report_eval_fn: object
    selection_eval_fn: object
    info: object  # the report split's
    selection_info: object
    held_out: int


def _split_inputs(config):
    """Input functions whose held-out split is cut in two: the first half
    selects learning rates, the second is reported."""
    held_out = experiment.make_inputs(config)[2].num_eval_examples
    if held_out < 2:
        raise ValueError(f"Expected >= 2 held-out examples to split into a "
                         f"selection and a reported half. Received: "
                         f"{held_out} (eval_examples={config.eval_examples}).")
    half = held_out // 2
    make = functools.partial(
        inputs.make_input_fns, config.dataset, config.global_batch_size,
        data_dir=config.data_dir, seed=config.seed,
        synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes)
    select_train, select_eval, select_info = make(eval_examples=half)
    train_fn, report_eval, report_info = make(eval_skip=half,
                                              eval_examples=held_out - half)
    del select_train
    return _Inputs(train_fn, report_eval, select_eval, report_info, select_info,
                   held_out)


def _arm_facts(config, teacher_fn, arm, info, plan):
    """Sizes, FLOPs and the grown arm's step budgets, from a throwaway teacher
    and its expansion (architecture only)."""
    keras.utils.set_random_seed(config.seed)
    teacher = teacher_fn(info)
    student = n2n.expand_model(teacher, widen=arm.widen, deepen=arm.deepen,
                               verify=False)
    flops = {"teacher": flops_lib.training_flops(teacher, config.global_batch_size),
             "student": flops_lib.training_flops(student, config.global_batch_size)}
    ratio = flops["teacher"] / flops["student"]
    if plan.teacher_share is None:
        teacher_steps, cost = plan.teacher_steps, plan.teacher_steps * ratio
    else:
        teacher_steps = [max(1, int(round(plan.teacher_share * b / ratio)))
                         for b in plan.budgets]
        cost = [t * ratio for t in teacher_steps]
    costs = cost if isinstance(cost, list) else [cost] * len(plan.budgets)
    # Whole steps: down at the smallest budget and up at the largest, so that
    # the grown arm's measured compute spans scratch's budgets (equal-compute
    # gains interpolate, never extrapolate); exact when the cost is whole.
    last = len(plan.budgets) - 1
    student_steps = [int(math.floor(b - c + 1e-9) if i == 0 else
                         math.ceil(b - c - 1e-9) if i == last else round(b - c))
                     for i, (b, c) in enumerate(zip(plan.budgets, costs))]
    warm = plan.rewarm_steps if plan.carry_optimizer else plan.student_warmup_steps
    for budget, steps in zip(plan.budgets, student_steps):
        need = warm + schedule_options.cooldown_steps(max(steps, 1),
                                                      config.cooldown_fraction)
        if steps < max(need, 1):
            raise ValueError(
                f"Expected every budget to leave the {arm.name!r} arm room after "
                f"its teacher ({teacher_steps} teacher steps x FLOPs ratio "
                f"{ratio:.3f}) for its "
                f"warmup and cooldown ({need} steps). Received: budgets="
                f"{','.join(map(str, plan.budgets))} ({budget} leaves {steps}). "
                f"Fix: raise --budgets or lower --teacher_steps.")
    small_steps = [_small_steps(b, ratio, i, last) for i, b in enumerate(plan.budgets)]
    return {"flops": flops, "ratio": ratio, "cost": cost,
            "teacher_steps": teacher_steps, "student_steps": student_steps,
            "small_steps": small_steps,
            "params": {"teacher": teacher.count_params(),
                       "student": student.count_params()}}


def _small_steps(budget, ratio, index, last):
    """The small model alone's steps for a budget: its compute (steps x ratio)
    at or above the smallest budget and at or below the largest, so that its
    curve lies inside the others' (gains at equal compute never extrapolate)."""
    steps = max(1, int(round(budget / ratio)))
    if index == 0:
        while steps * ratio < budget:
            steps += 1
    if index == last:
        while steps > 1 and steps * ratio > budget:
            steps -= 1
    return steps


class _BranchRunner:
    """One traced training step for an architecture: runs a warmup-stable
    phase once and branches each budget's cooldown off a copy of the model
    and optimizer (`schedules.BranchingWSD`)."""

    def __init__(self, strategy, model, config, fns):
        self.config = config
        with strategy.scope():
            self.schedule = schedules.BranchingWSD(config.learning_rate)
            optimizer = optimizers.make_optimizer(
                config.optimizer, self.schedule,
                loss_scale=config.mixed_precision == "mixed_float16")
            clone = keras.models.clone_model(model)
        self.trainer = loop.Trainer(strategy, clone, optimizer, fns.train_fn,
                                    fns.report_eval_fn, fns.info,
                                    config.global_batch_size,
                                    jit_compile=config.jit_compile)
        # A second view of the same model and optimizer for the selection half.
        self.selector = loop.Trainer(strategy, clone, optimizer, fns.train_fn,
                                     fns.selection_eval_fn, fns.selection_info,
                                     config.global_batch_size)

    def fresh_state(self, model, strategy):
        """Values of `model`'s variables and of a fresh optimizer's."""
        with strategy.scope():
            optimizer = _built_optimizer(self.config, model)
        return _values(model.variables), _values(optimizer.variables)

    def carried_state(self, model, optimizer):
        """Values of `model` and a carried optimizer (its rate is dropped:
        the runner's schedule sets it)."""
        if schedules.schedule_of(optimizer) is None:
            schedules.set_learning_rate(optimizer, schedules.Constant(1.0))
        return _values(model.variables), _values(optimizer.variables)

    def run(self, state, *, origin, budgets, peak, warmup_steps, warm_from,
            warm_offset, data_offset, eval_every, on_branch=None, decay=True):
        """Trains the stable phase and each budget's cooldown.

        Args:
            state: (model values, optimizer values) to start from.
            origin: the optimizer's step count at the start (the teacher's
                steps for a carried optimizer, else 0).
            budgets: increasing step budgets of this run.
            peak: the peak rate.
            warmup_steps, warm_from, warm_offset: the warmup (see
                `schedules.BranchingWSD.set`).
            data_offset: training batches before step 0 (the teacher's).
            eval_every: steps between evaluations of the stable phase.
            on_branch: `on_branch(index, model)` after each budget's cooldown.
            decay: False: no cooldowns; each budget's "branch" is the stable
                run at that step (teachers grown from their stable phase).

        Returns:
            (results, curve): per budget {"steps", "report", "selection",
            "train_loss"}; the stable phase's evaluations on the reported
            split, then each budget's end, as {"step", "loss", "accuracy",
            "branch"}.
        """
        trainer, config = self.trainer, self.config
        _assign(trainer.model.variables, state[0])
        _assign(trainer.optimizer.variables, state[1])
        trainer.step.assign(0)
        trainer.data_offset = data_offset
        stable = dict(peak=peak, warm_start=origin, warmup_steps=warmup_steps,
                      warm_from=warm_from, warm_offset=warm_offset,
                      min_lr_ratio=config.min_lr_ratio)
        self.schedule.set(**stable)
        cooldowns = [schedule_options.cooldown_steps(b, config.cooldown_fraction)
                     if decay else 0 for b in budgets]
        points = [b - c for b, c in zip(budgets, cooldowns)]
        curve = [{"step": 0, **trainer.evaluate(), "branch": None}]
        iterator = trainer.train_iterator(start_step=0)
        step, results = 0, [None] * len(budgets)
        for i in sorted(range(len(budgets)), key=lambda i: points[i]):
            while step < points[i]:
                stop = min(points[i], (step // eval_every + 1) * eval_every
                           if eval_every else points[i])
                trainer.train_steps(iterator, stop - step)
                step = stop
                if eval_every and step % eval_every == 0:
                    curve.append({"step": step, **trainer.evaluate(), "branch": None})
            kept = (_values(trainer.model.variables),
                    _values(trainer.optimizer.variables))
            metrics = {"loss": None}
            if cooldowns[i]:
                self.schedule.set(**stable, decay_start=origin + points[i],
                                  decay_steps=cooldowns[i])
                branch = trainer.train_iterator(start_step=points[i])
                metrics = trainer.train_steps(branch, cooldowns[i])
            report = trainer.evaluate()
            results[i] = {"steps": budgets[i], "report": report,
                          "selection": self.selector.evaluate(),
                          "train_loss": metrics["loss"]}
            curve.append({"step": budgets[i], **report, "branch": i})
            if on_branch:
                on_branch(i, trainer.model)
            _assign(trainer.model.variables, kept[0])
            _assign(trainer.optimizer.variables, kept[1])
            trainer.step.assign(points[i])
            self.schedule.set(**stable)
        return results, curve


def _values(variables):
    return [np.copy(v.value.numpy()) for v in variables]


def _assign(variables, values):
    variables = list(variables)
    if [tuple(v.shape) for v in variables] != [tuple(np.shape(x)) for x in values]:
        raise ValueError(
            f"Expected state of the runner's shapes. Received: "
            f"{[np.shape(x) for x in values]} for "
            f"{[tuple(v.shape) for v in variables]}.")
    for variable, value in zip(variables, values):
        variable.assign(value)


def _run_seed(config, strategy, teacher_fn, arms, fns, plan, facts, state, log,
              output_dir):
    held = {}

    def teacher_optimizer(model, learning_rate):
        del model
        held["optimizer"] = experiment.make_optimizer(config, learning_rate,
                                                      plan.teacher_steps)
        return held["optimizer"]

    run = {"arms": {}}
    models = {}
    if plan.teacher_share is None:
        log(f"seed {config.seed}: teacher, {plan.teacher_steps} steps")
        teacher, teacher_history = experiment.train(
            config, strategy, teacher_fn, model_dir="",
            input_fns=(fns.train_fn, fns.report_eval_fn, fns.info),
            train_steps=plan.teacher_steps, optimizer_fn=teacher_optimizer,
            trainers=state["trainers"], reuse_key="teacher")
        run["teacher"] = teacher_history
        models["teacher"] = teacher
    for arm in arms:
        fact = facts[arm.name]
        teacher_slots = None
        if plan.teacher_share is None:
            teachers = [teacher]
        else:
            teachers, run["teacher"], teacher_slots = _branched_teachers(
                config, strategy, teacher_fn, fns, fact["teacher_steps"], state, log,
                decay=plan.grow_from != "stable")
            run.setdefault("teachers", {})[arm.name] = run["teacher"]
            models["teacher"] = teachers[-1]
        students, reports, carries, rotation_errors = [], [], [], []
        for k, teacher_i in enumerate(teachers):
            with strategy.scope():
                student, report = n2n.expand_model(
                    teacher_i, widen=arm.widen, deepen=arm.deepen, noise=plan.noise,
                    seed=config.seed, return_report=True, **dict(plan.growth_options))
                if plan.rotate_stream is not None:
                    rotation_errors.append(stream_rotation.rotate_stream(
                        student, angle=plan.rotate_stream,
                        seed=config.seed).max_relative_error)
                if plan.shrink_perturb is not None:
                    # Seeded as the scratch twin is: the fresh part is its init.
                    perturb_lib.shrink_perturb(student, *plan.shrink_perturb,
                                               seed=config.seed)
                if not plan.carry_optimizer:
                    carried = None
                elif teacher_slots is None:
                    carried = n2n.expand_optimizer(held["optimizer"], student)
                else:
                    carried = n2n.expand_optimizer(
                        _optimizer_at(config, teacher_i, teacher_slots[k]), student)
            students.append(student)
            reports.append(report)
            carries.append(carried)
        student, carried = students[0], carries[0]
        runner = state["runners"].get(arm.name)
        if runner is None:
            runner = state["runners"][arm.name] = _BranchRunner(strategy, student,
                                                                config, fns)
        if plan.time_steps and arm.name not in state.setdefault("timing", {}):
            state["timing"][arm.name] = _time_steps(
                _teacher_runner(config, strategy, teacher_fn, fns, state).trainer,
                runner.trainer, log)
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            # Same architecture, fresh weights: clone_model re-runs every
            # layer's initialiser instead of copying the student's weights.
            twin = keras.models.clone_model(student)
        if len(students) > 1:
            # One teacher per budget: each budget's student is its own run,
            # a carried optimizer's schedule continuing from its teacher's step.
            grown = dict(parts=[
                _grown_start(runner, strategy, plan, s, c, origin=t)
                for s, t, c in zip(students, fact["teacher_steps"], carries)])
        else:
            grown = dict(parts=None, **_grown_start(runner, strategy, plan, student,
                                                    carried, origin=plan.teacher_steps))
        roles = {
            "scratch": dict(state=runner.fresh_state(twin, strategy),
                            budgets=plan.budgets, data_offset=0,
                            schedule=_fresh_schedule(config.warmup_steps)),
            "grown": dict(budgets=tuple(fact["student_steps"]), **grown),
        }
        if plan.small_alone:
            roles["small"] = _small_spec(config, strategy, teacher_fn, fns, state, fact)
        results = {"max_relative_error": max([r.max_relative_error for r in reports]
                                             + rotation_errors),
                   "exact": plan.shrink_perturb is None and all(r.exact for r in reports)}
        for role, spec in roles.items():
            key = (arm.name, role)
            keep = {}

            def on_branch(i, model, scale, spec=spec, keep=keep):
                # The largest budget's model, at each scale it ran at.
                if output_dir and i == len(spec["budgets"]) - 1:
                    keep[scale] = keras.models.clone_model(model)
                    keep[scale].set_weights(model.get_weights())

            cache = state["scratch_cache"] if role == "scratch" else None
            # The base rate too: the same scales of another base are other runs.
            cache_key = (arm.name, config.seed, plan.budgets, plan.lr_scales,
                         config.eval_every, config.learning_rate,
                         config.global_batch_size)
            if cache is not None and cache_key in cache:
                results[role], state["chosen"][key], state["sweeps"][key] = (
                    cache[cache_key])
                log(f"seed {config.seed}: {arm.name} scratch, the cached runs")
                continue
            role_runner = spec.get("runner", runner)
            if key not in state["chosen"]:
                results[role] = _sweep(role_runner, spec, config, plan, log, arm, role,
                                       state, key, on_branch)
            else:
                results[role] = _chosen_runs(role_runner, spec, config, plan, log, arm,
                                             role, state["chosen"][key], on_branch)
            if cache is not None:
                cache[cache_key] = (results[role], state["chosen"][key],
                                    state["sweeps"][key])
            last_scale = results[role]["scales"][-1]
            if last_scale in keep:
                models[f"{arm.name}_{'student' if role == 'grown' else role}"] = (
                    keep[last_scale])
        run["arms"][arm.name] = results
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        for name, model in models.items():
            model.save(os.path.join(output_dir, f"{name}.keras"))
    return run


def _small_spec(config, strategy, teacher_fn, fns, state, fact):
    """The small model alone: the teacher's architecture from fresh weights,
    trained to each budget's compute; evaluated as often in compute as the
    others (every `eval_every / ratio` of its steps)."""
    runner = _teacher_runner(config, strategy, teacher_fn, fns, state)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = teacher_fn(fns.info)
    return dict(runner=runner, state=runner.fresh_state(model, strategy),
                budgets=tuple(fact["small_steps"]), data_offset=0,
                schedule=_fresh_schedule(config.warmup_steps),
                eval_every=int(round(config.eval_every / fact["ratio"])))


def _fresh_schedule(warmup_steps):
    """A fresh optimizer's schedule: a warmup from 0 at its step 0."""
    return dict(origin=0, warmup_steps=warmup_steps, warm_from=0.0, warm_offset=1)


def _grown_start(runner, strategy, plan, student, carried, *, origin):
    """Where a grown run starts: {"state", "data_offset", "schedule"}. A
    carried optimizer continues from the teacher's step `origin`, re-warmed;
    a fresh one warms up over `plan.student_warmup_steps`."""
    if carried is None:
        return dict(state=runner.fresh_state(student, strategy), data_offset=origin,
                    schedule=_fresh_schedule(plan.student_warmup_steps))
    return dict(state=runner.carried_state(student, carried), data_offset=origin,
                schedule=dict(origin=origin, warmup_steps=plan.rewarm_steps,
                              warm_from=plan.rewarm_from, warm_offset=0))


def _run_role(runner, spec, config, plan, log, arm, role, scale, indices, on_branch):
    parts = spec.get("parts")
    # One run branching every budget's cooldown, or (a teacher per budget)
    # one run per budget from its own start.
    groups = ([(spec["state"], spec["data_offset"], spec["schedule"], list(indices))]
              if parts is None else
              [(parts[i]["state"], parts[i]["data_offset"], parts[i]["schedule"], [i])
               for i in indices])
    began = time.perf_counter()
    results, curve = [], None
    for state, data_offset, schedule, group in groups:
        budgets = [spec["budgets"][i] for i in group]
        log(f"seed {config.seed}: {arm.name} {role}, budgets "
            f"{','.join(map(str, budgets))} steps at {scale:g} x lr"
            + ("" if parts is None else f", after {data_offset} teacher steps"))
        part, curve = runner.run(
            state, budgets=budgets, peak=config.learning_rate * scale,
            data_offset=data_offset,
            eval_every=spec.get("eval_every", config.eval_every),
            on_branch=lambda i, model, group=group: on_branch(group[i], model, scale),
            **schedule)
        results.extend(part)
    return results, curve, time.perf_counter() - began


def _teacher_runner(config, strategy, teacher_fn, fns, state):
    """A `_BranchRunner` on the teacher's architecture (one per comparison)."""
    if "teacher" not in state["runners"]:
        keras.utils.set_random_seed(config.seed)
        with strategy.scope():
            model = teacher_fn(fns.info)
        state["runners"]["teacher"] = _BranchRunner(strategy, model, config, fns)
        state["teacher_init"] = model
    return state["runners"]["teacher"]


def _branched_teachers(config, strategy, teacher_fn, fns, teacher_steps, state, log,
                       decay=True):
    """Teachers trained `teacher_steps[i]` steps each: one warmup-stable run
    at the base rate, each growth point's WSD cooldown branched off it
    (`decay=False`: the stable run itself at each growth point).

    Returns:
        (teachers, history, optimizer_values): one model per entry of
        `teacher_steps`; history {"eval": the reported split's metrics at each
        growth point, "steps", "curve", "train_seconds"}; the runner
        optimizer's variable values at each growth point.
    """
    runner = _teacher_runner(config, strategy, teacher_fn, fns, state)
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        init = teacher_fn(fns.info)
    log(f"seed {config.seed}: teachers, {','.join(map(str, teacher_steps))} steps "
        + ("(cooldowns branched off one run)" if decay
           else "(points of one warmup-stable run)"))
    kept, slots = {}, {}

    def keep(i, model):
        kept[i] = model.get_weights()
        slots[i] = _values(runner.trainer.optimizer.variables)

    began = time.perf_counter()
    results, curve = runner.run(
        runner.fresh_state(init, strategy), origin=0, budgets=list(teacher_steps),
        peak=config.learning_rate, warmup_steps=config.warmup_steps, warm_from=0.0,
        warm_offset=1, data_offset=0, eval_every=config.eval_every,
        on_branch=keep, decay=decay)
    seconds = time.perf_counter() - began
    teachers = []
    for i in range(len(teacher_steps)):
        with strategy.scope():
            model = keras.models.clone_model(init)
        model.set_weights(kept[i])
        teachers.append(model)
    return teachers, {"eval": [r["report"] for r in results],
                      "steps": list(teacher_steps), "curve": curve,
                      "train_seconds": seconds}, [slots[i] for i in range(len(teacher_steps))]


def _built_optimizer(config, model):
    """A fresh optimizer of the config's kind built on `model` (its rate
    a placeholder: the runner's schedule sets it)."""
    optimizer = optimizers.make_optimizer(
        config.optimizer, schedules.Constant(1.0),
        loss_scale=config.mixed_precision == "mixed_float16")
    optimizer.build(model.trainable_variables)
    return optimizer


def _optimizer_at(config, model, values):
    """An optimizer built on `model` holding `values` (a runner optimizer's
    variables on the same architecture), for `expand_optimizer`."""
    optimizer = _built_optimizer(config, model)
    _assign(optimizer.variables, values)
    return optimizer


def _time_steps(teacher, student, log, steps=10, repeats=9):
    """Seconds per training step of two `loop.Trainer`s, measured side by
    side: after a warmup, `repeats` interleaved rounds of `steps` steps each.
    Each one's fastest round is its time per step (on a shared machine the
    slower rounds measure other processes' load as much as this one's work);
    the medians and every round are kept beside it."""
    iterators = [t.train_iterator(start_step=0) for t in (teacher, student)]
    for trainer, iterator in zip((teacher, student), iterators):
        trainer.train_steps(iterator, 2)
    rounds = []
    for _ in range(repeats):
        pair = []
        for trainer, iterator in zip((teacher, student), iterators):
            began = time.perf_counter()
            trainer.train_steps(iterator, steps)
            pair.append((time.perf_counter() - began) / steps)
        rounds.append(pair)
    rounds = np.asarray(rounds)
    fastest = rounds.min(axis=0)
    out = {"teacher_seconds_per_step": float(fastest[0]),
           "student_seconds_per_step": float(fastest[1]),
           "teacher_wall_ratio": float(fastest[0] / fastest[1]),
           "median_seconds_per_step": np.median(rounds, axis=0).tolist(),
           "median_round_ratio": float(np.median(rounds[:, 0] / rounds[:, 1])),
           "rounds": rounds.tolist(), "steps_per_round": steps,
           "statistic": "fastest of the interleaved rounds"}
    log(f"seconds per step (fastest of {repeats} rounds): teacher "
        f"{out['teacher_seconds_per_step']:.4f}, student "
        f"{out['student_seconds_per_step']:.4f}, ratio {out['teacher_wall_ratio']:.3f} "
        f"(median round ratio {out['median_round_ratio']:.3f})")
    return out


def _better(a, b, metric):
    """Whether value a beats b (NaN never does)."""
    if not np.isfinite(a):
        return False
    if b is None or not np.isfinite(b):
        return True
    return a > b if metric == "accuracy" else a < b


def _sweep(runner, spec, config, plan, log, arm, role, state, key, on_branch):
    """Every scale of the sweep at every budget; per budget the scale with the
    best value on the selection split is chosen, and its run reported."""
    every = list(range(len(spec["budgets"])))
    by_scale = {}
    for scale in plan.lr_scales:
        by_scale[scale] = _run_role(runner, spec, config, plan, log, arm, role,
                                    scale, every, on_branch)
    chosen = []
    for i in every:
        best = None
        for scale in plan.lr_scales:
            value = by_scale[scale][0][i]["selection"][plan.metric]
            if best is None or _better(value, best[1], plan.metric):
                best = (scale, value)
        chosen.append(best[0] if best else plan.lr_scales[0])
    state["chosen"][key] = chosen
    state["sweeps"][key] = {
        "seed": config.seed, "scales": list(plan.lr_scales),
        "learning_rates": [config.learning_rate * s for s in plan.lr_scales],
        "selection": {str(s): [r["selection"][plan.metric] for r in by_scale[s][0]]
                      for s in plan.lr_scales},
        "reported": {str(s): [r["report"][plan.metric] for r in by_scale[s][0]]
                     for s in plan.lr_scales},
        "chosen_scale": chosen,
        "chosen_learning_rate": [config.learning_rate * s for s in chosen]}
    results = [by_scale[chosen[i]][0][i] for i in every]
    last = chosen[-1]
    return {"budgets": list(spec["budgets"]), "results": results,
            "scales": chosen, "curve": by_scale[last][1],
            "train_seconds": sum(r[2] for r in by_scale.values())}


def _chosen_runs(runner, spec, config, plan, log, arm, role, chosen, on_branch):
    """Runs each group of budgets that share a chosen scale."""
    results, curve, seconds = [None] * len(spec["budgets"]), None, 0.0
    for scale in sorted(set(chosen), key=chosen.index):
        indices = [i for i, s in enumerate(chosen) if s == scale]
        part, part_curve, took = _run_role(runner, spec, config, plan, log, arm,
                                           role, scale, indices, on_branch)
        for i, result in zip(indices, part):
            results[i] = result
        if indices[-1] == len(chosen) - 1:
            curve = part_curve
        seconds += took
    return {"budgets": list(spec["budgets"]), "results": results,
            "scales": list(chosen), "curve": curve, "train_seconds": seconds}


def _summary(part):
    """A `frontier.summarize` dict with the per-seed statuses and targets."""
    out = dict(part["summary"])
    out["status_per_seed"] = [s["status"] for s in part["per_seed"]]
    out["quality_per_seed"] = [s["quality"] for s in part["per_seed"]]
    out["compute_scratch_per_seed"] = [s["compute_scratch"] for s in part["per_seed"]]
    out["compute_grown_per_seed"] = [s["compute_grown"] for s in part["per_seed"]]
    return out


def _gains(view):
    return [{"compute": g["compute"], **g["summary"]}
            for g in view["quality_gain_equal_compute"]]


def _describe(values):
    array = np.asarray(values, np.float64)
    return {"mean": array.mean(axis=0).tolist(),
            "se": (array.std(axis=0, ddof=1) / np.sqrt(len(array))).tolist()
            if len(array) > 1 else None,
            "per_seed": array.tolist()}


def _summarise(runs, arms, seeds, config, plan, facts, state, fns):
    metric = plan.metric
    higher = metric == "accuracy"
    teacher_final = [r["teacher"]["eval"][-1][metric] for r in runs]
    report = {
        "seeds": list(seeds),
        "metric": metric,
        "higher_is_better": higher,
        "eval_examples": fns.info.num_eval_examples,
        "selection_examples": fns.selection_info.num_eval_examples,
        "protocol": {
            "compute": "student-step equivalents: a student (or scratch) step is "
                       "1, a teacher step its training FLOPs ratio "
                       "(flops.TRAINING_MULTIPLIER x forward FLOPs)",
            "budgets": list(plan.budgets),
            "schedule": "wsd: warmup, stable peak, linear cooldown over the last "
                        f"{config.cooldown_fraction:g} of each budget to "
                        f"{config.min_lr_ratio:g} x peak; cooldowns branched off "
                        "one stable run per learning rate",
            "grown_optimizer": (f"carried (expand_optimizer), re-warmed over "
                                f"{plan.rewarm_steps} steps from "
                                f"{plan.rewarm_from:g} x the rate")
            if plan.carry_optimizer else
            f"fresh, {plan.student_warmup_steps} warmup steps",
            "lr_sweep": list(plan.lr_scales),
            "selection": "learning rates are chosen per budget on the first seed, "
                         "on the first half of the held-out examples; every "
                         "quality reported is on the second half",
            "data": "the student continues the teacher's data stream",
            "small_alone": "the teacher's architecture alone, from fresh weights, "
                           "trained to each budget's compute (budget / teacher "
                           "FLOPs ratio steps), the same rate sweep"
            if plan.small_alone else None,
            "grow_from": "one teacher of its own schedule"
                         if plan.teacher_share is None else
                         "each budget's teacher: a point of one warmup-stable "
                         "run, before any decay" if plan.grow_from == "stable" else
                         "each budget's teacher: a cooldown branched off one "
                         "warmup-stable run",
        },
        "settings": {**dataclasses.asdict(config), **dataclasses.asdict(plan)},
        "teacher": {
            f"{metric}_per_seed": teacher_final,
            metric: float(np.mean(teacher_final)),
            "train_seconds_per_seed": [r["teacher"]["train_seconds"] for r in runs],
            "curve": [r["teacher"].get("curve", r["teacher"]["eval"]) for r in runs],
        },
        "arms": {},
    }
    for arm in arms:
        fact = facts[arm.name]
        per_seed = [r["arms"][arm.name] for r in runs]
        roles = ("scratch", "grown") + (("small",) if plan.small_alone else ())
        quality = {role: [[res["report"][metric] for res in s[role]["results"]]
                          for s in per_seed] for role in roles}
        views = frontier_lib.both_views(
            list(plan.budgets), quality["scratch"], fact["student_steps"],
            quality["grown"], teacher_steps=fact["teacher_steps"],
            teacher_flops_ratio=fact["ratio"], higher_is_better=higher)
        timing = state.get("timing", {}).get(arm.name)
        wall = None if timing is None else frontier_lib.wall_view(
            list(plan.budgets), quality["scratch"], fact["student_steps"],
            quality["grown"], teacher_steps=fact["teacher_steps"],
            teacher_seconds_per_step=timing["teacher_seconds_per_step"],
            student_seconds_per_step=timing["student_seconds_per_step"],
            higher_is_better=higher)
        counted, sunk = views["teacher_counted"], views["teacher_sunk"]
        report["arms"][arm.name] = {
            "widen": arm.widen, "deepen": options.jsonable(arm.deepen),
            "params": fact["params"],
            "train_flops_per_step": fact["flops"],
            "teacher_flops_ratio": fact["ratio"],
            "teacher_cost_in_student_steps": fact["cost"],
            "teacher_steps": fact["teacher_steps"],
            "max_relative_error_per_seed": [s["max_relative_error"] for s in per_seed],
            # False: a stacked copy or shrink-and-perturb changed the function.
            "exact": all(s["exact"] for s in per_seed),
            "frontier": {
                "budgets": list(plan.budgets),
                "teacher_cost": fact["cost"],
                "scratch": {"steps": list(plan.budgets),
                            "compute": [float(b) for b in plan.budgets],
                            **_describe(quality["scratch"])},
                "grown": {"student_steps": list(fact["student_steps"]),
                          "compute": counted["grown"]["compute"],
                          "compute_sunk": sunk["grown"]["compute"],
                          **_describe(quality["grown"])},
            },
            "compute_saved": _summary(counted["at_best"]),
            "compute_saved_sunk": _summary(sunk["at_best"]),
            "compute_saved_at_half": _summary(counted["at_half_compute"]),
            "compute_saved_at_half_sunk": _summary(sunk["at_half_compute"]),
            "quality_gain_equal_compute": _gains(counted),
            "quality_gain_equal_compute_sunk": _gains(sunk),
            "views": views,
            # Wall-clock view: the teacher counted at its measured seconds per
            # step relative to the student's instead of its FLOPs ratio.
            "seconds_per_step": timing,
            "teacher_wall_ratio": None if wall is None else wall["teacher_wall_ratio"],
            "compute_saved_wall": None if wall is None else _summary(wall["at_best"]),
            "compute_saved_at_half_wall": None if wall is None
            else _summary(wall["at_half_compute"]),
            "quality_gain_equal_wall": None if wall is None else _gains(wall),
            "lr_sweep": {role: state["sweeps"][(arm.name, role)]
                         for role in ("scratch", "grown")},
            "chosen_scales_per_seed": {role: [s[role]["scales"] for s in per_seed]
                                       for role in ("scratch", "grown")},
            "curves": {role: [s[role]["curve"] for s in per_seed]
                       for role in ("scratch", "grown")},
            "train_seconds": {role: [s[role]["train_seconds"] for s in per_seed]
                              for role in ("scratch", "grown")},
        }
        if plan.small_alone:
            report["arms"][arm.name]["small_alone"] = _small_alone(
                per_seed, fact, plan, state, arm.name, quality,
                counted["grown"]["compute"], higher)
    return report


def _small_alone(per_seed, fact, plan, state, name, quality, grown_compute, higher):
    """The small model alone against the grown arm (at `grown_compute`, its
    teacher counted) and scratch, at equal compute."""
    small = quality["small"]
    compute = [t * fact["ratio"] for t in fact["small_steps"]]
    grown = frontier_lib.frontier(compute, small, grown_compute, quality["grown"],
                                  higher_is_better=higher)
    scratch = frontier_lib.frontier(compute, small, list(plan.budgets),
                                    quality["scratch"], higher_is_better=higher)
    return {
        "steps": list(fact["small_steps"]), "compute": compute, **_describe(small),
        # Positive: the grown model (or scratch) is better than the small one.
        "grown_gain_equal_compute": _gains(grown),
        "scratch_gain_equal_compute": _gains(scratch),
        "grown_compute_saved": _summary(grown["at_best"]),
        "lr_sweep": state["sweeps"][(name, "small")],
        "chosen_scales_per_seed": [s["small"]["scales"] for s in per_seed],
        "curves": [s["small"]["curve"] for s in per_seed],
        "train_seconds": [s["small"]["train_seconds"] for s in per_seed],
    }
