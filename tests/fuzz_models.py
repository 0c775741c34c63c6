"""Random tiny Keras functional models and growth plans, for fuzzing the rewriter.

A drawn `Case` carries the Python source that builds its teacher (every layer
named) and the growth plan, so that a failing example prints as a runnable
repro. Models are built by executing that source one step at a time while
drawing, which keeps every shape valid without re-implementing Keras' shape
rules here: a step Keras refuses is simply left out.

    from hypothesis import given
    from tests import fuzz_models

    @given(fuzz_models.cases())
    def test_property(case):
        fuzz_models.check(case)

`check` is the property: the student reproduces every output of the teacher
(also under balanced noise; additive noise only has to run) and has the widths
its report claims, or `expand_model` raises a typed `Net2NetError` whose
message names a layer, and a refusal to grow names a layer that is a barrier
in that graph; the teacher never changes. `assert_floors` bounds how many
examples may be refused at all.

To add a layer kind: write a step `_kind(b, t)` that emits source through
`b.emit` (Keras refusing a step just drops it) and list it in `_ANY_RANK`,
`_SPATIAL` or `STEPS`; `tests/test_fuzz.py` REQUIRED checks it is reached.
"""

import dataclasses
import math
import random
import re
import textwrap

import keras
import numpy as np
from hypothesis import strategies as st

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import inline
from tests import factories
from tests import fuzz_steps_attention
from tests import fuzz_steps_custom
from tests import fuzz_steps_recurrent
from tests.growth import assert_preserved
from tests.growth import assert_same_outputs_structure
from tests.growth import assert_unchanged
from tests.growth import call
from tests.growth import snapshot

L = keras.layers

# Largest tensor (per example, batch excluded) and spatial size a step may make.
MAX_SIZE = 400
MAX_SPATIAL = 12
WIDTHS = st.integers(2, 6)


class _Code(str):
    """Source text that `{x!r}` emits as is: a function, not its name."""

    def __repr__(self):
        return str(self)


ACTIVATIONS = [None, "relu", "tanh", "sigmoid", "swish", "gelu", "elu", "selu", "softplus",
               "linear", "relu6", "hard_sigmoid", "leaky_relu", "mish", "softmax",
               # Functions, as real code passes them: a config names them, and
               # keras.ops.gelu (tanh approximation) is not activations.gelu.
               _Code("keras.ops.gelu"), _Code("keras.ops.silu"), _Code("keras.ops.tanh")]
INPUT_SHAPES = [  # (shape without batch, data format of its channel axis)
    ((6, 6, 2), "channels_last"), ((5, 5, 3), "channels_last"), ((4, 4, 2), "channels_last"),
    ((2, 6, 6), "channels_first"), ((6,), "channels_last"), ((4,), "channels_last"),
    ((6, 3), "channels_last"), ((5, 2), "channels_first"),
]

# What generated source may name: custom layers and functions as `custom.X`.
NAMESPACE = {"keras": keras, "L": L, "custom": fuzz_steps_custom}
_PRELUDE = """\
import keras
from keras import layers as L
from tests import fuzz_steps_custom as custom
import keras_net2net as n2n
from tests.factories import randomize_state
"""


# Of every drawn example, at least this share must grow and keep its outputs
# (not be refused with a typed error): a rule that refused everything would
# otherwise pass the property.
FLOORS = {"preserved": 0.9}


class FuzzFailure(AssertionError):
    """The property does not hold for a drawn case."""


def assert_floors(outcomes, floors=None):
    """Raises FuzzFailure if an outcome's share of all examples is below its floor.

    Args:
        outcomes: a Counter of `check` results ("preserved", error class names,
            "failure").
        floors: {outcome: minimum share}; FLOORS by default.
    """
    total = sum(outcomes.values())
    for outcome, floor in (floors or FLOORS).items():
        share = outcomes[outcome] / total if total else 0.0
        if share < floor:
            raise FuzzFailure(f"{outcome}: {outcomes[outcome]} of {total} examples "
                              f"({share:.0%}) < floor {floor:.0%}; outcomes {dict(outcomes)}")


@dataclasses.dataclass
class Case:
    """A teacher's source and a growth plan.

    Attributes:
        code: Python source that assigns the teacher to `model`.
        widen, deepen, seed, mapping, strict, noise, noise_mode: the
            `expand_model` arguments.
        producers: {layer path: width} of the layers that produce channels.
        deepenable: paths of the layers `deepen` may name.
    """

    code: str
    widen: object = None
    deepen: object = None
    seed: int = 0
    mapping: str = "random"
    strict: bool = False
    noise: float = 0.0
    noise_mode: str = "balanced"
    producers: dict = dataclasses.field(default_factory=dict)
    deepenable: list = dataclasses.field(default_factory=list)

    def build(self):
        """A fresh teacher, every constant-initialised weight randomised."""
        namespace = dict(NAMESPACE)
        exec(self.code, namespace)  # noqa: S102 - our own generated source
        return factories.randomize_state(namespace["model"])

    def kwargs(self):
        return dict(widen=self.widen, deepen=self.deepen, seed=self.seed, mapping=self.mapping,
                    strict=self.strict, noise=self.noise, noise_mode=self.noise_mode)

    def repro(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs().items())
        return (_PRELUDE + self.code +
                "randomize_state(model)\n"
                f"student, report = n2n.expand_model(model, {args}, return_report=True)\n")

    def __repr__(self):
        return "Case(\n" + textwrap.indent(self.repro(), "    ") + ")"


