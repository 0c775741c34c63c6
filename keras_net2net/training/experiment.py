"""One training run from a `RunConfig`: strategy, data, model, loop, outputs.

The binaries (`net2net-train`, `net2net-compare`) parse flags into a
`RunConfig` and call these functions; nothing here reads flags.

```python
config = RunConfig(model_dir="/tmp/run", train_steps=300)
strategy = prepare_process(config)
model, history = train(config, strategy,
                       lambda info: build_model("cnn", info.input_shape,
                                                info.num_classes))
```
"""

import json
import os
import time

from absl import logging
import keras

import keras_net2net as n2n
from keras_net2net.data import inputs
from keras_net2net.training import checkpoints
from keras_net2net.training.config import DEFAULT_TRAIN_STEPS
from keras_net2net.training.config import RunConfig  # noqa: F401 (re-exported)
from keras_net2net.training import growth as growth_lib
from keras_net2net.training import loop
from keras_net2net.training import optimizers
from keras_net2net.training import runner
from keras_net2net.training import schedule_options
from keras_net2net.training import schedules
from keras_net2net.training import strategy as strategy_lib

MODEL_FILENAME = "model.keras"
HISTORY_FILENAME = "history.json"


def prepare_process(config):
    """Configures devices and precision, and returns the strategy.

    Call once per process, first: logical CPU devices can only be set up
    before TensorFlow initialises, and multi-worker collectives must be set up
    before any other op runs.

    Args:
        config: a `RunConfig`.

    Returns:
        The `tf.distribute.Strategy` named by `config.strategy`.
    """
    strategy_lib.configure_cpu_devices(config.num_cpu_devices)
    strategy = strategy_lib.get_strategy(config.strategy,
                                         num_gpus=config.num_gpus,
                                         tpu=config.tpu)
    strategy_lib.set_precision(config.mixed_precision)
    logging.info("Strategy %s: %d replica(s) in sync.",
                 type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy


def make_inputs(config):
    """Returns (train_fn, eval_fn, info) for `config`'s data set."""
    return inputs.make_input_fns(
        config.dataset, config.global_batch_size, data_dir=config.data_dir,
        seed=config.seed, synthetic_shape=config.synthetic_shape,
        synthetic_classes=config.synthetic_classes,
        eval_examples=config.eval_examples)


def resolve_train_steps(config, info):
    """The step count to train to, from `train_steps` or `epochs`."""
    if config.train_steps is not None:
        return config.train_steps
    if config.epochs is not None:
        steps_per_epoch = max(1, info.num_train_examples // config.global_batch_size)
        return config.epochs * steps_per_epoch
    return DEFAULT_TRAIN_STEPS


def train(config, strategy, model_fn, *, model_dir=None, learning_rate=None,
          train_steps=None, eval_at_start=False, input_fns=None, growth=None,
          optimizer_fn=None, trainers=None, reuse_key=None, data_offset=0):
    """Trains a model under `strategy` and saves it.

    Args:
        config: a `RunConfig`.
        strategy: from `prepare_process`.
        model_fn: called as `model_fn(info)` under `strategy.scope()` with the
            data's `InputInfo`; returns the `keras.Model` to train (new or loaded).
            Keras' random seed is set to `config.seed` just before.
        model_dir: where checkpoints, summaries, `model.keras` and `history.json`
            go; None means `config.model_dir`, "" keeps nothing on disk.
        learning_rate: overrides `config.learning_rate`.
        train_steps: overrides the step count from `config`.
        eval_at_start: evaluate before the first step too.
        input_fns: (train_fn, eval_fn, info) to reuse; built from `config` when
            None.
        growth: a `growth.GrowthPlan` to grow the model at given steps inside
            the run (see `keras_net2net.training.growth`), or None.
        optimizer_fn: `optimizer_fn(model, learning_rate)` returns the
            optimizer, called under the strategy's scope (e.g. to carry a
            teacher's state with `keras_net2net.expand_optimizer`, or to keep
            a reference to it); None makes a fresh one from `config`.
        trainers: a dict kept between calls, in which runs that keep nothing
            on disk (`model_dir=""`) and do not grow share a `loop.Trainer`
            per `reuse_key`: a later run of the same architecture and
            optimizer settings reuses its traced steps instead of tracing its
            own. The results are the same as without it.
        reuse_key: the key of this run's architecture in `trainers`.
        data_offset: batches of the training stream that come before this
            run's step 0: a student that continues its teacher's stream
            passes the teacher's step count, so its first batch is the one
            the teacher would have read next.

    Returns:
        (model, history), `history` as returned by `run_training` plus
        "train_seconds" and "final_step", and "growth" with a growth plan.
        The model is the grown one after growth.

    Raises:
        CheckpointError: if an existing checkpoint cannot be restored.
        NonFiniteLossError: if the loss diverges.
        ValueError: if a growth step does not lie inside the run.
    """
    model_dir = config.model_dir if model_dir is None else model_dir
    train_fn, eval_fn, info = input_fns or make_inputs(config)
    train_steps = train_steps or resolve_train_steps(config, info)
    learning_rate = learning_rate or config.learning_rate
    if growth is not None:
        growth.check(train_steps)
    _, task_id, is_chief = strategy_lib.task_info(strategy)
    stage = growth_lib.resume_stage(model_dir, growth) if growth and model_dir else 0
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = model_fn(info)
        if stage:  # a run that grew before it stopped resumes the grown model
            logging.info("Resuming after growth %d: rebuilding the grown model.", stage)
            model = growth_lib.regrow(model, growth, stage)
        optimizer = (optimizer_fn(model, learning_rate) if optimizer_fn
                     else _optimizer(config, stage_learning_rate(
                         config, learning_rate, train_steps, growth, stage)))
    make_trainer = lambda model, optimizer: loop.Trainer(
        strategy, model, optimizer, train_fn, eval_fn, info, config.global_batch_size,
        jit_compile=config.jit_compile)
    shared = None
    if trainers is not None and reuse_key is not None and not model_dir \
            and growth is None:
        shared = _shared_trainer(trainers, reuse_key, model, optimizer,
                                 (train_fn, eval_fn), strategy, make_trainer)
    trainer = shared or make_trainer(model, optimizer)
    trainer.data_offset = data_offset
    checkpointer = _checkpointer(model_dir, trainer, stage, is_chief, task_id, growth)
    if checkpointer:
        _resume(checkpointer, optimizer, learning_rate)
    began = time.perf_counter()
    history = None
    targets = list(growth.steps[stage:]) if growth else []
    grown = []
    for target in targets + [train_steps]:
        part = runner.run_training(
            trainer, target, log_every=config.log_every,
            eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
            checkpointer=checkpointer,
            summary_dir=model_dir if model_dir and is_chief else None,
            eval_at_start=eval_at_start and history is None)
        history = _joined(history, part)
        if target == train_steps:
            break
        stage += 1
        trainer, checkpointer, record = _grow(
            trainer, growth, stage, strategy, make_trainer, config, learning_rate,
            model_dir, is_chief, task_id, part["eval"][-1], train_steps)
        history["eval"].append(record["eval_after"])
        grown.append(record)
    history["train_seconds"] = time.perf_counter() - began
    history["final_step"] = int(trainer.step.numpy())
    if shared is not None:
        shared.hand_back(model, optimizer)
        return model, history
    if growth is not None:
        # Read back from disk: a resumed run lists the growths before it too.
        history["growth"] = growth_lib.records(model_dir, stage) if model_dir and is_chief \
            else grown
    if model_dir:
        # Non-chief workers keep their copy apart: in a healthy run it equals
        # the chief's, which makes it the check that replicas stayed in sync.
        output_dir = model_dir if is_chief else os.path.join(
            model_dir, f"worker_{task_id}")
        save_outputs(trainer.model, history, output_dir)
    return trainer.model, history


def _shared_trainer(trainers, key, model, optimizer, input_fns, strategy,
                    make_trainer):
    """The trainer kept under `key`, having adopted `model` and `optimizer`;
    None if it cannot take them (then the run gets its own trainer).

    The kept trainer trains a private clone, never a model handed to a
    caller, which a later run would overwrite."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return None  # its dynamic loss scale is not worth the special case
    kept_fns, kept = trainers.get(key, (input_fns, None))
    with strategy.scope():
        if kept is None:
            kept = make_trainer(
                keras.models.clone_model(model),
                type(optimizer).from_config(optimizer.get_config()))
            trainers[key] = (input_fns, kept)
        if not optimizer.built:  # as Trainer() builds it
            optimizer.build(model.trainable_variables)
        if kept_fns != input_fns or not kept.matches(model, optimizer):
            logging.info("Run %r differs from the trainer kept for it; "
                         "tracing its own.", key)
            return None
        kept.adopt(model, optimizer)
    return kept


def make_optimizer(config, learning_rate, total_steps=None, *, start_step=0):
    """A fresh optimizer as `config` asks for, peaking at `learning_rate`.

    Args:
        config: a `RunConfig`.
        learning_rate: the (peak) rate.
        total_steps: the budget its schedule spans; needed when `config`
            asks for a decaying schedule.
        start_step: the optimizer step at which its schedule begins.
    """
    return _optimizer(config, learning_rate_schedule(
        config, learning_rate, total_steps, start_step=start_step))


def uses_schedule(config, growth=None):
    """Whether runs of `config` follow a `LearningRateSchedule` rather than
    a fixed rate: a decaying schedule, a warmup, or a re-warmup after growth
    (whose wrapper needs a schedule to wrap from the start)."""
    return (config.lr_schedule != "constant" or config.warmup_steps > 0
            or bool(growth is not None and growth.rewarm_steps))


def learning_rate_schedule(config, learning_rate, total_steps, *, start_step=0,
                           growth=None):
    """The rate or schedule `config` asks for, peaking at `learning_rate`.

    Args:
        config: a `RunConfig` (`lr_schedule`, `warmup_steps`,
            `cooldown_fraction`, `min_lr_ratio`).
        learning_rate: the peak rate.
        total_steps: updates the schedule spans (the run's budget).
        start_step: the optimizer step of the schedule's update 0.
        growth: the run's `GrowthPlan`, if any (a re-warmup needs a schedule).

    Returns:
        `learning_rate` itself for a constant rate without warmup (a variable
        of the optimizer, as before schedules existed), else a
        `keras_net2net.training.schedules` schedule.

    Example:
    >>> learning_rate_schedule(RunConfig(lr_schedule="wsd"), 1e-3, 500)
    <keras_net2net.training.schedules.WarmupStableDecay object at ...>
    """
    if not uses_schedule(config, growth):
        return learning_rate
    return schedules.make_schedule(
        config.lr_schedule, learning_rate, total_steps,
        warmup_steps=config.warmup_steps, cooldown_fraction=config.cooldown_fraction,
        min_lr_ratio=config.min_lr_ratio, start_step=start_step)


def stage_learning_rate(config, learning_rate, train_steps, growth=None, stage=0):
    """The rate or schedule of a run's optimizer after `stage` growths.

    A run's schedule spans its `train_steps`. Growth with the optimizer
    carried continues it (Keras reads it at the optimizer's step count, which
    growth carries); growth with a fresh optimizer starts a fresh schedule
    over the steps left. `growth.rewarm_steps` then re-warms it (`Rewarm`).
    The result depends only on its arguments, so a resumed stage follows the
    schedule an uninterrupted one does.

    Args:
        config: a `RunConfig`.
        learning_rate: the peak rate.
        train_steps: the run's step count.
        growth: its `GrowthPlan`, or None.
        stage: growths done (0: the model as built).

    Returns:
        A float or a `LearningRateSchedule`, as `learning_rate_schedule`.
    """
    rate = learning_rate_schedule(config, learning_rate, train_steps, growth=growth)
    if not uses_schedule(config, growth):
        return rate
    origin = 0  # the run's step at which the optimizer's count was 0
    for step in growth.steps[:stage] if growth else ():
        if not growth.carry_optimizer:
            origin = step
            rate = learning_rate_schedule(config, learning_rate, train_steps - step,
                                          growth=growth)
        if growth.rewarm_steps:
            rate = schedules.Rewarm(rate, step - origin, growth.rewarm_steps,
                                    growth.rewarm_from)
    return rate


def _optimizer(config, learning_rate):
    return optimizers.make_optimizer(
        config.optimizer, learning_rate,
        loss_scale=config.mixed_precision == "mixed_float16")


def _checkpointer(model_dir, trainer, stage, is_chief, task_id, growth):
    if not model_dir:
        return None
    # Stage k (after growth k) keeps its checkpoints apart: the teacher's
    # cannot be restored into the grown model, nor the grown model's into it.
    return checkpoints.Checkpointer(
        growth_lib.stage_dir(model_dir, stage) if growth else model_dir,
        trainer.model, trainer.optimizer, trainer.step, is_chief=is_chief,
        task_id=task_id)


def _joined(history, part):
    if history is None:
        return part
    history["train"].extend(part["train"])
    history["eval"].extend(part["eval"])
    return history


def _grow(trainer, plan, stage, strategy, make_trainer, config, learning_rate, model_dir,
          is_chief, task_id, eval_before, train_steps=None):
    """Grows the trainer's model at its current step; returns the new trainer,
    its checkpointer (the stage's first checkpoint already written) and the
    growth record."""
    step = int(trainer.step.numpy())
    with strategy.scope():
        student, report = growth_lib.grow(trainer.model, plan, stage)
        rate = learning_rate if train_steps is None else stage_learning_rate(
            config, learning_rate, train_steps, plan, stage)
        if plan.carry_optimizer:
            # The teacher's schedule object and position carry over as they are.
            optimizer = n2n.expand_optimizer(trainer.optimizer, student)
            if plan.rewarm_steps:
                schedules.set_learning_rate(optimizer, rate)
        else:
            optimizer = _optimizer(config, rate)
    new = make_trainer(student, optimizer)
    new.step.assign(step)
    if trainer.stream is not None:
        new.continue_stream(trainer.stream)
    eval_after = {"step": step, **new.evaluate()}
    record = {"step": step, "eval_before": eval_before, "eval_after": eval_after,
              "report": os.path.join(f"grown_{stage}", growth_lib.REPORT_FILENAME),
              "params": {"before": int(trainer.model.count_params()),
                         "after": int(student.count_params())},
              "carry_optimizer": plan.carry_optimizer}
    checkpointer = _checkpointer(model_dir, new, stage, is_chief, task_id, plan)
    if checkpointer:
        growth_lib.write_stage(growth_lib.stage_dir(model_dir, stage), student, report,
                               record, is_chief)
        # Written last: a stage counts as reached once it has a checkpoint.
        logging.info("Saved checkpoint %s.", checkpointer.save())
    return new, checkpointer, record


def _resume(checkpointer, optimizer, learning_rate):
    step = checkpointer.restore_latest()
    if step is None:
        return
    logging.info("Resumed from %s at step %d.", checkpointer.latest, step)
    if schedules.schedule_of(optimizer) is not None:
        return  # a schedule is rebuilt from the flags and read at the restored step
    # The checkpoint holds the optimizer's learning rate too; the one asked for
    # now wins, so that a changed --learning_rate is not silently ignored.
    optimizer.learning_rate = learning_rate


def save_outputs(model, history, output_dir):
    """Writes `model.keras` and `history.json` into `output_dir`."""
    os.makedirs(output_dir, exist_ok=True)
    model_path = os.path.join(output_dir, MODEL_FILENAME)
    model.save(model_path)
    with open(os.path.join(output_dir, HISTORY_FILENAME), "w") as f:
        json.dump(history, f, indent=1)
    logging.info("Saved %s and %s.", model_path, HISTORY_FILENAME)
