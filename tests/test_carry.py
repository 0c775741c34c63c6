"""Real models never crash the rewriter: layers growth leaves alone are carried
into the student however their config behaves (custom layers without
`**kwargs`, Lambdas over module functions and globals, regularizers without
`get_config`), and what cannot be carried is a typed error before any work.

Each model below has the shape of a public Keras example that crashed the
rebuild before (keras-io's pixel shuffle, ViT patches, siamese distance,
PointNet's orthogonal regularizer)."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import rules
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import probe

L = keras.layers


class PixelShuffle(L.Layer):
    """keras-io's sub-pixel upscaling: no weights, no **kwargs."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        b, h, w, c = ops.shape(x)
        r = self.factor
        x = ops.reshape(x, (b, h, w, r, r, c // (r * r)))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (b, h * r, w * r, c // (r * r)))

    def get_config(self):  # base config (name, trainable, dtype) + own args
        return {**super().get_config(), "factor": self.factor}


class Patches(L.Layer):
    """ViT example's patch extraction: no weights, no **kwargs."""

    def __init__(self, patch_size):
        super().__init__()
        self.patch_size = patch_size

    def call(self, images):
        patches = ops.image.extract_patches(images, self.patch_size)
        n = patches.shape[1] * patches.shape[2]
        return ops.reshape(patches, (-1, n, patches.shape[-1]))

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size}


class PatchEncoder(L.Layer):
    """ViT example's encoder: weights in sublayers, no **kwargs."""

    def __init__(self, num_patches, projection_dim):
        super().__init__()
        self.num_patches = num_patches
        self.projection = L.Dense(projection_dim)
        self.position = L.Embedding(num_patches, projection_dim)
        self.projection_dim = projection_dim

    def call(self, patch):
        return self.projection(patch) + self.position(ops.arange(self.num_patches))

    def get_config(self):
        return {**super().get_config(), "num_patches": self.num_patches,
                "projection_dim": self.projection_dim}


class OrthogonalRegularizer(keras.regularizers.Regularizer):
    """PointNet's activity regularizer: no get_config."""

    def __init__(self, num_features, l2reg=0.001):
        self.num_features, self.l2reg = num_features, l2reg
        self.eye = ops.eye(num_features)

    def __call__(self, x):
        x = ops.reshape(x, (-1, self.num_features, self.num_features))
        xxt = ops.tensordot(x, x, axes=(2, 2))
        xxt = ops.reshape(xxt, (-1, self.num_features, self.num_features))
        return ops.sum(self.l2reg * ops.square(xxt - self.eye))


class FixedScale(L.Layer):
    """Holds a weight, and an __init__ argument Keras cannot serialise."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def build(self, shape):
        self.scale = self.add_weight(shape=(shape[-1],), initializer="ones")

    def call(self, x):
        return x * self.scale


def euclidean_distance(vectors):
    """The siamese example's distance, a named module function."""
    a, b = vectors
    return ops.sqrt(ops.maximum(ops.sum(ops.square(a - b), axis=1, keepdims=True), 1e-7))


def pixel_shuffle_model():
    inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.Conv2D(12, 3, padding="same", name="to_subpixels")(x)
    x = PixelShuffle(2)(x)
    x = L.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def vit_model():
    inp = keras.Input((8, 8, 3))
    x = Patches(4)(inp)
    x = PatchEncoder(4, 6)(x)
    x = L.Dense(10, activation="gelu", name="mlp1")(x)
    x = L.Dense(7, activation="gelu", name="mlp2")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x))


def siamese_model():
    inp = keras.Input((10,))
    x = L.Dense(8, activation="tanh", name="embed1")(inp)
    tower = keras.Model(inp, L.Dense(6, name="embed2")(x), name="tower")
    a, b = keras.Input((10,), name="left"), keras.Input((10,), name="right")
    d = L.Lambda(euclidean_distance, name="distance")([tower(a), tower(b)])
    d = L.BatchNormalization(name="bn")(d)
    return keras.Model([a, b], L.Dense(1, activation="sigmoid", name="out")(d))