@dataclasses.dataclass
class _Tensor:
    var: str
    shape: tuple  # without the batch axis
    fmt: str  # data format its channels follow

    @property
    def rank(self):
        return len(self.shape) + 1

    @property
    def channel_axis(self):
        """Keras axis (batch included) of the channels."""
        return 1 if self.fmt == "channels_first" and self.rank > 2 else self.rank - 1

    @property
    def channels(self):
        return self.shape[self.channel_axis - 1]


class _Builder:
    """Emits one step of source at a time, executing it to learn shapes."""

    def __init__(self, draw):
        self.draw = draw
        self.lines = []
        self.namespace = dict(NAMESPACE)
        self.pool = []
        self.consumed = set()
        self.counter = 0
        self.producers = {}
        self.deepenable = []
        self.inputs = []

    def name(self, kind):
        self.counter += 1
        return f"{kind}{self.counter}"

    def emit(self, lines, outputs, reads, producers=(), deepenable=(), limit=True):
        """Runs `lines`; on success records them and `outputs` [(var, fmt)].

        `limit`: refuse outputs larger than MAX_SIZE / MAX_SPATIAL (heads,
        which must join every branch, are exempt)."""
        state = random.getstate()  # Keras seeds layers from `random`; keep draws pure.
        try:
            exec("\n".join(lines), self.namespace)  # noqa: S102
        except Exception:  # Keras refused the step (shape, argument): leave it out.
            return []
        finally:
            random.setstate(state)
        made = []
        for var, fmt in outputs:
            shape = tuple(self.namespace[var].shape[1:])
            if None in shape or 0 in shape or limit and (math.prod(shape) > MAX_SIZE or (
                    len(shape) > 1 and max(shape[:-1] + shape[1:]) > MAX_SPATIAL)):
                return []
            made.append(_Tensor(var, shape, fmt))
        self.lines.extend(lines)
        self.pool.extend(made)
        self.consumed.update(t.var for t in reads)
        self.producers.update(producers)
        self.deepenable.extend(deepenable)
        return made

    def pick(self):
        """A tensor of the pool, most often the newest (what shrinking prefers)."""
        k = self.draw(st.integers(0, len(self.pool) - 1))
        return self.pool[len(self.pool) - 1 - k]

    def fmt(self, t):
        """The tensor's own data format, sometimes the other one."""
        if t.rank < 3 or self.draw(st.integers(0, 7)) > 0:
            return t.fmt
        return "channels_first" if t.fmt == "channels_last" else "channels_last"

    def var(self):
        return self.name("t")


def _activation(draw):
    return draw(st.sampled_from(ACTIVATIONS))


def _bias(fmt, draw=None):
    """use_bias for a conv: never in channels_first, where Keras' TF ops.add
    puts the bias on the last axis whenever a width (teacher's or grown)
    equals the last spatial size (tests/test_keras_quirks.py); the factories
    test channels_first biases on shapes that avoid it."""
    wanted = draw(st.booleans()) if draw else True  # drawn either way: stable examples
    return wanted and fmt != "channels_first"


def _channel_axis(rank, fmt):
    return 1 if fmt == "channels_first" and rank > 2 else -1


# -- steps on one tensor -------------------------------------------------------
def _dense(b, t):
    units, name, out = b.draw(WIDTHS), b.name("fc"), b.var()
    b.emit([f"{out} = L.Dense({units}, activation={_activation(b.draw)!r}, "
            f"name={name!r})({t.var})"], [(out, t.fmt if t.rank == 2 else "channels_last")],
           [t], {name: units}, [name])


def _conv(b, t):
    dims = t.rank - 2
    if dims not in (1, 2):
        return
    draw, fmt = b.draw, b.fmt(t)
    filters, kernel = draw(WIDTHS), draw(st.integers(1, 3))
    strides = draw(st.integers(1, 2))
    dilation = 1 if strides > 1 else draw(st.integers(1, 2))
    paddings = ["valid", "same"] + (["causal"] if dims == 1 and fmt == "channels_last" else [])
    padding = draw(st.sampled_from(paddings))
    name, out = b.name("conv"), b.var()
    cls = "Conv1D" if dims == 1 else "Conv2D"
    b.emit([f"{out} = L.{cls}({filters}, {kernel}, strides={strides}, dilation_rate={dilation}, "
            f"padding={padding!r}, data_format={fmt!r}, activation={_activation(draw)!r}, "
            f"use_bias={_bias(fmt, draw)}, name={name!r})({t.var})"],
           [(out, fmt)], [t], {name: filters}, [name])


