"""Shared checks for growth tests: outputs compared, teacher untouched."""

import re

import keras
import numpy as np


def probe(model, seed=1):
    """A small random batch matching the model's inputs (ints for Embeddings)."""
    from keras_net2net import analysis
    from keras_net2net import verify

    return verify.probe_inputs(analysis.analyze(model), batch=3, seed=seed)


def assert_keras_round_trip(student, x, tmp_path):
    """Saved to .keras and loaded back with no custom objects: same outputs."""
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(student(x[0])), np.asarray(loaded(x[0])))


def assert_refused(teacher, kwargs, error, fragments):
    """expand_model raises `error` in Keras' form with every fragment."""
    import pytest

    import keras_net2net as n2n

    with pytest.raises(error) as info:
        n2n.expand_model(teacher, **kwargs)
    message = str(info.value)
    assert message.startswith("Expected"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def call(model, x):
    """The model's outputs on `x` in inference mode, as the model nests them
    (`x` packed as the model's inputs are: a dict for dict inputs)."""
    from keras_net2net.graph import pack_inputs

    return model(pack_inputs(model, x), training=False)


def outputs(model, x):
    return [np.asarray(t, dtype=np.float64) for t in keras.tree.flatten(call(model, x))]


def assert_same_outputs_structure(y, z):
    """Teacher outputs `y` and student outputs `z` nest the same way: as many
    outputs, under the same keys (a student with an output missing, or one
    more, must not pass a comparison that zips the two)."""
    ys, zs = keras.tree.flatten(y), keras.tree.flatten(z)
    assert len(ys) == len(zs), f"teacher has {len(ys)} outputs, student {len(zs)}"
    same_paths = getattr(keras.tree, "assert_same_paths", keras.tree.assert_same_structure)
    same_paths(y, z)


def assert_preserved(teacher, student, x, rtol=1e-5):
    """Same output structure; then max|Δ| / max|y| <= rtol for every output,
    and shapes unchanged. Returns [(max|Δ|, relative error)] per output."""
    y_tree, z_tree = call(teacher, x), call(student, x)
    assert_same_outputs_structure(y_tree, z_tree)
    figures = []
    for y, z in zip(keras.tree.flatten(y_tree), keras.tree.flatten(z_tree)):
        y, z = np.asarray(y, dtype=np.float64), np.asarray(z, dtype=np.float64)
        assert y.shape == z.shape, (y.shape, z.shape)
        max_abs = float(np.max(np.abs(y - z)))
        rel = max_abs / max(float(np.max(np.abs(y))), 1e-12)
        figures.append((max_abs, rel))
        assert rel <= rtol, f"max|d|={max_abs:.3g} rel={rel:.3g} > {rtol}"  # NaN fails too
    return figures


def float32_twin(model):
    """The same model and weights computing in float32 (a reference for a
    mixed-precision model that does not rely on keras-net2net)."""
    def clone(layer):
        config = layer.get_config()
        config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin


def relative_error(y, reference):
    """max|y - reference| / max|reference| over every output."""
    return max(float(np.max(np.abs(a - b))) / max(float(np.max(np.abs(b))), 1e-12)
               for a, b in zip(y, reference))


def _config(model):
    try:
        text = model.to_json()
    except Exception:  # noqa: BLE001 - a custom layer or regularizer without a config
        # What a config would say that growth could touch: names, classes, what
        # the layers hold (the objects carried over must be the teacher's again).
        return [(l.name, type(l).__name__, l.trainable,
                 sorted((k, id(v)) for k, v in vars(l).items()
                        if isinstance(v, (keras.regularizers.Regularizer,
                                          keras.constraints.Constraint))))
                for l in model._flatten_layers(include_self=False)]
    # Lambda bytecode is re-marshalled with refcount-dependent flags: skip it.
    return re.sub(r'"code": "[^"]*"', '"code": ""', text)


def snapshot(model):
    return _config(model), [w.copy() for w in model.get_weights()]


def assert_unchanged(model, snap):
    config, weights = snap
    assert _config(model) == config
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
