"""Carry objects, not names: a layer copied through its config computes what
the teacher's computes.

A config names functions and leaves out what Keras keeps outside variables, so
a copy made from it can compute something else: `Dense(activation=ops.gelu)`
(tanh approximation) came back with `keras.activations.gelu` (exact), and an
adapted `Normalization` came back normalising with mean 0 and variance 1. Each
model below has the shape of a keras-io example where that happened (an
MLP-Mixer's input normalisation, a compact convolutional transformer's GELU
MLP, a text classifier's vocabulary).
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers
RTOL = 1e-6  # float32 rounding of the copies' divided weights; a changed function is >> this


def _rng():
    return np.random.default_rng(0)


def my_activation(x):
    """A user's own activation: no name Keras can find it by."""
    return ops.tanh(x) * 1.5


def gelu_mlp():
    """A compact convolutional transformer's MLP: tanh-approximate GELU."""
    inp = keras.Input((4, 6))
    x = L.Dense(8, activation=ops.gelu, name="mlp1")(inp)
    x = L.Dense(6, activation=ops.gelu, name="mlp2")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def recurrent_ops_activations():
    inp = keras.Input((5, 4))
    x = L.Dense(6, activation=my_activation, name="fc")(inp)
    x = L.LSTM(5, activation=ops.gelu, recurrent_activation=ops.hard_sigmoid, name="lstm",
               return_sequences=True)(x)
    x = L.GRU(4, activation=ops.gelu, name="gru")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def normalization_model():
    """An MLP-Mixer's input normalisation, adapted, feeding a layer that grows."""
    inp = keras.Input((4, 4, 3))
    norm = L.Normalization(name="norm")
    norm.adapt(_rng().normal(3.0, 2.0, (32, 4, 4, 3)).astype("float32"))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(norm(inp))
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(6, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def discretization_model():
    inp = keras.Input((5,))
    bins = L.Discretization(num_bins=4, name="bins")
    bins.adapt(_rng().normal(size=(200, 5)).astype("float32"))
    x = L.Embedding(4, 6, name="embed")(bins(inp))
    x = L.Flatten()(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def integer_lookup_model():
    inp = keras.Input((5,), dtype="int32")
    lookup = L.IntegerLookup(name="lookup")
    lookup.adapt(_rng().integers(0, 20, (100, 5)))
    x = L.Embedding(lookup.vocabulary_size(), 6, name="embed")(lookup(inp))
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


WORDS = np.array(["red", "green", "blue", "cyan", "black", "white", "grey"])


def string_lookup_model():
    inp = keras.Input((5,), dtype="string")
    lookup = L.StringLookup(name="lookup")
    lookup.adapt(_rng().choice(WORDS[:5], (60, 5)))
    x = L.Embedding(lookup.vocabulary_size(), 6, name="embed")(lookup(inp))
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def text_vectorization_model():
    inp = keras.Input((1,), dtype="string")
    vectorize = L.TextVectorization(max_tokens=10, output_sequence_length=4, name="vectorize")
    vectorize.adapt([" ".join(row) for row in _rng().choice(WORDS[:5], (40, 3))])
    x = L.Embedding(10, 6, name="embed")(vectorize(inp))
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dense(8, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def _inputs(name, teacher):
    """Inputs that reach every branch: values out of the vocabulary too."""
    rng = np.random.default_rng(1)
    if name == "integer_lookup":
        return [rng.integers(0, 25, (6, 5)).astype("int32")]
    if name == "string_lookup":
        return [rng.choice(WORDS, (6, 5))]
    if name == "text_vectorization":
        return [np.array([[" ".join(row)] for row in rng.choice(WORDS, (6, 4))])]
    return probe(teacher)


MODELS = {"gelu_mlp": gelu_mlp, "recurrent_ops_activations": recurrent_ops_activations,
          "normalization": normalization_model, "discretization": discretization_model,
          "integer_lookup": integer_lookup_model, "string_lookup": string_lookup_model,
          "text_vectorization": text_vectorization_model}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("verify", [True, False])
def test_copied_layers_compute_what_the_teachers_compute(name, verify):
    keras.utils.set_random_seed(0)  # the same weights whatever ran before
    # Perturbed weights: no weight sits at its initial constant.
    teacher = randomize_state(MODELS[name]())
    snap = snapshot(teacher)
    x = _inputs(name, teacher)
    kwargs = {} if name in ("gelu_mlp", "recurrent_ops_activations", "normalization",
                            "discretization") else {"verify_data": x}
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True, **kwargs if verify else {})
    figures = assert_preserved(teacher, student, x, rtol=RTOL)
    assert any(r["new_width"] > r["old_width"] for r in report.layers), report
    assert_unchanged(teacher, snap)  # bit-identical
    print(name, "max|d|, rel:", figures)


@pytest.mark.parametrize("name", ["gelu_mlp", "recurrent_ops_activations"])
def test_callables_are_the_teachers_own_objects(name):
    teacher = randomize_state(MODELS[name]())
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    for layer in teacher.layers[1:]:  # after the InputLayer
        held = [(l.name, a, v) for l in layer._flatten_layers(include_self=True)
                for a, v in vars(l).items() if a in ("activation", "recurrent_activation")]
        copy = {(l.name, a): v for l in student.get_layer(layer.name)._flatten_layers(
            include_self=True) for a, v in vars(l).items()}
        for sub, attr, value in held:
            assert copy[(sub, attr)] is value, (layer.name, sub, attr)
    grown = "mlp1" if name == "gelu_mlp" else "lstm"
    assert student.get_layer(grown).units == 2 * teacher.get_layer(grown).units


def test_adapted_normalization_keeps_its_statistics_when_nothing_grows():
    """The bug hit even where no group grew: only a layer was deepened."""
    teacher = randomize_state(normalization_model())
    x = probe(teacher)
    for verify in (True, False):
        student = n2n.expand_model(teacher, deepen=["fc"], verify=verify)
        assert_preserved(teacher, student, x, rtol=RTOL)
        np.testing.assert_array_equal(np.asarray(student.get_layer("norm").mean),
                                      np.asarray(teacher.get_layer("norm").mean))


def test_lookup_vocabulary_is_the_teachers_and_the_student_saves(tmp_path):
    teacher = randomize_state(string_lookup_model())
    x = _inputs("string_lookup", teacher)
    student = n2n.expand_model(teacher, widen=2.0, seed=0, verify_data=x)
    assert student.get_layer("lookup").get_vocabulary() == \
        teacher.get_layer("lookup").get_vocabulary()
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(student(x[0])), np.asarray(loaded(x[0])))
