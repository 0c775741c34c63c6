"""The backend matrix's model families, and the worker that grows them under a
non-TensorFlow Keras backend.

tests/test_backends.py runs this module in a subprocess, once per backend:

    KERAS_BACKEND=jax python -m tests.backend_worker --out DIR [--load DIR]

The worker makes TensorFlow unimportable before Keras starts, as on a JAX or
PyTorch install without TensorFlow. Keras copes (its optional TensorFlow
hooks, such as `serialize_keras_object`'s `tf.TensorShape` check, go through
`LazyModule.available` and fall back); the rewriter has to. Every attempt to
import TensorFlow is recorded with the frame that made it, so an import in
keras_net2net fails the tests even where the rewriter catches the ImportError.

For each family it grows the teacher (widen + deepen), compares outputs,
checks the teacher is unchanged, saves the student and its outputs to DIR, and
loads the students another backend saved in --load DIR. Results go to
DIR/results.json for the tests to assert on, family by family.

Adding a family is one line in FAMILIES: a builder returning a model, and a
plan function returning `expand_model` keyword arguments for it.
"""

import argparse
import importlib.abc
import json
import os
import sys
import time
import traceback

_BLOCKED = ("tensorflow", "tf_keras", "tensorboard")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _NoTensorFlow(importlib.abc.MetaPathFinder):
    """Refuses TensorFlow imports and records who asked.

    Each record is the innermost frame outside importlib and this module: the
    line that asked for TensorFlow (Keras' `module_utils.LazyModule`, or a
    culprit in keras_net2net).
    """

    def __init__(self):
        self.attempts = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] not in _BLOCKED:
            return None
        frames = [f for f in traceback.extract_stack()[:-1]
                  if "importlib" not in f.filename and f.filename != __file__]
        where = frames[-1] if frames else None
        self.attempts.append({
            "module": name,
            "file": where.filename if where else "?",
            "line": where.lineno if where else 0,
            "code": where.line if where else "",
            "from_rewriter": bool(where) and _is_rewriter(where.filename),
        })
        raise ModuleNotFoundError(f"No module named {name!r} (blocked by "
                                  f"tests/backend_worker.py)", name=name)


def _is_rewriter(filename):
    return "keras_net2net" in os.path.normpath(filename).split(os.sep)


# --- Model families (built under whichever backend is loaded) -------------