def _depthwise(b, t):
    if t.rank != 4:
        return
    draw, fmt = b.draw, b.fmt(t)
    kernel, multiplier = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2]))
    strides, padding = draw(st.integers(1, 2)), draw(st.sampled_from(["valid", "same"]))
    name, out = b.name("dw"), b.var()
    b.emit([f"{out} = L.DepthwiseConv2D({kernel}, strides={strides}, "
            f"depth_multiplier={multiplier}, padding={padding!r}, data_format={fmt!r}, "
            f"activation={_activation(draw)!r}, use_bias={_bias(fmt)}, name={name!r})({t.var})"],
           [(out, fmt)], [t], {}, [name])


def _separable(b, t):
    if t.rank != 4:
        return
    draw, fmt = b.draw, b.fmt(t)
    filters, kernel = draw(WIDTHS), draw(st.integers(1, 3))
    multiplier, padding = draw(st.sampled_from([1, 2])), draw(st.sampled_from(["valid", "same"]))
    name, out = b.name("sep"), b.var()
    b.emit([f"{out} = L.SeparableConv2D({filters}, {kernel}, depth_multiplier={multiplier}, "
            f"padding={padding!r}, data_format={fmt!r}, activation={_activation(draw)!r}, "
            f"use_bias={_bias(fmt)}, name={name!r})({t.var})"], [(out, fmt)], [t], {name: filters},
           [name])


def _transpose(b, t):
    if t.rank != 4:
        return
    draw, fmt = b.draw, b.fmt(t)
    filters, kernel = draw(WIDTHS), draw(st.integers(1, 3))
    strides, padding = draw(st.integers(1, 2)), draw(st.sampled_from(["valid", "same"]))
    name, out = b.name("convt"), b.var()
    b.emit([f"{out} = L.Conv2DTranspose({filters}, {kernel}, strides={strides}, "
            f"padding={padding!r}, data_format={fmt!r}, use_bias={_bias(fmt)}, "
            f"name={name!r})({t.var})"],
           [(out, fmt)], [t], {name: filters}, [])


def _batch_norm(b, t):
    axis = _channel_axis(t.rank, t.fmt)
    if t.rank > 2 and b.draw(st.integers(0, 7)) == 0:
        axis = b.draw(st.integers(1, t.rank - 1))  # a BN that is not on the channels
    name, out = b.name("bn"), b.var()
    b.emit([f"{out} = L.BatchNormalization(axis={axis}, name={name!r})({t.var})"],
           [(out, t.fmt)], [t])


def _layer_norm(b, t):
    choices = [-1, _channel_axis(t.rank, t.fmt), list(range(1, t.rank))]
    axis = b.draw(st.sampled_from(choices))
    name, out = b.name("ln"), b.var()
    b.emit([f"{out} = L.LayerNormalization(axis={axis}, name={name!r})({t.var})"],
           [(out, t.fmt)], [t])


def _group_norm(b, t):
    axis = _channel_axis(t.rank, t.fmt)
    channels = t.channels
    groups = b.draw(st.sampled_from([g for g in range(1, channels + 1) if channels % g == 0]))
    name, out = b.name("gn"), b.var()
    b.emit([f"{out} = L.GroupNormalization({groups}, axis={axis}, name={name!r})({t.var})"],
           [(out, t.fmt)], [t])


def _activation_layer(b, t):
    draw = b.draw
    kind = draw(st.sampled_from(["Activation", "ReLU", "ELU", "LeakyReLU", "PReLU", "ReLU6"]))
    name, out = b.name("act"), b.var()
    if kind == "Activation":
        layer = f"L.Activation({draw(st.sampled_from(ACTIVATIONS[1:]))!r}, name={name!r})"
    elif kind == "ReLU6":
        layer = f"L.ReLU(max_value=6.0, name={name!r})"
    elif kind == "LeakyReLU":
        layer = f"L.LeakyReLU(negative_slope={draw(st.sampled_from([0.1, 0.3]))}, name={name!r})"
    elif kind == "PReLU":
        spatial = [a for a in range(1, t.rank) if a != t.channel_axis]
        shared = draw(st.sampled_from([None, spatial or None]))
        layer = f"L.PReLU(shared_axes={shared!r}, name={name!r})"
    else:
        layer = f"L.{kind}(name={name!r})"
    b.emit([f"{out} = {layer}({t.var})"], [(out, t.fmt)], [t])


def _dropout(b, t):
    name, out = b.name("drop"), b.var()
    b.emit([f"{out} = L.Dropout(0.3, name={name!r})({t.var})"], [(out, t.fmt)], [t])


def _scalar_ops(b, t):
    out = b.var()
    expression = b.draw(st.sampled_from([
        "{x} * 0.5 + 1.0", "2.0 * {x} - 0.25", "keras.ops.relu({x}) + 0.1",
        "keras.ops.tanh({x}) * 3.0", "keras.ops.square({x}) - 1.0"]))
    b.emit([f"{out} = " + expression.format(x=t.var)], [(out, t.fmt)], [t])


