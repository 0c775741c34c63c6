"""Facts about layer kinds live on their rules (and activations in one table):
pad constraints, deepenable, what a layer makes of zero, which weights a
zeroed branch writer zeroes, attention's key dims; weight modes are one
`Mode` table. Padding, deepen, spans and optimizer_state read them without
naming rule classes, so a new layer kind is one rule class and one registry
line."""

import keras
import numpy as np
import pytest

from keras_net2net import activations
from keras_net2net import analysis
from keras_net2net import deepen
from keras_net2net import rules
from keras_net2net.rules import base
from keras_net2net.rules import channelwise
from keras_net2net.rules.base import Mode

L = keras.layers


# -- the activation table ---------------------------------------------------------
@pytest.mark.parametrize("fn, zero", [
    ("relu", True), ("gelu", True), ("tanh", True), ("linear", True), (None, True),
    ("sigmoid", False), ("softplus", False), ("exponential", False),
    (keras.activations.relu, True), (keras.activations.sigmoid, False),
    (keras.ops.gelu, True), (keras.ops.sigmoid, False),
    (lambda x: 2.0 * x, True), (lambda x: x + 1.0, False),
    # Keras' sparse_plus is 0.25 at 0: a name table once listed it as 0 at 0.
    ("sparse_plus", False),
    # Not element-wise, whatever a one-element input gives.
    ("softmax", False), ("log_softmax", False),
    ("no_such_activation", False),
])
def test_maps_zero_to_zero(fn, zero):
    assert activations.maps_zero_to_zero(fn) is zero


def test_value_at_zero():
    assert activations.value_at_zero("sigmoid") == 0.5
    assert activations.value_at_zero(lambda x: x - 3.0) == 3.0
    assert activations.value_at_zero(keras.ops.gelu) == 0.0
    assert activations.value_at_zero("no_such_activation") is None
    assert activations.value_at_zero(lambda x, y: x) is None  # cannot be evaluated


def test_idempotent_and_elementwise():
    assert activations.idempotent("relu") and activations.idempotent(keras.activations.relu6)
    assert not activations.idempotent("gelu")
    assert not activations.elementwise("softmax") and activations.elementwise("gelu")
    assert rules.IDEMPOTENT is activations.IDEMPOTENT  # one table, re-exported


# -- each rule answers its facts ----------------------------------------------------
# (layer, pads, deepenable, zeroable, value at zero)
FACTS = {
    "dense": (lambda: L.Dense(4), None, True, True, None),
    "conv2d": (lambda: L.Conv2D(4, 3), None, True, True, None),
    "conv2d_transpose": (lambda: L.Conv2DTranspose(4, 3), None, False, True, None),
    "depthwise": (lambda: L.DepthwiseConv2D(3), None, True, True, None),
    "separable": (lambda: L.SeparableConv2D(4, 3), None, True, True, None),
    "lstm": (lambda: L.LSTM(4), None, True, False, None),
    "rnn_cell": (lambda: L.RNN(L.SimpleRNNCell(4)), None, False, False, None),
    "embedding": (lambda: L.Embedding(5, 4), None, False, False, None),
    "mha": (lambda: L.MultiHeadAttention(2, 4), None, False, True, None),
    "einsum_dense": (lambda: L.EinsumDense("ab,bc->ac", (4,)), None, False, True, None),
    "batch_norm": (lambda: L.BatchNormalization(), "zero", False, True, None),
    "layer_norm": (lambda: L.LayerNormalization(), None, False, True, None),
    "rms_norm": (lambda: L.RMSNormalization(), None, False, True, None),
    "prelu": (lambda: L.PReLU(), "zero", False, False, 0.0),
    "dropout": (lambda: L.Dropout(0.5), None, False, False, 0.0),
    "gaussian_noise": (lambda: L.GaussianNoise(0.1), None, False, False, None),
    "relu": (lambda: L.ReLU(), None, False, False, 0.0),
    "sigmoid": (lambda: L.Activation("sigmoid"), None, False, False, 0.5),
    "max_pool": (lambda: L.MaxPooling2D(), "zero", False, False, None),
    "avg_pool": (lambda: L.AveragePooling2D(2), "same", False, False, None),
    "global_max_pool": (lambda: L.GlobalMaxPooling2D(), "zero", False, False, None),
    "zero_padding": (lambda: L.ZeroPadding2D(), "same", False, False, 0.0),
    "reshape": (lambda: L.Reshape((4,)), "same", False, False, 0.0),
    "flatten": (lambda: L.Flatten(), None, False, False, 0.0),
}


