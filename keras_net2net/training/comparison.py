"""Net2Net students vs the same architectures trained from scratch.

For each seed: train a teacher; for each arm (e.g. wider, deeper, both),
grow the teacher into a student with `keras_net2net.expand_model`, build the
same architecture with fresh weights (`keras.models.clone_model` re-runs the
initialisers), and train both for the same steps with the same optimizer,
the student at a smaller learning rate, as in the Net2Net paper. The result
is a JSON-ready report of accuracy curves and speed-ups.

```python
arms = [Arm("wider", widen=2.0), Arm("deeper", deepen=["conv2", "fc1"])]
report = run_comparison(config, strategy, teacher_fn, arms, seeds=[0, 1, 2],
                        teacher_steps=1000, student_steps=600)
report["arms"]["wider"]["speedup"]
```
"""

import dataclasses
import os

from absl import logging
import keras
import numpy as np

import keras_net2net as n2n
from keras_net2net.data import inputs
from keras_net2net.training import evaluation
from keras_net2net.training import experiment


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


def steps_to_reach(steps, accuracies, target):
    """The first evaluated step whose accuracy is at least `target`.

    Args:
        steps: evaluated step numbers, ascending.
        accuracies: the accuracy at each of them.
        target: the accuracy to reach.

    Returns:
        The step, or None if the curve never reaches `target`.

    Example:
    >>> steps_to_reach([0, 10, 20], [0.1, 0.8, 0.9], 0.8)
    10
    """
    for step, accuracy in zip(steps, accuracies):
        if accuracy >= target:
            return step
    return None


def speedup(steps, student, scratch, interval):
    """How much sooner the student reaches the scratch arm's final accuracy.

    Args:
        steps: evaluated step numbers, ascending, starting at 0.
        student: the student's accuracy at each step.
        scratch: the scratch model's accuracy at each step.
        interval: steps between evaluations. A curve that is already there
            at step 0 is counted as needing one interval: the evaluation
            cannot resolve anything finer.

    Returns:
        {"target_accuracy", "steps_scratch", "steps_student", "speedup"}:
        `speedup` = steps_scratch / steps_student, None when the student
        never gets there.

    Example:
    >>> speedup([0, 10, 20], [0.9, 0.9, 0.95], [0.1, 0.5, 0.9], 10)["speedup"]
    2.0
    """
    target = scratch[-1]
    steps_scratch = max(steps_to_reach(steps, scratch, target), interval)
    steps_student = steps_to_reach(steps, student, target)
    if steps_student is not None:
        steps_student = max(steps_student, interval)
    return {"target_accuracy": float(target), "steps_scratch": steps_scratch,
            "steps_student": steps_student,
            "speedup": (steps_scratch / steps_student if steps_student
                        else None)}


def run_comparison(config, strategy, teacher_fn, arms, *, seeds,
                   teacher_steps, student_steps, student_lr_scale=0.1,
                   noise=0.0, output_dir=None):
    """Trains teachers, students and scratch models and compares them.

    Args:
        config: an `experiment.RunConfig` (optimizer, learning rate, batch
            size, eval_every, data, precision...). `eval_every` must be > 0.
        strategy: from `experiment.prepare_process`.
        teacher_fn: `teacher_fn(info)` builds a fresh teacher model.
        arms: a list of `Arm`.
        seeds: seeds to repeat everything with; curves are averaged.
        teacher_steps: training steps of each teacher.
        student_steps: training steps of each student and scratch model.
        student_lr_scale: student learning rate / `config.learning_rate`.
        noise: symmetry-breaking noise for `expand_model`.
        output_dir: where to keep each seed's teacher and final models
            (`seed_<s>/<name>.keras`); None keeps none.

    Returns:
        A JSON-ready dict; see `bin/compare.py` for the layout.

    Raises:
        ValueError: if `config.eval_every` is not positive or `arms` or
            `seeds` is empty.
    """
    if config.eval_every <= 0:
        raise ValueError("Expected eval_every > 0 to draw learning curves. "
                         f"Received: eval_every={config.eval_every}")
    if not arms or not seeds:
        raise ValueError(f"Expected at least one arm and one seed. Received: "
                         f"arms={arms}, seeds={seeds}")
    input_fns = experiment.make_inputs(config)
    eval_images, eval_labels = inputs.load_arrays(
        config.dataset, "eval", data_dir=config.data_dir,
        synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes)
    runs = []
    for seed in seeds:
        runs.append(_run_seed(
            dataclasses.replace(config, seed=seed), strategy, teacher_fn, arms,
            input_fns, (eval_images, eval_labels), teacher_steps,
            student_steps, student_lr_scale, noise,
            output_dir and os.path.join(output_dir, f"seed_{seed}")))
    return _summarise(runs, arms, seeds, config.eval_every, teacher_steps,
                      student_steps, student_lr_scale, config)


