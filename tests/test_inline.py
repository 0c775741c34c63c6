"""Custom layers built from Keras layers grow (issue 25 item 3): a custom
`Layer` whose `call` uses Keras sublayers and `keras.ops` becomes the plain
Keras subgraph traced from it (a nested functional model of the same name), so
the groups it touches grow exactly; layers that cannot be traced are carried,
and the report says why.

The models have the shape of keras-io examples (image classification with a
ViT, text classification with a Transformer, MLP-Mixer), written here from
scratch and small."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import probe

L = keras.layers


# -- keras-io-style custom layers ----------------------------------------------

class Patches(L.Layer):
    """The ViT example's patch extraction: no weights, no **kwargs."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def call(self, images):
        patches = ops.image.extract_patches(images, size=self.patch_size)
        batch, rows, cols, dims = ops.shape(patches)
        return ops.reshape(patches, (batch, rows * cols, dims))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


class PatchEncoder(L.Layer):
    """The ViT example's encoder: a projection plus a position embedding
    called on constant position ids."""

    def __init__(self, num_patches, projection_dim):
        super().__init__()
        self.num_patches = num_patches
        self.projection = L.Dense(units=projection_dim)
        self.position_embedding = L.Embedding(input_dim=num_patches, output_dim=projection_dim)

    def call(self, patch):
        positions = ops.expand_dims(ops.arange(start=0, stop=self.num_patches, step=1), axis=0)
        projected_patches = self.projection(patch)
        return projected_patches + self.position_embedding(positions)

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches,
                "projection_dim": self.position_embedding.output_dim}


class TokenAndPositionEmbedding(L.Layer):
    """The text classification example's embedding."""

    def __init__(self, maxlen, vocab_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = L.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = L.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        maxlen = ops.shape(x)[-1]
        positions = ops.arange(start=0, stop=maxlen, step=1)
        positions = self.pos_emb(positions)
        x = self.token_emb(x)
        return x + positions


class TransformerBlock(L.Layer):
    """The text classification example's hand-written block: attention, a
    Sequential feed-forward network, LayerNorms, dropouts, residuals."""

    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1, **kwargs):
        super().__init__(**kwargs)
        self.att = L.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([L.Dense(ff_dim, activation="relu"), L.Dense(embed_dim)])
        self.layernorm1 = L.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = L.LayerNormalization(epsilon=1e-6)
        self.dropout1 = L.Dropout(rate)
        self.dropout2 = L.Dropout(rate)

    def call(self, inputs):
        attn_output = self.att(inputs, inputs)
        attn_output = self.dropout1(attn_output)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.ffn(out1)
        ffn_output = self.dropout2(ffn_output)
        return self.layernorm2(out1 + ffn_output)


