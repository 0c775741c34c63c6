"""Checkpoints of model, optimizer and step, with loud failures.

A training run either resumes from the newest checkpoint in its model
directory or starts fresh because there is none. A checkpoint that exists but
cannot be restored (truncated, overwritten, or written for another model) is
an error: a silent fresh start would throw away a run's progress unnoticed.
"""

import glob
import os
import re
import shutil

from absl import logging
import tensorflow as tf

CHECKPOINT_SUBDIR = "checkpoints"
_CHECKPOINT_INDEX = re.compile(r".*-(\d+)\.index")


class CheckpointError(ValueError):
    """A checkpoint exists but cannot be restored into this model."""


class Checkpointer:
    """Saves and restores `model`, `optimizer` and `step` under a model dir.

    In multi-worker training every worker must take part in each save (the
    variables' values are gathered collectively), but only the chief's copy is
    kept; the others write to a scratch directory that is deleted right away,
    as in TensorFlow Model Garden.

    Args:
        model_dir: the run's directory; checkpoints go to `<model_dir>/checkpoints`.
        model: the `keras.Model` being trained.
        optimizer: its optimizer, already built so that its slots exist.
        step: an integer `tf.Variable` counting training steps.
        is_chief: whether this process keeps its checkpoints.
        task_id: this worker's index, to name its scratch directory.
        max_to_keep: checkpoints kept before the oldest is deleted.

    Example:
    >>> checkpointer = Checkpointer("/tmp/run", model, optimizer, step)
    >>> checkpointer.restore_latest()  # returns None on a fresh directory
    >>> checkpointer.save()
    """

    def __init__(self, model_dir, model, optimizer, step, *, is_chief=True,
                 task_id=0, max_to_keep=3):
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                               step=step)
        self._step = step
        self._model_name = model.name
        self.directory = os.path.join(model_dir, CHECKPOINT_SUBDIR)
        self._is_chief = is_chief
        write_dir = (self.directory if is_chief else
                     os.path.join(model_dir, f".worker{task_id}_scratch"))
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, write_dir, max_to_keep=max_to_keep)

    @property
    def latest(self):
        """Path prefix of the newest checkpoint in the model dir, or None.

        A run killed during its first save can leave a complete checkpoint
        but no state file naming it (TensorFlow writes the state file last);
        the newest checkpoint on disk is used then.

        Raises:
            CheckpointError: if the state file exists but cannot be read
                (TensorFlow would log a warning and report no checkpoint: a
                silent fresh start).
        """
        path = tf.train.latest_checkpoint(self.directory)
        if path is not None:
            return path
        on_disk = sorted(
            (int(match.group(1)), match.group(0)[:-len(".index")])
            for match in map(_CHECKPOINT_INDEX.fullmatch, glob.glob(
                os.path.join(self.directory, "*.index"))) if match)
        if not on_disk:
            return None
        state = os.path.join(self.directory, "checkpoint")
        if os.path.exists(state):
            raise self._error(state, "the state file naming the newest "
                              "checkpoint cannot be read")
        # The kill may also have cut the newest checkpoint's own files short:
        # take the newest one that reads back whole.
        for _, path in reversed(on_disk):
            try:
                tf.train.load_checkpoint(path)
            except Exception:  # pylint: disable=broad-except
                logging.warning("Checkpoint %s was not written to the end; skipping it.", path)
                continue
            logging.warning("No checkpoint state file in %s (a run killed while "
                            "saving?); using the newest complete checkpoint, %s.",
                            self.directory, path)
            return path
        return None

    def restore_latest(self):
        """Restores the newest checkpoint, if there is one.

        Every worker reads the chief's checkpoints, so they resume together.

        Returns:
            The restored step as an int, or None when there is no checkpoint.

        Raises:
            CheckpointError: if a checkpoint exists but cannot be restored, or
                does not match this model and optimizer variable for variable.
        """
        path = self.latest
        if path is None:
            return None
        try:
            status = self._checkpoint.restore(path)
            # Both directions: nothing in the model left unrestored (another
            # architecture), nothing in the checkpoint left unused (a smaller one).
            status.assert_existing_objects_matched()
            status.assert_consumed()
        # Damage surfaces as many types (OpError, IndexError, ValueError,
        # AssertionError, ...), none of which may pass as a fresh start.
        except Exception as error:  # pylint: disable=broad-except
            raise self._error(path, error) from error
        return int(self._step.numpy())

    def save(self):
        """Writes a checkpoint numbered by the current step; returns its path."""
        path = self._manager.save(checkpoint_number=self._step)
        if not self._is_chief:
            shutil.rmtree(self._manager.directory, ignore_errors=True)
        return path

    def _error(self, path, error):
        reason = str(error).strip().splitlines()[0] if str(error).strip() else (
            type(error).__name__)
        return CheckpointError(
            f"Cannot restore checkpoint {path} into model {self._model_name!r}: "
            f"{reason}. The checkpoint is corrupt or was written for a different "
            "model, optimizer or precision. Training does not start afresh on "
            "its own: move the checkpoints directory away, or choose a new "
            "--model_dir.")