@pytest.mark.parametrize("name", sorted(FACTS))
def test_each_rule_answers_its_facts(name):
    make, pads, deepenable, zeroable, zero = FACTS[name]
    layer = make()
    rule = rules.rule_for(layer)
    assert rule is not None
    assert rule.pads == pads
    assert rule.deepenable is deepenable and deepen.deepenable(layer) is deepenable
    assert rule.zeroable is zeroable
    assert rule.value_at_zero(layer) == zero


def test_deepenable_kinds_come_from_the_registry():
    assert rules.registry.kinds_where("deepenable") == [
        "Bidirectional", "Conv1D", "Conv2D", "Conv3D", "Dense", "DepthwiseConv1D",
        "DepthwiseConv2D", "GRU", "LSTM", "SeparableConv1D", "SeparableConv2D", "SimpleRNN"]


def test_zeroing_facts():
    norm = L.LayerNormalization(scale=False)
    assert "scale=False" in rules.rule_for(norm).zeroing_problem(norm)
    assert rules.rule_for(L.RMSNormalization()).zeroing_problem(L.RMSNormalization()) is None
    dense = L.Dense(4, activation="sigmoid")
    assert rules.rule_for(dense).zeroing_problem(dense) == (
        "applies activation 'sigmoid', which maps 0 to 0.5")
    assert rules.rule_for(L.Dense(4, activation="relu")).zeroing_problem(
        L.Dense(4, activation="relu")) is None
    separable = L.SeparableConv2D(4, 3)
    assert rules.rule_for(separable).zeroed_weights(separable) == (
        separable, ("pointwise_kernel", "bias"))


def test_key_dim_axes_of_attention():
    mha = L.MultiHeadAttention(2, 4)
    x = np.zeros((1, 3, 6), "float32")
    mha(x, x)
    axes = rules.rule_for(mha).key_dim_axes(mha)
    assert axes == {id(v): len(v.shape) - 1 for v in mha._key_dense.weights}
    assert rules.rule_for(L.Dense(3)).key_dim_axes(L.Dense(3)) == {}


def test_tied_norm_fact():
    assert rules.rule_for(L.LayerNormalization()).divides_for_tied_embedding
    assert rules.rule_for(L.RMSNormalization()).divides_for_tied_embedding
    assert not rules.rule_for(L.BatchNormalization()).divides_for_tied_embedding


# -- a new layer kind: one rule class, one registry line ------------------------------
class Passing(L.Layer):
    """An element-wise layer the toolkit does not know."""

    def call(self, x):
        return x * 1.0


class PassingRule(channelwise.PassThroughRule):
    """Its rule: a pass-through whose pads pass as they are (inherited)."""


class Opaque(Passing):
    pass


class OpaqueRule(base.Rule):
    """A rule that passes channels on but says nothing about pads."""

    def propagate(self, ctx, call):
        ctx.layouts[call.outputs[0]] = base.input_layout(ctx, call)


def _norm_fed(layer):
    inputs = keras.Input((5, 6))
    x = L.Dense(8, name="fc")(inputs)
    x = layer(x)
    x = L.LayerNormalization(name="ln")(x)
    return keras.Model(inputs, L.Dense(3, name="out")(x))


def test_padding_asks_the_rule(monkeypatch):
    monkeypatch.setitem(rules.registry._USER_TABLE, Passing, PassingRule())
    monkeypatch.setitem(rules.registry._USER_TABLE, Opaque, OpaqueRule())
    ctx = analysis.analyze(_norm_fed(Passing(name="passing")))
    assert ctx.pad_kinds and not ctx.pad_reasons
    ctx = analysis.analyze(_norm_fed(Opaque(name="opaque")))
    assert not ctx.pad_kinds
    (reason,) = ctx.pad_reasons.values()
    assert "Opaque 'opaque' passes the group on" in reason