class MLPMixerLayer(L.Layer):
    """The MLP-Mixer example's block: token mixing over the patches axis
    (transposed), channel mixing, one LayerNorm called twice."""

    def __init__(self, num_patches, hidden_units, dropout_rate, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mlp1 = keras.Sequential([L.Dense(units=num_patches, activation="gelu"),
                                      L.Dense(units=num_patches), L.Dropout(rate=dropout_rate)])
        self.mlp2 = keras.Sequential([L.Dense(units=num_patches, activation="gelu"),
                                      L.Dense(units=hidden_units), L.Dropout(rate=dropout_rate)])
        self.normalize = L.LayerNormalization(epsilon=1e-6)

    def call(self, inputs):
        x = self.normalize(inputs)
        x_channels = ops.transpose(x, axes=(0, 2, 1))
        mlp1_outputs = self.mlp1(x_channels)
        mlp1_outputs = ops.transpose(mlp1_outputs, axes=(0, 2, 1))
        x = mlp1_outputs + inputs
        x_patches = self.normalize(x)
        mlp2_outputs = self.mlp2(x_patches)
        return x + mlp2_outputs


class ValueGate(L.Layer):
    """Python control flow on a tensor's value: cannot be traced (Keras builds
    it from its declared output shape, and runs it eagerly)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(6)

    def build(self, shape):
        self.dense.build(shape)

    def compute_output_shape(self, shape):
        return (*shape[:-1], 6)

    def call(self, x):
        y = self.dense(x)
        if ops.convert_to_numpy(ops.mean(y)) > 0:
            return y
        return -y


class TFCumsum(L.Layer):
    """A TensorFlow op on its sublayer's output: not a Keras op."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(6)

    def call(self, x):
        import tensorflow as tf

        return tf.math.cumsum(self.dense(x), axis=-1)


class OwnScale(L.Layer):
    """A weight of its own (add_weight): carried, not inlined."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


class StochasticDepth(L.Layer):
    """Drops the residual branch in training only: another path in training."""

    def __init__(self, rate, **kwargs):
        super().__init__(**kwargs)
        self.rate = rate

    def call(self, x, training=None):
        if training:
            keep = 1 - self.rate
            return x * keras.random.uniform((1,), 0, 1) * keep
        return x


# -- models ------------------------------------------------------------------

def vit_model():
    inputs = keras.Input((8, 8, 3))
    patches = Patches(4)(inputs)
    x = PatchEncoder(num_patches=4, projection_dim=8)(patches)
    for i in range(2):
        x1 = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}a")(x)
        attention = L.MultiHeadAttention(num_heads=2, key_dim=8, dropout=0.1,
                                         name=f"mha{i}")(x1, x1)
        x2 = L.Add(name=f"add{i}a")([attention, x])
        x3 = L.LayerNormalization(epsilon=1e-6, name=f"ln{i}b")(x2)
        x3 = L.Dense(16, activation="gelu", name=f"mlp{i}a")(x3)
        x3 = L.Dense(8, activation="gelu", name=f"mlp{i}b")(x3)
        x = L.Add(name=f"add{i}b")([x3, x2])
    x = L.LayerNormalization(epsilon=1e-6, name="ln_final")(x)
    x = L.Flatten()(x)
    x = L.Dense(12, activation="gelu", name="head")(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


def text_model():
    inputs = keras.Input(shape=(10,), dtype="int32")
    x = TokenAndPositionEmbedding(10, 20, 8)(inputs)
    x = TransformerBlock(8, 2, 12)(x)
    x = L.GlobalAveragePooling1D()(x)
    x = L.Dropout(0.1)(x)
    x = L.Dense(10, activation="relu", name="fc")(x)
    return keras.Model(inputs, L.Dense(2, activation="softmax", name="probs")(x))


def mixer_model():
    inputs = keras.Input((8, 8, 3))
    patches = Patches(2)(inputs)  # 16 patches of 12 values
    x = L.Dense(units=8, name="patch_projection")(patches)
    for _ in range(2):
        x = MLPMixerLayer(16, 8, 0.1)(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, L.Dense(3, name="logits")(x))


MODELS = [vit_model, text_model, mixer_model]
IDS = ["vit", "text_transformer", "mlp_mixer"]


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


def _hidden(report):
    """Groups other than the model's inputs and outputs, and inside layers."""
    return [g for g in report.groups
            if not any(r.startswith(("model input", "model output")) for r in g["reasons"])]


# -- tests -------------------------------------------------------------------

@pytest.mark.parametrize("factory", MODELS, ids=IDS)
@pytest.mark.parametrize("verify", [True, False])
def test_custom_layers_grow_exactly(factory, verify, tmp_path):
    teacher = randomize_state(factory())
    before = _weights(teacher)
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert_preserved(teacher, student, x)
    assert report.inlined, report
    kept = [g for g in _hidden(report) if g["frozen"]]
    if factory is mixer_model:
        # Token mixing runs a Dense over the patches axis of the transposed
        # stream (the stream's channels travel on the other axis, rules.sides):
        # everything grows but the token mixer's output, which is the patch
        # axis, its size fixed by the residual add.
        assert len(kept) == 2 and all(
            any("sit on different axes" in r for r in g["reasons"]) for g in kept), kept
        grown = [g for g in _hidden(report) if not g["frozen"]]
        assert len(grown) == 5 and all(g["new_width"] == 2 * g["old_width"] for g in grown)
        assert any(g["name"] == "patch_projection" for g in grown), grown  # the stream
    else:
        assert not kept, kept  # every hidden group grows, those inside custom layers too
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)  # bit-identical
    assert not any(n2n.inline.is_custom_layer(l) for l in student._flatten_layers())
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects
    np.testing.assert_array_equal(np.asarray(student(x[0])), np.asarray(loaded(x[0])))