def _pool(b, t):
    dims = t.rank - 2
    if dims not in (1, 2):
        return
    draw, fmt = b.draw, b.fmt(t)
    kind = draw(st.sampled_from(["MaxPooling", "AveragePooling"]))
    strides, padding = draw(st.sampled_from([None, 1])), draw(st.sampled_from(["valid", "same"]))
    name, out = b.name("pool"), b.var()
    b.emit([f"{out} = L.{kind}{dims}D(2, strides={strides}, padding={padding!r}, "
            f"data_format={fmt!r}, name={name!r})({t.var})"], [(out, fmt)], [t])


def _global_pool(b, t):
    dims = t.rank - 2
    if dims not in (1, 2):
        return
    draw, fmt = b.draw, b.fmt(t)
    kind = draw(st.sampled_from(["GlobalAveragePooling", "GlobalMaxPooling"]))
    keepdims = draw(st.booleans())
    name, out = b.name("gpool"), b.var()
    b.emit([f"{out} = L.{kind}{dims}D(data_format={fmt!r}, keepdims={keepdims}, "
            f"name={name!r})({t.var})"], [(out, fmt if keepdims else "channels_last")], [t])


def _augment(b, t):
    """Augmentation as keras-io models put it: the identity at inference."""
    if t.rank != 4:
        return
    draw, fmt = b.draw, b.fmt(t)
    kind = draw(st.sampled_from(["RandomFlip", "RandomContrast", "CenterCrop"]))
    spatial = t.shape[1:] if fmt == "channels_first" else t.shape[:2]
    args = {"RandomFlip": "seed=0", "RandomContrast": "0.2, seed=0",
            "CenterCrop": f"{max(spatial[0] - 1, 1)}, {max(spatial[1] - 1, 1)}"}[kind]
    name, out = b.name(kind.lower()), b.var()
    b.emit([f"{out} = L.{kind}({args}, data_format={fmt!r}, name={name!r})({t.var})"],
           [(out, fmt)], [t])


def _resample(b, t):
    dims = t.rank - 2
    if dims not in (1, 2):
        return
    draw = b.draw
    kind = draw(st.sampled_from(["ZeroPadding", "Cropping", "UpSampling"]))
    name, out = b.name(kind.lower()), b.var()
    fmt = b.fmt(t)
    format_arg = f", data_format={fmt!r}" if dims == 2 else ""
    if dims == 1:
        fmt = t.fmt  # the 1D layers have no data_format: always channels last
    b.emit([f"{out} = L.{kind}{dims}D({1 if kind != 'UpSampling' else 2}{format_arg}, "
            f"name={name!r})({t.var})"], [(out, fmt)], [t])


def _flatten(b, t):
    if t.rank < 3:
        return
    fmt = b.fmt(t)
    name, out = b.name("flat"), b.var()
    b.emit([f"{out} = L.Flatten(data_format={fmt!r}, name={name!r})({t.var})"],
           [(out, "channels_last")], [t])


def _reshape(b, t):
    shape = t.shape
    if t.rank == 2:
        targets = [((1, 1, shape[0]), "channels_last"), ((shape[0], 1, 1), "channels_first"),
                   ((shape[0], 1), "channels_last")]
    elif t.rank == 3:
        targets = [((shape[0] * shape[1],), "channels_last"),
                   ((shape[0], shape[1], 1), "channels_last"),
                   ((shape[0], 1, shape[1]), "channels_last")]
    else:
        targets = [((shape[0] * shape[1], shape[2]), t.fmt),
                   ((shape[0], shape[1] * shape[2]), "channels_last"),
                   ((math.prod(shape),), "channels_last")]
    target, fmt = b.draw(st.sampled_from(targets))
    name, out = b.name("reshape"), b.var()
    b.emit([f"{out} = L.Reshape({target!r}, name={name!r})({t.var})"], [(out, fmt)], [t])


# -- steps that branch and merge -----------------------------------------------
def _same_shape_branch(b, t):
    """Source of a branch from `t` back to `t`'s shape (a residual body)."""
    draw = b.draw
    kind = draw(st.sampled_from(["dense", "conv", "bn", "act"]))
    out = b.var()
    if kind == "conv" and t.rank == 4:
        name = b.name("conv")
        return [f"{out} = L.Conv2D({t.channels}, 3, padding='same', data_format={t.fmt!r}, "
                f"activation={_activation(draw)!r}, use_bias={_bias(t.fmt)}, "
                f"name={name!r})({t.var})"], out, {
                    name: t.channels}, [name]
    if kind == "dense" and t.channel_axis == t.rank - 1:
        name = b.name("fc")
        return [f"{out} = L.Dense({t.channels}, activation={_activation(draw)!r}, "
                f"name={name!r})({t.var})"], out, {name: t.channels}, [name]
    if kind == "bn":
        name = b.name("bn")
        return [f"{out} = L.BatchNormalization(axis={_channel_axis(t.rank, t.fmt)}, "
                f"name={name!r})({t.var})"], out, {}, []
    name = b.name("act")
    return [f"{out} = L.Activation({draw(st.sampled_from(ACTIVATIONS[1:]))!r}, "
            f"name={name!r})({t.var})"], out, {}, []