def randomize_constants(model, seed=0):
    """Gives every float weight that holds one constant value random values.

    Biases, norm scales and shifts, moving statistics, LayerScale: a rule that
    mishandled one of them would go unseen while it is 0 or 1.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" not in str(v.dtype):
            continue
        value = np.asarray(v.numpy() if hasattr(v, "numpy") else v)
        if value.size < 2 or not np.all(value == value.flat[0]):
            continue
        if "variance" in v.name or v.name in ("gamma", "scale"):
            new = rng.uniform(0.6, 1.4, value.shape)
        else:
            new = rng.normal(0.0, 0.3, value.shape)
        v.assign(new.astype(value.dtype))
    return model


def conv_zoo():
    """Convolutional rules from the zoo in small: Inception-style concat of
    branches, squeeze-excite gating, depthwise and separable convs, Flatten.

    (A keras.applications model would be the literal zoo, but eager JAX
    compiles each op for each new shape: MobileNetV3Small alone took minutes
    of CPU here. benchmarks/backend_speed.py grows ResNet50 per backend.)
    """
    import keras

    L = keras.layers
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 1, name="br1")(inp)
    b = L.Conv2D(5, 3, padding="same", name="br2")(inp)
    c = L.Conv2D(3, 1, name="br3")(L.MaxPooling2D(3, strides=1, padding="same")(inp))
    x = L.Concatenate(name="mixed")([a, b, c])
    x = L.BatchNormalization(name="mixed_bn")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(4, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(12, 1, activation="hard_sigmoid", name="se_expand")(s)
    x = L.Multiply(name="se_scale")([x, s])
    x = L.SeparableConv2D(6, 3, strides=2, padding="same", name="sep")(x)
    x = L.Activation("hard_swish")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(4, name="logits")(x), name="conv_zoo")


def residual_cnn():
    from tests import factories

    return factories.residual()


# name: (builder, plan). Recurrent, attention and keras_hub families join here
# as one line each once their rules land, e.g.
#     "recurrent": (lstm_model, lambda m: dict(widen=2.0, deepen=["lstm"])),
def attention_encoder():
    """Pre-LN encoder with MultiHeadAttention (grown x1.5 through LayerNorm pads)."""
    from tests import factories

    return factories.pre_ln_encoder()


def recurrent():
    """Masked LSTM / GRU (both reset_after) / SimpleRNN stack."""
    from tests import factories

    return factories.stacked_masked()


FAMILIES = {
    "conv_zoo": (conv_zoo, lambda m: dict(widen=2.0, deepen=["br2", "sep"])),
    "residual_cnn": (residual_cnn,
                     lambda m: dict(widen=1.5, deepen={"b1_conv1": "residual", "stem": 1})),
    "attention": (attention_encoder,
                  lambda m: dict(widen=1.5, deepen={"ffn0_out": "residual"})),
    "recurrent": (recurrent, lambda m: dict(widen=1.5, deepen={"lstm": "residual"})),
}

# The teacher that net2net-train fine-tunes after growth under another backend:
# its built-in mlp on the digits' shape, trained first so that a student that
# lost its weights on the way would show in the fine-tuning run.
DIGITS_SHAPE, DIGITS_CLASSES = (8, 8, 1), 10
DIGITS_SCALE = 16.0  # load_digits' intensities are 0..16, as in data/inputs.py


def build(family, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = FAMILIES[family][0]()
    return randomize_constants(model, seed)


def grow(family, teacher):
    """Grows and checks; returns (student, figures dict)."""
    import numpy as np

    import keras_net2net as n2n
    from keras_net2net import analysis
    from keras_net2net import verify
    from tests import growth

    plan = FAMILIES[family][1](teacher)
    snap = growth.snapshot(teacher)
    # Inputs of expand_model's own probe shape: eager JAX compiles each op
    # once per shape, so other shapes would double the compiles.
    x = verify.probe_inputs(analysis.analyze(teacher), seed=1)
    explained = n2n.explain_model(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **plan)
    (max_abs, rel), = growth.assert_preserved(teacher, student, x)
    growth.assert_unchanged(teacher, snap)
    inserted = [n for ins in report.inserted for n in ins["layers"]]
    for name in inserted:
        student.get_layer(name)  # raises if an inserted layer is missing
    slots = _carried_optimizer_slots(teacher, student)
    return student, x, {
        "optimizer_slots": slots,
        "max_abs": max_abs, "rel": rel, "report_rel": report.max_relative_error,
        "teacher_params": teacher.count_params(),
        "student_params": student.count_params(), "inserted": inserted,
        "groups_explained": len(explained.groups),
        "grown": bool(inserted) and student.count_params() > teacher.count_params(),
        "y_mean": float(np.mean(np.abs(growth.outputs(student, x)[0]))),
    }


def _carried_optimizer_slots(teacher, student):
    """expand_optimizer on this backend: an Adam in the state of one step
    carried to the student. The state is set, not stepped: eager JAX compiles
    Adam's update once per variable shape (~5 s for the recurrent family)."""
    import keras
    import numpy as np

    import keras_net2net as n2n

    teacher_vars, student_vars = teacher.trainable_variables, student.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate=0.0)
    optimizer.build(teacher_vars)
    optimizer.iterations.assign(1)
    for slot in optimizer.variables[2:]:
        slot.assign(np.full(slot.shape, 0.01, slot.dtype))
    carried = n2n.expand_optimizer(optimizer, student)
    if int(np.asarray(carried.iterations)) != 1:
        raise AssertionError(f"iterations {carried.iterations} after carrying, expected 1")
    # Adam: iterations, learning rate, then (m, v) per trainable variable.
    extra = len(optimizer.variables) - 2 * len(teacher_vars)
    if len(carried.variables) != extra + 2 * len(student_vars):
        raise AssertionError(f"{len(carried.variables)} optimizer variables for "
                             f"{len(student_vars)} trainable student variables")
    return len(carried.variables)


def save(out_dir, tag, model, x):
    """Writes model.keras and its inputs and outputs, for another backend."""
    import numpy as np

    from tests import growth

    model.save(os.path.join(out_dir, f"{tag}.keras"))
    np.savez(os.path.join(out_dir, f"{tag}.npz"),
             **{f"x{i}": a for i, a in enumerate(x)},
             y=growth.outputs(model, x)[0])