@pytest.mark.parametrize("factory", MODELS, ids=IDS)
def test_inlining_off_keeps_the_custom_layers(factory):
    teacher = randomize_state(factory())
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True,
                                       inline_custom_layers=False)
    assert_preserved(teacher, student, probe(teacher))
    assert not report.inlined
    classes = {type(l).__name__ for l in student.layers}
    assert classes & {"PatchEncoder", "TransformerBlock", "MLPMixerLayer"}, classes
    assert any(g["frozen"] for g in _hidden(report))


def test_inlined_layers_are_named_after_the_custom_layer():
    teacher = randomize_state(vit_model())
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    name = next(l.name for l in teacher.layers if isinstance(l, PatchEncoder))
    encoder = student.get_layer(name)  # a plain functional model of the same name
    assert type(encoder) is keras.Model or type(encoder).__name__ == "Functional", encoder
    dense = [l for l in encoder.layers if isinstance(l, L.Dense)]
    assert len(dense) == 1 and dense[0].units == 16
    grown = {r["layer"] for r in report.layers if r["new_width"] > r["old_width"]}
    assert f"{name}/{dense[0].name}" in grown, grown
    assert sorted(r["class"] for r in report.inlined) == ["PatchEncoder", "Patches"]


def test_student_trains_without_moving_the_teacher():
    teacher = randomize_state(text_model())
    x = probe(teacher)[0]
    y0 = np.asarray(teacher(x))
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    student.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    student.train_on_batch(x, np.ones_like(np.asarray(student(x))))
    np.testing.assert_array_equal(y0, np.asarray(teacher(x)))


@pytest.mark.parametrize("layer,fragment", [
    (ValueGate(name="gate"), "cannot be traced on symbolic inputs"),
    (TFCumsum(name="tf_cumsum"), "cannot be traced on symbolic inputs"),
    (OwnScale(name="own_scale"), "holds weights of its own"),
    (StochasticDepth(0.5, name="drop_path"), "another path in training"),
], ids=["value_control_flow", "tf_op", "own_weights", "training_branch"])
@pytest.mark.parametrize("verify", [True, False])
def test_untraceable_layers_are_carried_with_the_reason(layer, fragment, verify):
    inputs = keras.Input((5,))
    x = L.Dense(6, name="fc")(inputs)
    x = layer(x)
    x = L.Dense(4, name="hidden")(x)
    teacher = randomize_state(keras.Model(inputs, L.Dense(2, name="logits")(x)))
    before = _weights(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert not report.inlined
    barrier = next(b for b in report.barriers if b["layer"] == layer.name)
    assert "not inlined" in barrier["reason"] and fragment in barrier["reason"], barrier
    assert student.get_layer("hidden").units == 8  # what the layer does not touch grows
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


def test_explain_lists_inlined_layers_and_grows_nothing():
    teacher = randomize_state(text_model())
    report = n2n.explain_model(teacher)
    assert {r["class"] for r in report.inlined} == {"TokenAndPositionEmbedding",
                                                    "TransformerBlock"}
    assert not any(g["frozen"] for g in _hidden(report))


def test_sum_over_channels_is_kept_with_the_reason_and_other_axes_grow():
    inputs = keras.Input((4, 5))
    x = L.Dense(6, name="fc")(inputs)
    pooled = ops.sum(x, axis=1)  # over the sequence: the channels follow
    total = ops.sum(L.Dense(3, name="side")(inputs), axis=-1, keepdims=True)
    x = L.Concatenate()([L.Dense(7, name="mix")(pooled), ops.squeeze(total, -1)])
    teacher = randomize_state(keras.Model(inputs, L.Dense(2, name="logits")(x)))
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert student.get_layer("fc").units == 12 and student.get_layer("side").units == 3
    reasons = [b["reason"] for b in report.barriers if b["class"] == "Sum"]
    assert any("count every copied channel again" in r for r in reasons), report.barriers


@pytest.mark.parametrize("factory", [vit_model, text_model], ids=["vit", "text_transformer"])
def test_second_look_in_float64_runs_on_inlined_models(factory, monkeypatch):
    from keras_net2net import verify

    monkeypatch.setitem(verify.ROUNDING, "float32", 0.0)  # every error gets the second look
    keras.utils.set_random_seed(0)  # an unseeded teacher could round to an error of 0.0
    teacher = randomize_state(factory())
    _, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert report.max_relative_error > 0.0, "no rounding to look at: pick another seed"
    assert "float64_note" not in report.verification, report.verification
    assert verify.max_relative(report.verification["float64"]) <= verify.FLOAT64_TOLERANCE
