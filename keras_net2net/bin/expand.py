r"""net2net-expand: grows a saved model with Net2WiderNet / Net2DeeperNet.

Reads a teacher, writes a student that computes the same function, and a
report of what grew beside it (`student.keras` -> `student.report.json`).

    net2net-expand --input=teacher.keras --output=student.keras --widen=1.5
    net2net-expand --input=teacher.keras --output=student.keras \
        --widen=conv1=16,fc1=64 --deepen=fc1:2,conv2:residual

The input file is only ever read; an existing output is kept unless
--overwrite is given.
"""

import json
import os
import sys
import tempfile

from absl import app
from absl import flags
from absl import logging

import keras_net2net as n2n
from keras_net2net.bin import console
from keras_net2net.bin import flags as shared_flags

# Loaded when main first uses them, so that flags answer before TensorFlow.
model_files = console.lazy_module("keras_net2net.bin.model_files")
inputs = console.lazy_module("keras_net2net.data.inputs")

FLAGS = flags.FLAGS


def report_path(output):
    """`student.keras` -> `student.report.json`, beside the student."""
    root, ext = os.path.splitext(output)
    return (root if ext == ".keras" else output) + ".report.json"


def define_flags(flag_values=FLAGS):
    """Defines the expand flags.

    Args:
        flag_values: the `FlagValues` to define them on.
    """
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("input", None, "The teacher, a .keras file (read only).",
                        **fv)
    flags.DEFINE_string("output", None, "Where to write the student (.keras); "
                        "its report goes beside it as <name>.report.json.", **fv)
    flags.DEFINE_string(
        "widen", None, "A factor for every layer that can grow (1.5), or "
        "per-layer widths or factors: conv1=16,fc1=64.", **fv)
    flags.DEFINE_string(
        "deepen", None, "Layers to follow with an identity layer (conv2,fc1), "
        "or name:count / name:residual pairs (fc1:2,conv2:residual); "
        "first..last:count repeats a span of residual blocks "
        "(block1_ln1..block1_res2:1); first..last:stack copies it with its "
        "trained weights (G_stack, not exact).", **fv)
    flags.DEFINE_float(
        "noise", 0.0, "Symmetry-breaking noise, relative to each weight "
        "tensor's std; the default balanced noise keeps the function exact.",
        lower_bound=0.0, **fv)
    flags.DEFINE_enum("mapping", "random", ["random", "round_robin"],
                      "Which units the new units copy.", **fv)
    flags.DEFINE_integer("seed", 0, "Seed of the mapping and noise.", **fv)
    flags.DEFINE_bool("strict", False, "Fail instead of leaving a layer at its "
                      "width when the width asked for is not exact.", **fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing --output.", **fv)
    flags.DEFINE_bool("inline_custom_layers", True, "Grow custom layers built from "
                      "Keras layers as the plain Keras subgraph traced from their call "
                      "(the student's layer classes then differ from the teacher's); "
                      "--noinline_custom_layers keeps them as they are.", **fv)
    flags.DEFINE_integer(
        "num_examples", 256, "Training examples of --dataset used to set "
        "inserted BatchNormalization statistics and to verify the student.",
        lower_bound=1, **fv)
    shared_flags.define_data_flags(
        flag_values, default_dataset=None,
        dataset_help="Optional here; without it the student is verified on "
        "random inputs.")
    flags.mark_flags_as_required(["input", "output"], **fv)
    flags.register_validator("input", os.path.isfile,
                             message="expected an existing .keras file", **fv)
    flags.register_validator(
        "output", lambda path: path.endswith(".keras"),
        message="expected a path ending in .keras", **fv)
    flags.register_validator("widen",
                             shared_flags.parses(shared_flags.parse_widen),
                             message="expected a factor such as 1.5 or "
                             "name=width pairs such as conv1=16,fc1=64", **fv)
    flags.register_validator("deepen",
                             shared_flags.parses(shared_flags.parse_deepen),
                             message="expected names such as conv2,fc1 or "
                             "pairs such as fc1:2,conv2:residual", **fv)
    flags.register_multi_flags_validator(
        ["widen", "deepen"], lambda v: bool(v["widen"] or v["deepen"]),
        message="give --widen, --deepen or both", **fv)
    flags.register_multi_flags_validator(
        ["input", "output"],
        lambda v: os.path.realpath(v["input"]) != os.path.realpath(v["output"]),
        message="--output must differ from --input; the teacher is never "
        "overwritten", **fv)


def expand_file(input_path, output_path, *, widen=None, deepen=None,
                noise=0.0, mapping="random", seed=0, strict=False,
                data=None, overwrite=False, inline_custom_layers=True):
    """Reads a teacher, expands it and writes the student and its report.

    Args:
        input_path: the teacher .keras file; never written.
        output_path: the student .keras file.
        widen: as for `keras_net2net.expand_model`.
        deepen: as for `keras_net2net.expand_model`.
        noise: as for `keras_net2net.expand_model`.
        mapping: as for `keras_net2net.expand_model`.
        seed: as for `keras_net2net.expand_model`.
        strict: as for `keras_net2net.expand_model`.
        data: optional input batch, for inserted BatchNormalization statistics
            and for verification.
        overwrite: replace an existing `output_path`.
        inline_custom_layers: as for `keras_net2net.expand_model`.

    Returns:
        The `ExpansionReport`.

    Raises:
        FileExistsError: if `output_path` exists and `overwrite` is False.
        ValueError: if `input_path` is not a readable Keras model, or the
            expansion is refused (a `keras_net2net.errors.Net2NetError`).
    """
    if os.path.exists(output_path) and not overwrite:
        raise FileExistsError(
            f"Expected --output to be a new file. Received: output={output_path} "
            "exists; pass --overwrite to replace it.")
    teacher = model_files.load(input_path, "input")
    student, report = n2n.expand_model(
        teacher, widen=widen, deepen=deepen, noise=noise, mapping=mapping,
        seed=seed, data=data, verify_data=data, strict=strict,
        return_report=True, inline_custom_layers=inline_custom_layers)
    # Write beside the target and rename, so that a failure midway never
    # leaves a truncated student where the user expects a good one.
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        scratch_model = os.path.join(scratch, "student.keras")
        student.save(scratch_model)
        os.replace(scratch_model, output_path)
    with open(report_path(output_path), "w") as f:
        f.write(report.to_json())
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    data = None
    if FLAGS.dataset:
        data, _ = inputs.load_arrays(FLAGS.dataset, "train",
                                     limit=FLAGS.num_examples,
                                     **shared_flags.data_kwargs(FLAGS))
    try:
        report = expand_file(
            FLAGS.input, FLAGS.output,
            widen=shared_flags.parse_widen(FLAGS.widen),
            deepen=shared_flags.parse_deepen(FLAGS.deepen), noise=FLAGS.noise,
            mapping=FLAGS.mapping, seed=FLAGS.seed, strict=FLAGS.strict,
            data=data, overwrite=FLAGS.overwrite,
            inline_custom_layers=FLAGS.inline_custom_layers)
    except (FileExistsError, ValueError) as error:
        sys.exit(f"net2net-expand: error: {error}")
    print(report)
    logging.info("Wrote %s and %s.", FLAGS.output, report_path(FLAGS.output))
    print(json.dumps({"output": FLAGS.output,
                      "report": report_path(FLAGS.output),
                      "max_relative_error": report.max_relative_error}))


def run():
    """Console entry point: net2net-expand."""
    console.run_main(define_flags, main)


if __name__ == "__main__":
    run()
