r"""net2net-train: trains a classifier with a custom tf.distribute loop.

Trains a built-in architecture (or fine-tunes a saved model) and writes
`<model_dir>/model.keras`, checkpoints and TensorBoard summaries. Rerunning
the same command resumes from the newest checkpoint.

    net2net-train --model_dir=runs/teacher --model=cnn --widths=4,8,16 \
        --train_steps=1000
    net2net-train --model_dir=runs/student --init_model=student.keras \
        --learning_rate=1e-4
    net2net-train --model_dir=runs/m --strategy=mirrored --num_cpu_devices=2
    net2net-train --model_dir=runs/grow --model=cnn --train_steps=1000 \
        --grow_at_step=500 --widen=2.0 --deepen=conv2
    net2net-train --model_dir=runs/lm --model=gpt --dataset=stdlib_bytes \
        --width=32 --depth=2 --grow_at_step=400 --widen=2.0

With --grow_at_step the model grows inside the run (Net2Net, the function
unchanged) and training continues with the optimizer's state carried over;
`history.json` lists each growth under "growth".
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging

from keras_net2net import choices
from keras_net2net.bin import console
from keras_net2net.bin import flags as shared_flags

# Loaded when main first uses them, so that flags answer before TensorFlow.
models = console.lazy_module("keras_net2net.models")
model_files = console.lazy_module("keras_net2net.bin.model_files")
checkpoints = console.lazy_module("keras_net2net.training.checkpoints")
experiment = console.lazy_module("keras_net2net.training.experiment")
runner = console.lazy_module("keras_net2net.training.runner")

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines the shared flags plus the model choice.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    shared_flags.define_shared_flags(flag_values)
    shared_flags.define_growth_flags(flag_values)
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model", "cnn", f"Architecture: one of {', '.join(choices.MODELS)}, or "
        "a keras.applications function name such as MobileNetV2 (random "
        "weights).", **fv)
    flags.DEFINE_integer(
        "width", None, "Base width: units per mlp layer, channels of the first "
        "cnn layer (doubling per layer), channels of resnet_small.",
        lower_bound=1, **fv)
    flags.DEFINE_integer(
        "depth", None, "Hidden layers (mlp), conv layers (cnn) or residual "
        "blocks (resnet_small).", lower_bound=1, **fv)
    flags.DEFINE_list(
        "widths", None, "Explicit width of each mlp/cnn layer, e.g. 4,8,16; "
        "overrides --width and --depth.", **fv)
    flags.DEFINE_string(
        "init_model", None, "A saved .keras model to train instead of "
        "building --model (e.g. a student from net2net-expand).", **fv)
    flags.mark_flag_as_required("model_dir", **fv)
    flags.register_validator(
        # Only a name that is not built in loads Keras to look it up.
        "model", lambda name: name in choices.MODELS or (
            name[:1].isupper() and models.is_application(name)),
        message="expected mlp, cnn, resnet_small or a keras.applications "
        "model name", **fv)
    flags.register_validator(
        "widths", lambda widths: widths is None or all(
            w.isdigit() and int(w) > 0 for w in widths),
        message="expected positive integers such as 4,8,16", **fv)
    flags.register_validator(
        "init_model", lambda path: path is None or os.path.isfile(path),
        message="expected an existing .keras file", **fv)


def model_fn_from_flags(flag_values=FLAGS):
    """Returns `model_fn(info)` that builds or loads the model the flags name."""
    init_model = flag_values.init_model
    if init_model:
        return lambda info: model_files.load(init_model, "init_model")
    widths = ([int(w) for w in flag_values.widths] if flag_values.widths
              else None)
    return lambda info: models.build_model(
        flag_values.model, info.input_shape, info.num_classes,
        width=flag_values.width, depth=flag_values.depth, widths=widths)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    config = shared_flags.run_config(FLAGS)
    strategy = experiment.prepare_process(config)
    try:
        _, history = experiment.train(config, strategy, model_fn_from_flags(FLAGS),
                                      growth=shared_flags.growth_plan(FLAGS))
    except (checkpoints.CheckpointError, runner.NonFiniteLossError,
            model_files.ModelFileError, ValueError) as error:
        logging.error("%s", error)
        sys.exit(f"net2net-train: error: {error}")
    final = history["eval"][-1]
    logging.info("Done at step %d: eval accuracy %.4f, loss %.4f.",
                 history["final_step"], final["accuracy"], final["loss"])


def run():
    """Console entry point: net2net-train."""
    console.run_main(define_flags, main)


if __name__ == "__main__":
    run()
