"""`RunConfig`: the settings of one training run, importable without
TensorFlow (the binaries read its defaults while defining their flags)."""

import dataclasses

from keras_net2net import choices
from keras_net2net.training import schedule_options

DEFAULT_TRAIN_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Settings shared by every training run; see `bin/flags.py` for help."""
    model_dir: str = None
    dataset: str = choices.DIGITS
    data_dir: str = None
    synthetic_shape: tuple = (8, 8, 1)
    synthetic_classes: int = 10
    global_batch_size: int = 64
    train_steps: int = None
    epochs: int = None
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    strategy: str = "default"
    num_gpus: int = 0
    tpu: str = None
    num_cpu_devices: int = 1
    mixed_precision: str = "none"
    jit_compile: bool = False
    log_every: int = 100
    eval_every: int = 0
    eval_examples: int = None
    checkpoint_every: int = 500
    seed: int = 0
    lr_schedule: str = schedule_options.DEFAULT_SCHEDULE
    warmup_steps: int = schedule_options.DEFAULT_WARMUP_STEPS
    cooldown_fraction: float = schedule_options.DEFAULT_COOLDOWN_FRACTION
    min_lr_ratio: float = schedule_options.DEFAULT_MIN_LR_RATIO
