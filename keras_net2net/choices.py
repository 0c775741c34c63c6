"""Names the binaries offer as flag choices, importable without TensorFlow.

The binaries define and validate their flags before TensorFlow loads, so
that `--help` and a bad flag answer in about a second: the choices their
flags list live here, and the modules that act on them (`models`,
`data.inputs`, `training.optimizers`, `training.strategy`) read them from
here too.
"""

import os

# Built-in architectures of `keras_net2net.models.build_model`.
MODELS = ("mlp", "cnn", "resnet_small", "gpt")

# Data sets `keras_net2net.data.inputs` builds offline; any other name is a
# TFDS name.
DIGITS = "digits"
DISTORTED_DIGITS = "distorted_digits"
STDLIB_BYTES = "stdlib_bytes"
SYNTHETIC = "synthetic"
DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")

# `keras_net2net.training.optimizers.make_optimizer` names.
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum", "rmsprop")

# `keras_net2net.training.strategy` names.
STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("none", "mixed_float16", "mixed_bfloat16")