def check_load(load_dir, tag):
    """Loads a model another backend saved and compares with its outputs."""
    import keras
    import numpy as np

    from tests import growth

    model = keras.models.load_model(os.path.join(load_dir, f"{tag}.keras"))
    data = np.load(os.path.join(load_dir, f"{tag}.npz"))
    x = [data[f"x{i}"] for i in range(len(data.files) - 1)]
    y = growth.outputs(model, x)[0]
    return {"max_abs": float(np.max(np.abs(y - data["y"]))),
            "max_y": float(np.max(np.abs(data["y"])))}


def grow_and_save(out_dir, backend, family):
    """Grows a family's teacher and saves the student as `{backend}_{family}`."""
    student, x, figures = grow(family, build(family))
    save(out_dir, f"{backend}_{family}", student, x)
    return figures


def _digits():
    from sklearn import datasets

    digits = datasets.load_digits()
    return ((digits.images[..., None] / DIGITS_SCALE).astype("float32"),
            digits.target.astype("int32"))


def grow_digits_student(out_dir):
    """The built-in mlp trained a few epochs on the digits, grown, saved.

    Returns the path of the student and both models' accuracies on the digits.
    """
    import keras
    import numpy as np

    import keras_net2net as n2n
    from keras_net2net import models

    x, y = _digits()
    keras.utils.set_random_seed(0)
    teacher = models.build_model("mlp", DIGITS_SHAPE, DIGITS_CLASSES, width=16)
    teacher.compile(optimizer=keras.optimizers.Adam(0.01),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    teacher.fit(x, y, batch_size=64, epochs=8, verbose=0)
    student = n2n.expand_model(teacher, widen=2.0, deepen=["fc1"], seed=0)
    path = os.path.join(out_dir, "digits_student.keras")
    student.save(path)

    def accuracy(model):
        return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))

    return {"path": path, "teacher_accuracy": accuracy(teacher),
            "student_accuracy": accuracy(student)}


def _guard_controls(guard):
    """Negative controls: the guard refuses TensorFlow, and blames the
    rewriter for an import made from a keras_net2net file even when the
    ImportError is caught there."""
    before = len(guard.attempts)
    snippet = ("try:\n    import tensorflow\n    refused = False\n"
               "except ImportError:\n    refused = True\n")
    scope = {}
    # Compiled under a rewriter file's name, as a lazy import there would be.
    rewriter_file = os.path.join(_ROOT, "keras_net2net", "__init__.py")
    exec(compile(snippet, rewriter_file, "exec"), scope)  # noqa: S102
    blamed = [a["from_rewriter"] for a in guard.attempts[before:]]
    del guard.attempts[before:]
    return {"refused": scope["refused"], "blamed": blamed == [True]}


def _safely(results, key, fn):
    start, cpu = time.perf_counter(), time.process_time()
    try:
        results[key] = fn()
    except Exception:  # noqa: BLE001 - reported to the test, which fails on it
        results[key] = {"error": traceback.format_exc()}
    print(f"backend_worker: {key} {time.perf_counter() - start:.1f} s "
          f"({time.process_time() - cpu:.1f} s CPU)", file=sys.stderr, flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--load", default=None,
                        help="directory of students saved under another backend")
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help="comma-separated subset of FAMILIES")
    parser.add_argument("--skip_digits", action="store_true")
    args = parser.parse_args(argv)

    guard = _NoTensorFlow()
    sys.meta_path.insert(0, guard)
    sys.path.insert(0, _ROOT)
    import keras

    backend = keras.config.backend()
    results = {"backend": backend, "grown": {}, "loaded": {}}
    families = args.families.split(",")
    for family in families:
        _safely(results["grown"], family,
                lambda: grow_and_save(args.out, backend, family))
    if not args.skip_digits:
        _safely(results, "digits", lambda: grow_digits_student(args.out))
    if args.load:
        for family in families:
            _safely(results["loaded"], family,
                    lambda: check_load(args.load, f"tensorflow_{family}"))
    results["tensorflow_imports"] = list(guard.attempts)
    results["guard_controls"] = _guard_controls(guard)
    results["tensorflow_in_sys_modules"] = "tensorflow" in sys.modules
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