def _residual(b, t):
    lines, body, producers, deepenable = _same_shape_branch(b, t)
    kind = b.draw(st.sampled_from(["layer", "op"]))
    out = b.var()
    if kind == "layer":
        lines.append(f"{out} = L.Add(name={b.name('add')!r})([{t.var}, {body}])")
    else:
        lines.append(f"{out} = {t.var} + {body}")
    b.emit(lines, [(out, t.fmt)], [t], producers, deepenable)


def _merge(b, t):
    partners = [u for u in b.pool if u.shape == t.shape]
    u = partners[len(partners) - 1 - b.draw(st.integers(0, len(partners) - 1))]
    kind = b.draw(st.sampled_from(["Add", "Subtract", "Multiply", "Average", "Maximum",
                                   "Minimum", "+", "*"]))
    out = b.var()
    if kind in "+*":
        line = f"{out} = {t.var} {kind} {u.var}"
    else:
        line = f"{out} = L.{kind}(name={b.name(kind.lower())!r})([{t.var}, {u.var}])"
    b.emit([line], [(out, t.fmt)], [t, u])


def _concatenate(b, t):
    axis = b.draw(st.sampled_from([t.channel_axis, t.channel_axis, *range(1, t.rank)]))
    keep = [i for i in range(len(t.shape)) if i != axis - 1]
    partners = [u for u in b.pool if len(u.shape) == len(t.shape) and
                all(u.shape[i] == t.shape[i] for i in keep)]
    u = partners[len(partners) - 1 - b.draw(st.integers(0, len(partners) - 1))]
    out = b.var()
    if b.draw(st.booleans()):
        line = f"{out} = L.Concatenate(axis={axis}, name={b.name('concat')!r})([{t.var}, {u.var}])"
    else:
        line = f"{out} = keras.ops.concatenate([{t.var}, {u.var}], axis={axis})"
    b.emit([line], [(out, t.fmt)], [t, u])


def _inception(b, t):
    """Two conv (or Dense) branches joined on the channel axis."""
    draw = b.draw
    names = [b.name("br"), b.name("br")]
    widths = [draw(WIDTHS), draw(WIDTHS)]
    a, c, out = b.var(), b.var(), b.var()
    if t.rank == 4:
        bias = _bias(t.fmt)
        lines = [f"{a} = L.Conv2D({widths[0]}, 1, data_format={t.fmt!r}, use_bias={bias}, "
                 f"name={names[0]!r})({t.var})",
                 f"{c} = L.Conv2D({widths[1]}, 3, padding='same', data_format={t.fmt!r}, "
                 f"activation='relu', use_bias={bias}, name={names[1]!r})({t.var})"]
    elif t.channel_axis == t.rank - 1:
        lines = [f"{a} = L.Dense({widths[0]}, name={names[0]!r})({t.var})",
                 f"{c} = L.Dense({widths[1]}, activation='relu', name={names[1]!r})({t.var})"]
    else:
        return
    lines.append(f"{out} = L.Concatenate(axis={t.channel_axis}, "
                 f"name={b.name('mixed')!r})([{a}, {c}])")
    b.emit(lines, [(out, t.fmt)], [t], dict(zip(names, widths)), names)


def _squeeze_excite(b, t):
    if t.rank != 4:
        return
    draw, c = b.draw, t.channels
    reduce, expand = b.name("se_reduce"), b.name("se_expand")
    s, out = b.var(), b.var()
    target = (1, 1, c) if t.fmt == "channels_last" else (c, 1, 1)
    product = (f"L.Multiply(name={b.name('se_scale')!r})([{t.var}, {s}])"
               if draw(st.booleans()) else f"{t.var} * {s}")
    width = draw(WIDTHS)
    b.emit([f"{s} = L.GlobalAveragePooling2D(data_format={t.fmt!r})({t.var})",
            f"{s} = L.Dense({width}, activation='relu', name={reduce!r})({s})",
            f"{s} = L.Dense({c}, activation='sigmoid', name={expand!r})({s})",
            f"{s} = L.Reshape({target!r})({s})",
            f"{out} = {product}"], [(out, t.fmt)], [t], {reduce: width, expand: c},
           [reduce, expand])