def lambda_globals_model(output_shape):
    inp = keras.Input((9,))
    x = L.Dense(6, activation="relu", name="fc1")(inp)
    kwargs = {"output_shape": (6,)} if output_shape else {}
    x = L.Lambda(lambda t: ops.square(t) - ops.mean(t), name="uses_ops", **kwargs)(x)
    x = L.Dense(5, activation="relu", name="fc2")(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def pointnet_model():
    """PointNet's input transform: a regularised Dense reshaped to a matrix."""
    inp = keras.Input((7, 3))
    t = L.Conv1D(8, 1, activation="relu", name="tnet_conv")(inp)
    t = L.GlobalMaxPooling1D()(t)
    t = L.Dense(6, activation="relu", name="tnet_fc")(t)
    t = L.Dense(9, name="transform", activity_regularizer=OrthogonalRegularizer(3))(t)
    t = L.Reshape((3, 3))(t)
    x = L.Dot(axes=(2, 1))([inp, t])
    x = L.Conv1D(8, 1, activation="relu", name="conv")(x)
    x = L.GlobalMaxPooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


CARRIED = [pixel_shuffle_model, vit_model, siamese_model, pointnet_model,
           lambda: lambda_globals_model(False), lambda: lambda_globals_model(True)]
IDS = ["pixel_shuffle", "vit_patches", "siamese_lambda", "pointnet_regularizer",
       "lambda_globals", "lambda_globals_output_shape"]


def _weights(model):
    return [v.numpy().copy() for v in model.weights]


@pytest.mark.parametrize("factory", CARRIED, ids=IDS)
@pytest.mark.parametrize("verify", [True, False])
def test_models_with_unserialisable_layers_grow_exactly(factory, verify):
    teacher = randomize_state(factory())
    before = _weights(teacher)
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, verify=verify,
                                       return_report=True)
    assert_preserved(teacher, student, x)
    assert any(r["new_width"] > r["old_width"] for r in report.layers), report
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)  # bit-identical


def test_stateless_layers_are_reused_and_weighted_ones_copied():
    teacher = randomize_state(vit_model())
    # Carrying, as with custom layers that cannot be inlined (tests/test_inline.py).
    student = n2n.expand_model(teacher, widen=2.0, seed=0, inline_custom_layers=False)
    by_class = {type(l).__name__: l for l in student.layers}
    old = {type(l).__name__: l for l in teacher.layers}
    assert by_class["Patches"] is old["Patches"]  # no state: shared
    encoder = by_class["PatchEncoder"]
    assert encoder is not old["PatchEncoder"] and encoder.name == old["PatchEncoder"].name
    teacher_vars = {id(v) for v in teacher.variables}
    assert not any(id(v) in teacher_vars for v in student.variables)


def test_regularizer_without_get_config_is_carried_as_the_object():
    teacher = randomize_state(pointnet_model())
    # Only the T-net's convolution grows: the regularised layer keeps its
    # width, so its activity (and the regularizer's loss) must not change.
    student = n2n.expand_model(teacher, widen={"tnet_conv": 16}, seed=0)
    assert student.get_layer("transform").units == 9
    reg = teacher.get_layer("transform").activity_regularizer
    assert student.get_layer("transform").activity_regularizer is reg
    assert teacher.get_layer("transform").activity_regularizer is reg  # restored
    x = probe(teacher)[0]
    teacher(x), student(x)
    assert float(student.losses[0]) == pytest.approx(float(teacher.losses[0]), rel=1e-5)


@pytest.mark.parametrize("factory", [vit_model, siamese_model, pixel_shuffle_model],
                         ids=["vit", "siamese", "pixel_shuffle"])
