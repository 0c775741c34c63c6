"""Growth inside a training run: at given steps the model is grown with
`keras_net2net.expand_model`, its optimizer carried with `expand_optimizer`,
and training continues on the same step counter and schedule.

Each growth k (1, 2, ...) starts a *stage* with a directory of its own,
`<model_dir>/grown_<k>`, holding the grown model's checkpoints, `model.keras`
(the grown model at the growth step), `report.json` (the `ExpansionReport`)
and `growth.json` ({"step", "eval_before", "eval_after", "report"}). Stage 0
is the run's own `<model_dir>/checkpoints`. A stage exists once its first
checkpoint does: that save is written last, so a run killed at any moment
resumes from the newest stage that has one, rebuilding its architecture by
growing the freshly built model again (growth is deterministic), and a run
killed during a growth restores the teacher's checkpoint at the growth step
and grows again.

```python
plan = GrowthPlan(steps=(300,), widen=2.0, deepen=["fc1"])
model, history = experiment.train(config, strategy, model_fn, growth=plan)
history["growth"]  # [{"step": 300, "eval_before": ..., "eval_after": ..., ...}]
```
"""

import dataclasses
import glob
import json
import os

from absl import logging

import keras_net2net as n2n
from keras_net2net.training import schedule_options

GROWTH_FILENAME = "growth.json"
REPORT_FILENAME = "report.json"
MODEL_FILENAME = "model.keras"


@dataclasses.dataclass(frozen=True)
class GrowthPlan:
    """When and how a run grows its model.

    Attributes:
        steps: ascending steps to grow at, each before the run's last step.
        widen: as for `keras_net2net.expand_model`, applied at every step.
        deepen: as for `keras_net2net.expand_model`, applied at every step.
        noise: as for `keras_net2net.expand_model`. The defaults (noise
            0.5, a fresh optimizer re-warmed over 10 steps) are the recipe
            `benchmarks/growth_savings.py` found best (BUILD_NOTES.md, "The
            savings study"); noise 0, `carry_optimizer=True` and
            `rewarm_steps=0` give the previous behaviour.
        seed: growth k uses seed + k.
        carry_optimizer: carry the optimizer's state (`expand_optimizer`)
            and its learning-rate schedule, at its position; False starts the
            grown model with a fresh optimizer (slots at zero, step count at
            zero) and, with a schedule, a fresh schedule over the steps left.
        rewarm_steps: after each growth, re-warm the rate linearly over this
            many steps (`schedules.Rewarm`); 0 continues it unchanged.
        rewarm_from: the re-warmup's start as a fraction of the rate.
    """
    steps: tuple
    widen: object = None
    deepen: object = None
    noise: float = 0.5
    seed: int = 0
    carry_optimizer: bool = False
    rewarm_steps: int = 10
    rewarm_from: float = schedule_options.DEFAULT_REWARM_FROM

    def check(self, train_steps):
        """Raises ValueError unless every step lies inside the run.

        Args:
            train_steps: the step count the run trains to.
        """
        steps = list(self.steps)
        if not steps or steps != sorted(set(steps)) or steps[0] < 1:
            raise ValueError(
                f"Expected grow_at_step to be ascending steps >= 1. Received: "
                f"grow_at_step={','.join(map(str, steps))}. Fix: e.g. "
                f"--grow_at_step=500 or --grow_at_step=500,1500.")
        if steps[-1] >= train_steps:
            raise ValueError(
                f"Expected grow_at_step below the run's {train_steps} training steps. "
                f"Received: grow_at_step={steps[-1]}. Fix: grow earlier or raise "
                f"--train_steps (or --epochs).")
        problem = schedule_options.rewarm_problem(rewarm_steps=self.rewarm_steps,
                                                  rewarm_from=self.rewarm_from)
        if problem:
            raise ValueError(problem)
        if not (self.widen or self.deepen):
            raise ValueError(
                "Expected --widen or --deepen with grow_at_step. Received: neither. "
                "Fix: e.g. --widen=2.0 or --deepen=fc1.")


def stage_dir(model_dir, stage):
    """The directory of stage `stage` (0: the model dir itself)."""
    return model_dir if stage == 0 else os.path.join(model_dir, f"grown_{stage}")


def resume_stage(model_dir, plan):
    """The newest stage of `plan` with a checkpoint in `model_dir`, else 0."""
    from keras_net2net.training import checkpoints

    for stage in range(len(plan.steps), 0, -1):
        pattern = os.path.join(stage_dir(model_dir, stage),
                               checkpoints.CHECKPOINT_SUBDIR, "*.index")
        if glob.glob(pattern):
            return stage
    return 0


def grow(model, plan, stage, *, verify=True):
    """Grows `model` as `plan` says for growth number `stage` (from 1).

    Call it in the strategy's scope, so the student's variables are
    distributed as the teacher's are.

    Returns:
        (student, report).
    """
    return n2n.expand_model(model, widen=plan.widen, deepen=plan.deepen,
                            noise=plan.noise, seed=plan.seed + stage,
                            verify=verify, return_report=True)


def regrow(model, plan, stages):
    """The architecture after `stages` growths (weights come from a checkpoint)."""
    for stage in range(1, stages + 1):
        model, _ = grow(model, plan, stage, verify=False)
    return model


def write_stage(directory, student, report, record, is_chief):
    """Writes a stage's model, report and growth record (chief only)."""
    if not is_chief:
        return
    os.makedirs(directory, exist_ok=True)
    student.save(os.path.join(directory, MODEL_FILENAME))
    report.to_json(os.path.join(directory, REPORT_FILENAME))
    with open(os.path.join(directory, GROWTH_FILENAME), "w") as f:
        json.dump(record, f, indent=1)
    logging.info("Grew at step %d: eval loss %.4f -> %.4f; wrote %s.", record["step"],
                 record["eval_before"]["loss"], record["eval_after"]["loss"], directory)


def records(model_dir, stages):
    """The growth records of stages 1..stages, read back from their dirs."""
    out = []
    for stage in range(1, stages + 1):
        path = os.path.join(stage_dir(model_dir, stage), GROWTH_FILENAME)
        if os.path.exists(path):
            with open(path) as f:
                out.append(json.load(f))
    return out