def _nested(b, t):
    """A small Functional (or Sequential) model used as a layer."""
    draw = b.draw
    sub, inner_in = b.name("sub"), b.var()
    first, last = f"{sub}_a", f"{sub}_b"
    widths = [draw(WIDTHS), draw(WIDTHS)]
    if t.rank == 4:
        layers = [f"L.Conv2D({widths[0]}, 3, padding='same', data_format={t.fmt!r}, "
                  f"activation={_activation(draw)!r}, use_bias={_bias(t.fmt)}, name={first!r})",
                  f"L.BatchNormalization(axis={t.channel_axis}, name={sub + '_bn'!r})",
                  f"L.Conv2D({widths[1]}, 1, data_format={t.fmt!r}, use_bias={_bias(t.fmt)}, "
                  f"name={last!r})"]
    elif t.channel_axis == t.rank - 1:
        layers = [f"L.Dense({widths[0]}, activation={_activation(draw)!r}, name={first!r})",
                  f"L.BatchNormalization(name={sub + '_bn'!r})",
                  f"L.Dense({widths[1]}, name={last!r})"]
    else:
        return
    if not draw(st.booleans()):
        layers.pop(1)
    out = b.var()
    if draw(st.booleans()):
        lines = [f"{inner_in} = keras.Input({t.shape!r})", f"{sub}_h = {inner_in}"]
        lines += [f"{sub}_h = {layer}({sub}_h)" for layer in layers]
        lines.append(f"{sub} = keras.Model({inner_in}, {sub}_h, name={sub!r})")
    else:
        lines = [f"{sub} = keras.Sequential([keras.Input({t.shape!r}), " +
                 ", ".join(layers) + f"], name={sub!r})"]
    lines.append(f"{out} = {sub}({t.var})")
    outputs = [(out, t.fmt)]
    if draw(st.integers(0, 3)) == 0:  # the same submodel called twice
        again = b.var()
        lines.append(f"{again} = {sub}(L.Activation('tanh', name={b.name('act')!r})({t.var}))")
        outputs.append((again, t.fmt))
    paths = [f"{sub}/{first}", f"{sub}/{last}"]
    b.emit(lines, outputs, [t], dict(zip(paths, widths)), paths)


def _shared(b, t):
    """One layer called on two tensors of the same shape."""
    draw = b.draw
    name, other, a, c = b.name("shared"), b.var(), b.var(), b.var()
    width = draw(WIDTHS)
    if t.rank == 4:
        layer = (f"L.Conv2D({width}, 3, padding='same', data_format={t.fmt!r}, "
                 f"use_bias={_bias(t.fmt)}, name={name!r})")
    elif t.channel_axis == t.rank - 1:
        layer = f"L.Dense({width}, name={name!r})"
    else:
        return
    b.emit([f"{name} = {layer}",
            f"{other} = L.Activation({draw(st.sampled_from(ACTIVATIONS[1:5]))!r}, "
            f"name={b.name('act')!r})({t.var})",
            f"{a} = {name}({t.var})", f"{c} = {name}({other})"],
           [(a, t.fmt), (c, t.fmt)], [t], {name: width}, [name])


# Simplest first: hypothesis shrinks toward the start of each list.
_ANY_RANK = [_dense, _activation_layer, _batch_norm, _residual, _merge, _concatenate,
             _scalar_ops, _dropout, _layer_norm, _group_norm, _reshape, _inception, _nested,
             _shared]
_SPATIAL = [_conv, _pool, _global_pool, _resample, _flatten]
STEPS = {
    2: _ANY_RANK,
    3: _ANY_RANK[:1] + _SPATIAL[:1] + _ANY_RANK[1:] + _SPATIAL[1:],
    4: _ANY_RANK[:1] + _SPATIAL[:1] + _ANY_RANK[1:] + _SPATIAL[1:] +
       [_depthwise, _separable, _transpose, _squeeze_excite, _augment],
}
# Layer families kept in modules of their own: recurrent, attention, custom.
STEPS[3] = STEPS[3] + fuzz_steps_recurrent.RANK3
STEPS[4] = STEPS[4] + fuzz_steps_recurrent.RANK4
for _rank, _steps in fuzz_steps_attention.STEPS.items():
    STEPS[_rank] = STEPS[_rank] + _steps
for _rank in STEPS:
    STEPS[_rank] = STEPS[_rank] + fuzz_steps_custom.STEPS


def _heads(b):
    """Every tensor nobody reads becomes (through a head) a model output."""
    draw = b.draw
    leaves = [t for t in b.pool if t.var not in b.consumed]
    vectors = []
    for t in leaves:
        if t.rank > 2:
            kind = draw(st.sampled_from(["flatten", "pool", "flatten", "pool", "raw"]))
            if kind == "raw" and len(leaves) == 1:
                vectors.append(t)
                continue
            out = b.var()
            if kind == "pool" and t.rank in (3, 4):
                pool = draw(st.sampled_from(["GlobalAveragePooling", "GlobalMaxPooling"]))
                layer = f"L.{pool}{t.rank - 2}D(data_format={t.fmt!r})"
            else:
                layer = f"L.Flatten(data_format={t.fmt!r})"
            vectors.extend(b.emit([f"{out} = {layer}({t.var})"], [(out, "channels_last")], [t],
                                  limit=False) or [t])
        else:
            vectors.append(t)
    if len(vectors) > 2 or (len(vectors) == 2 and draw(st.booleans())):
        out = b.var()
        joined = b.emit([f"{out} = L.Concatenate(name='joined')([{', '.join(v.var for v in vectors)}])"],
                        [(out, "channels_last")], vectors, limit=False)
        vectors = joined or vectors  # Every branch must reach an output.
    outputs = []
    for k, v in enumerate(vectors):
        if v.rank == 2 and draw(st.integers(0, 4)) > 0:
            name, out, units = f"out{k + 1}", b.var(), draw(st.integers(1, 3))
            made = b.emit([f"{out} = L.Dense({units}, name={name!r})({v.var})"],
                          [(out, "channels_last")], [v], {name: units}, [name])
            outputs.append(made[0].var if made else v.var)
        else:
            outputs.append(v.var)
    return outputs