def test_training_the_student_never_moves_the_teacher(factory):
    teacher = randomize_state(factory())
    x = probe(teacher)
    y_before = [np.asarray(t) for t in keras.tree.flatten(teacher(x if len(x) > 1 else x[0]))]
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    student.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    feed = x if len(x) > 1 else x[0]
    target = np.ones_like(np.asarray(student(feed)))
    w0 = _weights(student)
    student.train_on_batch(feed, target)
    assert any(np.abs(a - b).max() > 0 for a, b in zip(w0, _weights(student)))
    y_after = [np.asarray(t) for t in keras.tree.flatten(teacher(feed))]
    for a, b in zip(y_before, y_after):
        np.testing.assert_array_equal(a, b)


def test_weighted_layer_without_a_config_is_refused_before_any_work():
    inp = keras.Input((5,))
    x = L.Dense(4, name="fc")(inp)
    x = FixedScale(object())(x)  # an argument Keras' automatic config cannot hold
    x = L.Dense(6, name="hidden")(x)
    teacher = keras.Model(inp, L.Dense(2, name="logits")(x))
    before = _weights(teacher)
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model(teacher, widen={"hidden": 12})
    message = str(info.value)
    assert message.startswith("Expected"), message
    for fragment in ("'fixed_scale'", "FixedScale", "get_config", "Fix:", "**kwargs",
                     "register_rule"):
        assert fragment in message, (fragment, message)
    for a, b in zip(before, _weights(teacher)):
        np.testing.assert_array_equal(a, b)


class AddConstant(L.Layer):
    """Adds a fixed-width constant; registered below, wrongly, as pass-through."""

    def __init__(self, width, **kwargs):
        super().__init__(**kwargs)
        self.width = width

    def call(self, x):
        return x + np.linspace(-1, 1, self.width).astype("float32")

    def get_config(self):
        return {**super().get_config(), "width": self.width}


class AddConstantWithShape(AddConstant):
    """The same, with a declared output shape: Keras builds it symbolically
    without running `call`, so it only fails on real tensors."""

    def compute_output_shape(self, shape):
        return shape


@pytest.mark.parametrize("cls,when", [(AddConstant, "build"), (AddConstantWithShape, "run")])
def test_student_that_cannot_build_or_run_is_a_typed_error_even_without_verify(
        cls, when, monkeypatch):
    inp = keras.Input((5,))
    x = L.Dense(4, name="fc")(inp)
    x = cls(4, name="add_constant")(x)
    teacher = keras.Model(inp, L.Dense(2, name="logits")(x))
    monkeypatch.setitem(rules.registry._USER_TABLE, cls, rules.channelwise.PassThroughRule())
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model(teacher, widen=2.0, verify=False)
    message = str(info.value)
    expected = "Expected the student to build" if when == "build" else \
        "Expected the student to run"
    assert message.startswith(expected), message
    if when == "build":
        assert "layer 'add_constant' (AddConstant)" in message, message
    assert "register_rule" in message and "The teacher is unchanged" in message


@pytest.mark.parametrize("widen", [1.5, 2.0, 1.25])
def test_instance_norm_grows_at_any_factor(widen):
    inp = keras.Input((5, 5, 2))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inp)
    x = L.GroupNormalization(groups=-1, name="instance_norm")(x)
    x = L.Conv2D(6, 1, name="mix")(x)
    x = L.GroupNormalization(groups=3, name="gn3")(x)
    x = L.GlobalAveragePooling2D()(x)
    teacher = randomize_state(keras.Model(inp, L.Dense(2, name="logits")(x)))
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert student.get_layer("conv").filters == int(np.ceil(8 * widen))
    assert student.get_layer("instance_norm").groups == student.get_layer("conv").filters
    mix = student.get_layer("mix").filters
    if widen == 2.0:
        assert mix == 12
    else:  # groups of 2 channels: a non-integer factor stays a reported skip
        assert mix == 6
        assert any("GroupNormalization 'gn3'" in s["reason"] for s in report.skipped)
