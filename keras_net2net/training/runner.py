"""The outer training schedule: logging, evaluation, checkpoints, summaries.

`run_training` drives a `Trainer` to a target step count (not a number of
further steps), so a run restored from a checkpoint stops at the same step
as an uninterrupted one.

```python
checkpointer = Checkpointer(model_dir, model, optimizer, trainer.step)
checkpointer.restore_latest()
history = run_training(trainer, train_steps=500, eval_every=100,
                       checkpointer=checkpointer, summary_dir=model_dir)
history["eval"][-1]  # {"step": 500, "loss": ..., "accuracy": ...}
```
"""

import math
import os
import time

from absl import logging
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# tf.summary.scalar needs the tensorboard package, which TensorFlow no longer
# installs; tf.summary.write with the scalars plugin's metadata (what
# tf.summary.scalar writes) needs nothing and TensorBoard reads it the same.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(
        plugin_name="scalars")).SerializeToString()


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped."""


def run_training(trainer, train_steps, *, log_every=100, eval_every=0,
                 checkpoint_every=0, checkpointer=None, summary_dir=None,
                 eval_at_start=False):
    """Trains until `trainer.step` reaches `train_steps`.

    Steps run in chunks that end at every logging, evaluation and checkpoint
    boundary; the loss is checked after each chunk, before anything is saved,
    so a diverged model never overwrites a good checkpoint.

    Args:
        trainer: a `Trainer`.
        train_steps: the step count to stop at (not a number of further steps).
        log_every: steps between training log lines, summaries and `train`
            history entries (each the mean over the steps since the last).
        eval_every: steps between evaluations on the held-out split; 0
            evaluates only at the end.
        checkpoint_every: steps between checkpoints; 0 saves only at the end.
            Ignored without a `checkpointer`.
        checkpointer: a `Checkpointer` to save with. Restoring is the caller's
            job (see `experiment.train`); training continues from `trainer.step`.
        summary_dir: where TensorBoard summaries go (`train/` and `eval/`
            subdirectories), or None for none.
        eval_at_start: also evaluate before the first step of a fresh run.

    Returns:
        {"train": [{"step", "loss", "accuracy", "examples_per_second",
          "learning_rate"}, ...],
          "eval": [{"step", "loss", "accuracy"}, ...], "start_step": int}.

    Raises:
        NonFiniteLossError: if the loss becomes NaN or infinite.
    """
    step = int(trainer.step.numpy())
    history = {"train": [], "eval": [], "start_step": step}
    writers = _Writers(summary_dir)
    if eval_at_start and step == 0:
        _evaluate(trainer, step, history, writers, loud=True)
    if step >= train_steps:
        logging.info("Already at step %d of %d; nothing to train.", step,
                     train_steps)
        _evaluate(trainer, step, history, writers, loud=True)
        return history
    iterator = trainer.train_iterator(start_step=step)
    since_log = {"steps": 0, "loss": 0.0, "accuracy": 0.0, "seconds": 0.0}
    while step < train_steps:
        every = [log_every, eval_every, checkpoint_every if checkpointer else 0]
        stop = min([train_steps] + [_next_multiple(step, n) for n in every if n])
        began = time.perf_counter()
        metrics = trainer.train_steps(iterator, stop - step)
        since_log["seconds"] += time.perf_counter() - began
        if not math.isfinite(metrics["loss"]):
            raise NonFiniteLossError(_diverged_message(step, stop, metrics["loss"],
                                                       checkpointer))
        for name in ("loss", "accuracy"):
            since_log[name] += metrics[name] * (stop - step)
        since_log["steps"] += stop - step
        step = stop
        if step == train_steps or step % log_every == 0:
            _log_training(trainer, step, train_steps, since_log, history,
                          writers)
            since_log = dict.fromkeys(since_log, 0)
        if step == train_steps or (eval_every and step % eval_every == 0):
            _evaluate(trainer, step, history, writers,
                      loud=step == train_steps or step % log_every == 0)
        if checkpointer and (step == train_steps or (
            checkpoint_every and step % checkpoint_every == 0)):
            logging.info("Saved checkpoint %s.", checkpointer.save())
    writers.flush()
    return history


def _next_multiple(step, every):
    return (step // every + 1) * every


def _log_training(trainer, step, train_steps, since_log, history, writers):
    steps = since_log["steps"]
    metrics = {"step": step, "loss": since_log["loss"] / steps,
               "accuracy": since_log["accuracy"] / steps,
               "examples_per_second": steps * trainer.global_batch_size
                                      / max(since_log["seconds"], 1e-9),
               # The rate of the next update (Keras' optimizer.learning_rate).
               "learning_rate": float(trainer.optimizer.learning_rate.numpy())}
    history["train"].append(metrics)
    writers.write("train", metrics)
    logging.info("step %d/%d: loss=%.4f accuracy=%.4f examples/s=%.1f", step,
                 train_steps, metrics["loss"], metrics["accuracy"],
                 metrics["examples_per_second"])


def _evaluate(trainer, step, history, writers, loud):
    metrics = {"step": step, **trainer.evaluate()}
    history["eval"].append(metrics)
    writers.write("eval", metrics)
    # Frequent evaluations (learning curves) would drown the log; they are
    # logged on the training log's rhythm, and all of them at --v=1.
    logging.log(logging.INFO if loud else logging.DEBUG,
                "step %d eval: loss=%.4f accuracy=%.4f", step,
                metrics["loss"], metrics["accuracy"])


def _diverged_message(first, last, loss, checkpointer):
    if checkpointer is None:
        kept = "No checkpoint is written in this run."
    else:
        latest = checkpointer.latest
        kept = (f"The last good checkpoint, {latest}, is kept; rerunning resumes "
                "from it." if latest else "No checkpoint had been written yet.")
    return (f"Training loss became {loss} between steps {first} and {last}; "
            f"stopped without saving. {kept} Lower --learning_rate, or check "
            "the data for NaN or infinite values.")


class _Writers:
    """TensorBoard writers for the train and eval streams (or none)."""

    def __init__(self, summary_dir):
        self._writers = {} if summary_dir is None else {
            name: tf.summary.create_file_writer(os.path.join(summary_dir, name))
            for name in ("train", "eval")}

    def write(self, stream, metrics):
        writer = self._writers.get(stream)
        if writer is None:
            return
        with writer.as_default(step=metrics["step"]):
            for name, value in metrics.items():
                if name != "step":
                    tf.summary.write(name, tf.constant(value, tf.float32),
                                     metadata=_SCALAR_METADATA)

    def flush(self):
        for writer in self._writers.values():
            writer.flush()