@st.composite
def teachers(draw, max_steps=12):
    """(source, producers {path: width}, deepenable paths) of a random teacher."""
    b = _Builder(draw)
    for k in range(draw(st.integers(1, 2))):
        shape, fmt = draw(st.sampled_from(INPUT_SHAPES))
        name = f"in{k + 1}"
        made = b.emit([f"{name} = keras.Input({shape!r}, name={name!r})"], [(name, fmt)], [])
        b.inputs.append(name)
        if draw(st.integers(0, 3)) > 0:  # a stem, so that growth is not tied to the input
            draw(st.sampled_from([_conv, _dense] if len(shape) < 3 else
                                 [_conv, _dense, _separable]))(b, made[0])
    for _ in range(draw(st.integers(1, max_steps))):
        t = b.pick()
        draw(st.sampled_from(STEPS[t.rank]))(b, t)
    outputs = _heads(b)
    inputs = b.inputs[0] if len(b.inputs) == 1 else "[" + ", ".join(b.inputs) + "]"
    outs = outputs[0] if len(outputs) == 1 else "[" + ", ".join(outputs) + "]"
    b.lines.append(f"model = keras.Model({inputs}, {outs}, name='fuzz')")
    exec(b.lines[-1], b.namespace)  # noqa: S102
    present = set(_names(b.namespace["model"]))
    lost = [p for p in list(b.producers) + b.deepenable if p not in present]
    assert not lost, f"generator bug: {lost} not in the model"
    return "\n".join(b.lines) + "\n", b.producers, list(dict.fromkeys(b.deepenable))


@st.composite
def _per_layer_widths(draw, producers):
    names = draw(st.lists(st.sampled_from(sorted(producers)), min_size=1, max_size=2,
                          unique=True))
    out = {}
    for name in names:
        old = producers[name]
        out[name] = draw(st.one_of(st.integers(old, old + 4),
                                   st.sampled_from([1.0, 1.5, 2.0, 2.5])))
    return out


@st.composite
def _deepen_plans(draw, deepenable):
    names = draw(st.lists(st.sampled_from(deepenable), min_size=1, max_size=2, unique=True))
    # Layers of nested models by path ("sub3/sub3_a") or by their unique bare name.
    names = [n.split("/")[-1] if draw(st.booleans()) else n for n in names]
    if draw(st.booleans()):
        return names
    return {n: draw(st.sampled_from([1, 2, "residual", "identity"])) for n in names}


@st.composite
def cases(draw, max_steps=12):
    """A random teacher and a random growth plan for it."""
    code, producers, deepenable = draw(teachers(max_steps))
    widen_options = [st.none(), st.sampled_from([2.0, 1.5, 3.0, 1.0, 2.5]),
                     st.floats(1.0, 2.5).map(lambda f: round(f, 3))]
    if producers:
        widen_options.append(_per_layer_widths(producers))
    widen = draw(st.one_of(*widen_options))
    deepen = None
    if deepenable and draw(st.integers(0, 3)) > 0:
        deepen = draw(_deepen_plans(deepenable))
    if widen is None and deepen is None:
        widen = 2.0
    noise, noise_mode = draw(st.sampled_from(NOISE))
    return Case(code, widen, deepen, draw(st.integers(0, 2)),
                draw(st.sampled_from(["random", "round_robin"])), draw(st.integers(0, 3)) == 3,
                noise, noise_mode, producers, deepenable)


# (noise, noise_mode), mostly none; balanced noise must stay exact.
NOISE = [(0.0, "balanced")] * 4 + [(0.1, "balanced"), (0.05, "additive")]


# -- the property ----------------------------------------------------------------
def probe(model, batch=2, seed=1):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(batch,) + tuple(t.shape[1:])).astype("float32")
            for t in model.inputs]


def _find(model, path):
    layer = model
    for part in path.split("/"):
        if isinstance(layer, keras.Model):
            layer = layer.get_layer(part)
        else:  # a custom layer the student holds inlined: its sublayer of that name
            layer = next(l for l in layer._flatten_layers(include_self=False)
                         if l.name == part)
    return layer


def _width(layer):
    """The width a report row gives a layer (attention: its output's)."""
    if isinstance(layer, (L.MultiHeadAttention, L.GroupQueryAttention)):
        return layer._output_dense.kernel.shape[-1]
    if isinstance(layer, L.EinsumDense):
        return layer.kernel.shape[-1]
    for key in ("units", "filters", "output_dim"):  # no get_config: it may not serialise
        if isinstance(getattr(layer, key, None), int):
            return getattr(layer, key)
    try:
        return fuzz_steps_recurrent.width_of(layer)
    except AssertionError as e:
        raise FuzzFailure(str(e)) from e


def _names(model, prefix=""):
    for layer in model.layers:
        yield layer.name
        yield prefix + layer.name
        if isinstance(layer, keras.Model):
            yield from _names(layer, prefix + layer.name + "/")


