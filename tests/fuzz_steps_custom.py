"""Fuzz generator steps for what real models carry that Keras cannot always
serialise (issue 13): custom layers with and without `**kwargs` and
`get_config`, Lambdas over closures and over module functions, regularizers
without `get_config`. Generated source reaches these classes as `custom.X`
(tests/fuzz_models.py puts this module in the namespace as `custom`).

Growth must carry them (the student exact) or refuse with a typed error that
names the layer; never crash, never change the teacher.
"""

from hypothesis import strategies as st
from keras import layers as L
from keras import ops
from keras import regularizers

WIDTHS = st.integers(2, 6)


class ScaleNoKwargs(L.Layer):
    """Stateless, `__init__` without **kwargs, base config in get_config
    (keras-io's pixel shuffle and ViT Patches have this shape)."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


class BiasNoKwargs(L.Layer):
    """A weight, `__init__` without **kwargs (ViT's PatchEncoder shape)."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def build(self, shape):
        self.offset = self.add_weight(shape=(shape[-1],), initializer="zeros")

    def call(self, x):
        return x * self.scale + self.offset

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


class ShiftNoConfig(L.Layer):
    """A weight and an __init__ argument Keras' automatic config cannot hold:
    it can be neither re-created nor shared, so growth must refuse, typed."""

    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def build(self, shape):
        self.shift = self.add_weight(shape=(shape[-1],), initializer="zeros")

    def call(self, x):
        return x + self.shift


class SquareNoConfig(L.Layer):
    """Stateless, no get_config, an argument Keras cannot serialise."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def call(self, x):
        return ops.square(x)


class L2NoConfig(regularizers.Regularizer):
    """A regularizer without get_config (PointNet's has this shape)."""

    def __call__(self, x):
        return 1e-3 * ops.sum(ops.square(x))


def double(x):
    """A named module function for Lambda (the siamese example's shape)."""
    return x * 2.0


class GatedDense(L.Layer):
    """Built from Keras layers and keras.ops (issue 25): inlined into the
    student as a plain subgraph, so its Dense grows."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.value = L.Dense(units)
        self.gate = L.Dense(units, activation="sigmoid")
        self.norm = L.LayerNormalization()

    def call(self, x):
        return self.norm(self.value(x) * self.gate(x) + ops.tanh(self.value(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class CumsumDense(L.Layer):
    """A Dense followed by a non-Keras (TensorFlow) op: cannot be traced on
    KerasTensors, so it is carried, and the report says why."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dense = L.Dense(units)

    def call(self, x):
        import tensorflow as tf

        return tf.math.cumsum(self.dense(x), axis=-1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _composite_layer(b, t):
    kind = b.draw(st.sampled_from(["GatedDense", "GatedDense", "CumsumDense"]))
    units, out = b.draw(WIDTHS), b.var()
    b.emit([f"{out} = custom.{kind}({units}, name={b.name(kind.lower())!r})({t.var})"],
           [(out, t.fmt if t.rank == 2 else "channels_last")], [t])


def _custom_layer(b, t):
    # ShiftNoConfig makes every growth a refusal: drawn rarely, so that the
    # generator's floor of preserved examples measures the rules.
    kind = b.draw(st.sampled_from(["ScaleNoKwargs", "BiasNoKwargs", "SquareNoConfig"] * 3 +
                                  ["ShiftNoConfig"]))
    out = b.var()
    args = {"ScaleNoKwargs": "0.5", "BiasNoKwargs": "1.5",
            "ShiftNoConfig": f"object(), name={b.name('custom')!r}",
            "SquareNoConfig": "object()"}[kind]
    b.emit([f"{out} = custom.{kind}({args})({t.var})"], [(out, t.fmt)], [t])


def _lambda(b, t):
    out = b.var()
    body = b.draw(st.sampled_from(["custom.double", "lambda v: v * 2.0 - 1.0",
                                   "lambda v: keras.ops.tanh(v)"]))
    b.emit([f"{out} = L.Lambda({body}, name={b.name('lam')!r})({t.var})"], [(out, t.fmt)], [t])


def _regularised_dense(b, t):
    units, name, out = b.draw(WIDTHS), b.name("reg"), b.var()
    where = b.draw(st.sampled_from(["kernel_regularizer", "activity_regularizer"]))
    b.emit([f"{out} = L.Dense({units}, {where}=custom.L2NoConfig(), name={name!r})({t.var})"],
           [(out, t.fmt if t.rank == 2 else "channels_last")], [t], {name: units}, [name])


STEPS = [_custom_layer, _lambda, _regularised_dense, _composite_layer]
# Names the generator must reach (tests/test_fuzz.py REQUIRED).
REQUIRED = ["custom.ScaleNoKwargs", "custom.BiasNoKwargs", "custom.ShiftNoConfig",
            "custom.SquareNoConfig", "L.Lambda(custom.double", "L.Lambda(lambda",
            "custom.L2NoConfig", "custom.GatedDense", "custom.CumsumDense"]
