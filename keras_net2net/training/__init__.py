"""Distributed training: strategies, the custom loop, checkpoints, schedule.

Public names are imported on first use, so that the binaries can read
`training.config` without loading TensorFlow.
"""

from typing import TYPE_CHECKING

from keras_net2net import _lazy_exports

_MODULE = "keras_net2net.training"
__getattr__, __dir__ = _lazy_exports.attach(__name__, {
    "CheckpointError": f"{_MODULE}.checkpoints:CheckpointError",
    "Checkpointer": f"{_MODULE}.checkpoints:Checkpointer",
    "Trainer": f"{_MODULE}.loop:Trainer",
    "make_optimizer": f"{_MODULE}.optimizers:make_optimizer",
    "NonFiniteLossError": f"{_MODULE}.runner:NonFiniteLossError",
    "run_training": f"{_MODULE}.runner:run_training",
    "configure_cpu_devices": f"{_MODULE}.strategy:configure_cpu_devices",
    "get_strategy": f"{_MODULE}.strategy:get_strategy",
    "set_precision": f"{_MODULE}.strategy:set_precision",
})

if TYPE_CHECKING:
    from keras_net2net.training.checkpoints import CheckpointError
    from keras_net2net.training.checkpoints import Checkpointer
    from keras_net2net.training.loop import Trainer
    from keras_net2net.training.optimizers import make_optimizer
    from keras_net2net.training.runner import NonFiniteLossError
    from keras_net2net.training.runner import run_training
    from keras_net2net.training.strategy import configure_cpu_devices
    from keras_net2net.training.strategy import get_strategy
    from keras_net2net.training.strategy import set_precision