def check(case):
    """Runs one case; returns "preserved" or the typed error's class name.

    Raises:
        FuzzFailure (or whatever `expand_model` raised that is no
        `Net2NetError`): the property does not hold.
    """
    teacher = case.build()
    snap = snapshot(teacher)
    x = probe(teacher)
    try:
        student, report = n2n.expand_model(teacher, **case.kwargs(), return_report=True)
    except errors.VerificationError as error:
        assert_unchanged(teacher, snap)
        raise FuzzFailure(f"wrong student caught by verification: {error}") from error
    except errors.Net2NetError as error:
        assert_unchanged(teacher, snap)
        check_refusal(teacher, case, error)
        return type(error).__name__
    assert_unchanged(teacher, snap)
    if case.noise == 0 or case.noise_mode == "balanced":
        assert_preserved(teacher, student, x)
    else:  # additive noise changes the function: it only has to run
        y, z = call(teacher, x), call(student, x)
        assert_same_outputs_structure(y, z)
        if not all(np.all(np.isfinite(t)) for t in keras.tree.flatten(z)):
            raise FuzzFailure("additive noise gave a non-finite student output")
    _check_report(teacher, student, report, case)
    return "preserved"


_NAMED = re.compile(r"(\w+) '([^']+)'")


def check_refusal(teacher, case, error):
    """A typed error's message is in Keras' form and names a layer; a refusal
    to grow (FrozenGroupError) names a layer that is a barrier in this graph:
    one the graph analysis (`explain_model`) lists as a barrier or as the
    reason a group is frozen, a model input/output, or a LayerNormalization /
    GroupNormalization (whose groups take whole factors only), and that layer
    exists in the teacher with the class the message gives it."""
    message = str(error)
    # Layers inside an inlined custom layer are named by their path in the
    # inlined view ("gated/layer_normalization"), which the teacher lacks.
    view = inline.inline_custom_layers(teacher).model
    names = set(_names(teacher)) | set(_names(view)) | set(case.producers) | set(
        case.deepenable)
    if not message.startswith("Expected") or not any(repr(n) in message for n in names):
        raise FuzzFailure(f"{type(error).__name__} names no layer: {message}") from error
    if not isinstance(error, errors.FrozenGroupError):
        return
    layers = {path: layer for path, layer in [*_layers(view), *_layers(teacher)]}
    explained = n2n.explain_model(teacher)
    reasons = " ".join(r for g in explained.groups for r in g["reasons"])
    barriers = {b["layer"] for b in explained.barriers}
    barriers |= {name for _, name in _NAMED.findall(reasons)}
    ends = {t.name for t in teacher.inputs} | set(getattr(teacher, "output_names", []))
    for kind, name in _NAMED.findall(message.split(" but ", 1)[-1]):
        if kind in ("input", "output") and (name in ends or name in layers):
            return  # "model input 'in1'", "model output 'out1'"
        layer = layers.get(name)
        if layer is None and name in barriers:
            return  # a keras.ops call (Any 'any_1') the analysis lists as a barrier
        if layer is None or type(layer).__name__ != kind:
            continue
        if name in barriers or kind in ("LayerNormalization", "GroupNormalization"):
            return
    raise FuzzFailure(f"FrozenGroupError names no barrier of this graph "
                      f"(barriers: {sorted(barriers)}): {message}") from error


def _layers(model, prefix=""):
    for layer in model.layers:
        yield layer.name, layer
        yield prefix + layer.name, layer
        if isinstance(layer, keras.Model):
            yield from _layers(layer, prefix + layer.name + "/")


def _check_report(teacher, student, report, case):
    skipped = {s["request"] for s in report.skipped}
    rows = {r["layer"]: r for r in report.layers}
    for path, row in rows.items():
        old, new = _width(_find(teacher, path)), _width(_find(student, path))
        if (old, new) != (row["old_width"], row["new_width"]):
            raise FuzzFailure(f"{path}: report says {row['old_width']} -> {row['new_width']}, "
                              f"models have {old} -> {new}")
    if isinstance(case.widen, dict):
        for name, target in case.widen.items():
            old = rows[name]["old_width"]
            want = target if isinstance(target, int) else math.ceil(old * target - 1e-9)
            if name not in skipped and rows[name]["new_width"] != want:
                raise FuzzFailure(f"widen {name!r} to {want}: got {rows[name]['new_width']}")
    elif case.widen is not None:
        for group in report.groups:
            old, new = group["old_width"], group["new_width"]
            want = math.ceil(old * case.widen - 1e-9)
            if not group["producers"] or group["frozen"] or group.get("on_request"):
                if new != old:
                    raise FuzzFailure(f"frozen group {group['name']!r} grew {old} -> {new}")
            elif new != want and not (new == old and group["name"] in skipped):
                raise FuzzFailure(f"group {group['name']!r}: {old} -> {new}, asked x{case.widen}")
    inserted = [name for ins in report.inserted for name in ins["layers"]]
    if case.deepen is not None and len(report.inserted) != len(case.deepen):
        raise FuzzFailure(f"asked to deepen {case.deepen!r}, report lists {report.inserted}")
    present = set(_names(student))
    missing = [name for name in inserted if name not in present]
    if missing:
        raise FuzzFailure(f"inserted layers {missing} are not in the student")