# -- Mode -----------------------------------------------------------------------------
def test_mode_names_stay_importable_from_rules_base():
    assert (base.COPY, base.DIVIDE, base.QUERY_DIMS) == (Mode.COPY, Mode.DIVIDE,
                                                         Mode.QUERY_DIMS)
    assert base.NORM_SCALE_DIVIDED is Mode.NORM_SCALE_DIVIDED
    assert base.NORM_SCALE_ONE_PLUS.base is Mode.NORM_SCALE
    assert base.NORM_SCALE_DIVIDED_ONE_PLUS.base is Mode.NORM_SCALE_DIVIDED
    assert Mode.NORM_SCALE_ONE_PLUS.offset == 1.0 and Mode.NORM_SCALE.offset == 0.0


def test_mode_of_reads_what_specs_once_wrote():
    assert Mode.of(False) is Mode.COPY and Mode.of(True) is Mode.DIVIDE
    assert Mode.of("query_dims") is Mode.QUERY_DIMS
    assert Mode.of("norm_scale_divided+1") is Mode.NORM_SCALE_DIVIDED_ONE_PLUS
    assert Mode.of(Mode.NORM_SCALE) is Mode.NORM_SCALE
    with pytest.raises(ValueError, match="Expected a weight mode"):
        Mode.of("sideways")
    with pytest.raises(TypeError, match="no truth value"):
        bool(Mode.COPY)


def test_mode_factors():
    src = np.array([0, 1, 2, 0, 1, -1])  # copies of 0 and 1, a pad
    counts = np.array([2.0, 2.0, 1.0])
    np.testing.assert_allclose(Mode.COPY.weight_factor(src, counts), 1.0)
    np.testing.assert_allclose(Mode.COPY.gradient_factor(src, counts)[:5],
                               [0.5, 0.5, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(Mode.DIVIDE.weight_factor(src, counts)[:5],
                               [0.5, 0.5, 1.0, 0.5, 0.5])
    np.testing.assert_allclose(Mode.DIVIDE.gradient_factor(src, counts), 1.0)
    s = np.sqrt(5 / 6)
    np.testing.assert_allclose(Mode.NORM_SCALE.weight_factor(src, counts), s)
    np.testing.assert_allclose(Mode.NORM_SCALE_DIVIDED.weight_factor(src, counts)[:5],
                               [s / 2, s / 2, s, s / 2, s / 2])
    np.testing.assert_allclose(Mode.NORM_SCALE_DIVIDED.gradient_factor(src, counts), 1.0)
    np.testing.assert_allclose(Mode.NORM_SHIFT_DIVIDED.weight_factor(src, counts)[:5],
                               [0.5, 0.5, 1.0, 0.5, 0.5])
    q = np.sqrt(6 / 3)
    np.testing.assert_allclose(Mode.QUERY_DIMS.weight_factor(src, counts),
                               [q, q, q, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(Mode.QUERY_DIMS.gradient_factor(src, counts), 1 / q)


def test_modes_carry_rebuild_facts():
    """What `rebuild._rewrite` reads: which modes divide, take noise, scale."""
    assert [m.name for m in Mode if m.divides] == [
        "DIVIDE", "NORM_SCALE_DIVIDED", "NORM_SHIFT_DIVIDED", "NORM_SCALE_DIVIDED_ONE_PLUS"]
    assert [m.name for m in Mode if m.noise] == ["DIVIDE", "QUERY_DIMS", "NORM_SHIFT_DIVIDED"]
    assert [m.name for m in Mode if m.scale == base.NORM] == [
        "NORM_SCALE", "NORM_SCALE_DIVIDED", "NORM_SCALE_ONE_PLUS", "NORM_SCALE_DIVIDED_ONE_PLUS"]
