"""Distributed training: strategies, the custom loop, checkpoints, schedule."""

from keras_net2net.training.checkpoints import CheckpointError
from keras_net2net.training.checkpoints import Checkpointer
from keras_net2net.training.loop import Trainer
from keras_net2net.training.optimizers import make_optimizer
from keras_net2net.training.runner import NonFiniteLossError
from keras_net2net.training.runner import run_training
from keras_net2net.training.strategy import configure_cpu_devices
from keras_net2net.training.strategy import get_strategy
from keras_net2net.training.strategy import set_precision