def _run_seed(config, strategy, teacher_fn, arms, input_fns, eval_arrays,
              teacher_steps, student_steps, student_lr_scale, noise,
              output_dir):
    train = lambda model_fn, **kwargs: experiment.train(
        config, strategy, model_fn, model_dir="", input_fns=input_fns,
        **kwargs)
    logging.info("Seed %d: training the teacher for %d steps.", config.seed,
                 teacher_steps)
    teacher, teacher_history = train(teacher_fn, train_steps=teacher_steps)
    run = {"teacher": teacher_history, "arms": {}}
    models = {"teacher": teacher}
    for arm in arms:
        expanded = {}

        def grow(info, arm=arm, expanded=expanded):
            del info
            student, expanded["report"] = n2n.expand_model(
                teacher, widen=arm.widen, deepen=arm.deepen, noise=noise,
                seed=config.seed, return_report=True)
            return student

        logging.info("Seed %d: training the %s student and its scratch twin "
                     "for %d steps each.", config.seed, arm.name,
                     student_steps)
        student, student_history = train(
            grow, train_steps=student_steps, eval_at_start=True,
            learning_rate=config.learning_rate * student_lr_scale)
        # Same architecture, fresh weights: clone_model re-runs every
        # layer's initialiser instead of copying the student's weights.
        scratch, scratch_history = train(
            lambda info, student=student: keras.models.clone_model(student),
            train_steps=student_steps, eval_at_start=True)
        report = expanded["report"]
        versus = evaluation.compare_models(
            teacher, student, *eval_arrays, names=("teacher", "student"))
        run["arms"][arm.name] = {
            "student": student_history, "scratch": scratch_history,
            "max_relative_error": report.max_relative_error,
            "params": {"teacher": teacher.count_params(),
                       "student": student.count_params()},
            "teacher_vs_final_student": versus,
        }
        models[f"{arm.name}_student"] = student
        models[f"{arm.name}_scratch"] = scratch
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        for name, model in models.items():
            model.save(os.path.join(output_dir, f"{name}.keras"))
    return run


def _curve(history):
    return ([e["step"] for e in history["eval"]],
            [e["accuracy"] for e in history["eval"]])


def _summarise(runs, arms, seeds, interval, teacher_steps, student_steps,
               student_lr_scale, config):
    teacher_accuracy = [_curve(r["teacher"])[1][-1] for r in runs]
    report = {
        "seeds": list(seeds),
        "settings": {**dataclasses.asdict(config),
                     "teacher_steps": teacher_steps,
                     "student_steps": student_steps,
                     "student_lr_scale": student_lr_scale,
                     "student_learning_rate":
                         config.learning_rate * student_lr_scale},
        "teacher": {
            "accuracy_per_seed": teacher_accuracy,
            "accuracy": float(np.mean(teacher_accuracy)),
            "train_seconds_per_seed": [r["teacher"]["train_seconds"]
                                       for r in runs],
        },
        "arms": {},
    }
    for arm in arms:
        per_seed = [r["arms"][arm.name] for r in runs]
        steps = _curve(per_seed[0]["student"])[0]
        student = [_curve(s["student"])[1] for s in per_seed]
        scratch = [_curve(s["scratch"])[1] for s in per_seed]
        mean_student = np.mean(student, axis=0).tolist()
        mean_scratch = np.mean(scratch, axis=0).tolist()
        report["arms"][arm.name] = {
            "widen": arm.widen, "deepen": arm.deepen,
            "params": per_seed[0]["params"],
            "max_relative_error_per_seed": [s["max_relative_error"]
                                            for s in per_seed],
            "steps": steps,
            "student_accuracy": mean_student,
            "scratch_accuracy": mean_scratch,
            "student_accuracy_per_seed": student,
            "scratch_accuracy_per_seed": scratch,
            "final_accuracy": {"student": mean_student[-1],
                               "scratch": mean_scratch[-1]},
            **speedup(steps, mean_student, mean_scratch, interval),
            # The student starts at the teacher's accuracy; how long scratch
            # takes to get there is the other half of the paper's picture.
            "steps_scratch_to_teacher": steps_to_reach(
                steps, mean_scratch, report["teacher"]["accuracy"]),
            "speedup_per_seed": [speedup(steps, a, b, interval)["speedup"]
                                 for a, b in zip(student, scratch)],
            "teacher_vs_final_student": [s["teacher_vs_final_student"]
                                         for s in per_seed],
        }
    return report
