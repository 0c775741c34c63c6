"""Keras augmentation / image preprocessing layers and ConvLSTM grow through.

Augmentation layers are the identity at inference and act on every channel
alike, so a channel group passes through them; ConvLSTM copies its filters
inside every gate block like LSTM. Before these rules each was an unknown
layer, a barrier that kept the groups around it at their width.
"""

import keras
import pytest

import keras_net2net as n2n
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers

AUGMENTATION = {
    "RandomFlip": lambda: L.RandomFlip(seed=0),
    "RandomZoom": lambda: L.RandomZoom(0.2, seed=0),
    "RandomRotation": lambda: L.RandomRotation(0.1, seed=0),
    "RandomTranslation": lambda: L.RandomTranslation(0.1, 0.1, seed=0),
    "RandomCrop": lambda: L.RandomCrop(6, 6, seed=0),
    "RandomContrast": lambda: L.RandomContrast(0.2, seed=0),
    "RandomBrightness": lambda: L.RandomBrightness(0.2, value_range=(-100, 100), seed=0),
    "Resizing": lambda: L.Resizing(6, 6),
    "CenterCrop": lambda: L.CenterCrop(6, 6),
    # Keras' own config round trip of RandomShear fails (keras_net2net.config_repairs).
    "RandomShear": lambda: L.RandomShear(0.2, 0.1, seed=0),
    "RandomShear_pair": lambda: L.RandomShear(x_factor=(0.1, 0.3), seed=0),
}


def augmented_cnn(make):
    """An augmentation layer on the input path (as keras-io examples put it)
    and one between two convolutions, on a channel group that can grow."""
    inp = keras.Input((8, 8, 3))
    x = make()(inp)
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = make()(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


@pytest.mark.parametrize("name", list(AUGMENTATION))
@pytest.mark.parametrize("verify", [True, False])
def test_augmentation_layers_pass_channels_through(name, verify):
    keras.utils.set_random_seed(0)  # the same weights whatever ran before
    teacher = randomize_state(augmented_cnn(AUGMENTATION[name]))
    snap = snapshot(teacher)
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert student.get_layer("conv1").filters == 8  # grew through the layer
    assert not report.barriers, report.barriers
    figures = assert_preserved(teacher, student, x, rtol=1e-6)
    assert_unchanged(teacher, snap)
    print(name, "max|d|, rel:", figures)


def test_random_shear_is_recreated_with_the_teachers_factors():
    """Keras 3 cannot re-create RandomShear from its own config; the student's
    copy has the teacher's exact factors, and shears as the teacher does in
    training when both draw from the same seed."""
    shear = L.RandomShear(0.25, 0.15, seed=4)
    with pytest.raises(Exception):  # if this passes, Keras fixed it: drop the repair
        L.RandomShear.from_config(shear.get_config())
    teacher = randomize_state(augmented_cnn(lambda: L.RandomShear(0.25, 0.15, seed=4)))
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    pairs = [(t, s) for t, s in zip(teacher.layers, student.layers)
             if isinstance(t, L.RandomShear)]
    assert len(pairs) == 2
    for t, s in pairs:
        assert s is not t and type(s) is L.RandomShear
        assert (s.x_factor, s.y_factor) == (t.x_factor, t.y_factor) == ((-0.25, 0.25),
                                                                        (-0.15, 0.15))
        assert s.get_config() == {**t.get_config(), "name": s.name}
    image = keras.random.uniform((2, 8, 8, 3), seed=1)
    a = keras.ops.convert_to_numpy(pairs[0][0](image, training=True))
    b = keras.ops.convert_to_numpy(pairs[0][1](image, training=True))
    assert abs(a - b).max() == 0.0  # same seed, same factors: the same shear


def test_channel_mixing_augmentation_stays_a_barrier():
    keras.utils.set_random_seed(0)  # the same weights whatever ran before
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(3, 3, padding="same", name="conv1")(inp)
    x = L.RandomGrayscale(seed=0)(x)
    x = L.Conv2D(5, 3, padding="same", name="conv2")(x)
    teacher = randomize_state(keras.Model(inp, L.Dense(2, name="logits")(
        L.GlobalAveragePooling2D()(x))))
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert student.get_layer("conv1").filters == 3
    assert [b["class"] for b in report.barriers] == ["RandomGrayscale"]
    assert_preserved(teacher, student, probe(teacher), rtol=1e-6)


def conv_lstm(rank, return_sequences):
    cls = {1: L.ConvLSTM1D, 2: L.ConvLSTM2D, 3: L.ConvLSTM3D}[rank]
    inp = keras.Input((3,) + (5,) * rank + (2,))
    x = L.TimeDistributed(getattr(L, f"Conv{rank}D")(4, 1, name="embed"), name="td")(inp)
    x = cls(6, 3, padding="same", return_sequences=return_sequences, name="convlstm")(x)
    if return_sequences:
        x = cls(4, 3, padding="same", name="convlstm2")(x)
    x = getattr(L, f"GlobalAveragePooling{rank}D")()(x)
    x = L.Dense(5, activation="relu", name="fc")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


@pytest.mark.parametrize("rank,return_sequences", [(1, True), (2, False), (2, True), (3, False)])
@pytest.mark.parametrize("verify", [True, False])
def test_conv_lstm_copies_filters_inside_every_gate(rank, return_sequences, verify):
    keras.utils.set_random_seed(0)  # the same weights whatever ran before
    teacher = randomize_state(conv_lstm(rank, return_sequences))
    snap = snapshot(teacher)
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert student.get_layer("convlstm").filters == 12
    assert student.get_layer("td").layer.filters == 8
    figures = assert_preserved(teacher, student, x, rtol=1e-6)
    assert_unchanged(teacher, snap)
    print(f"ConvLSTM{rank}D", return_sequences, "max|d|, rel:", figures)
