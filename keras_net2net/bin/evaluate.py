r"""net2net-evaluate: compares two saved classifiers on the held-out split.

Prints accuracy, loss, parameter count and inference latency of both, and
the fraction of examples where they predict the same class; --output also
writes the figures as JSON.

    net2net-evaluate --a=teacher.keras --b=student.keras --output=eval.json
"""

import json
import sys

from absl import app
from absl import flags

from keras_net2net.bin import console
from keras_net2net.bin import flags as shared_flags

# Loaded when main first uses them, so that flags answer before TensorFlow.
model_files = console.lazy_module("keras_net2net.bin.model_files")
inputs = console.lazy_module("keras_net2net.data.inputs")
evaluation = console.lazy_module("keras_net2net.training.evaluation")

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
    """Defines the evaluate flags.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("a", None, "First model (.keras), e.g. the teacher.",
                        **fv)
    flags.DEFINE_string("b", None, "Second model (.keras), e.g. the student.",
                        **fv)
    flags.DEFINE_string("output", None, "Also write the figures to this JSON "
                        "file.", **fv)
    flags.DEFINE_integer("batch_size", 256, "Examples per inference batch.",
                         lower_bound=1, **fv)
    shared_flags.define_data_flags(flag_values)
    flags.mark_flags_as_required(["a", "b"], **fv)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    try:
        model_a = model_files.load(FLAGS.a, "a")
        model_b = model_files.load(FLAGS.b, "b")
    except ValueError as error:
        sys.exit(f"net2net-evaluate: error: {error}")
    images, labels = inputs.load_arrays(FLAGS.dataset, "eval",
                                        **shared_flags.data_kwargs(FLAGS))
    result = evaluation.compare_models(model_a, model_b, images, labels,
                                       batch_size=FLAGS.batch_size)
    result.update(a_path=FLAGS.a, b_path=FLAGS.b, dataset=FLAGS.dataset)
    print(evaluation.format_table(result))
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            json.dump(result, f, indent=1)


def run():
    """Console entry point: net2net-evaluate."""
    console.run_main(define_flags, main)


if __name__ == "__main__":
    run()
