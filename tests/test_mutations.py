"""Mutation check: the growth checks catch a broken rule.

Each mutation breaks one rule of keras-net2net in this process only
(pytest's monkeypatch; no library file is edited), the way a plausible bug
would: replication without the division, a grown layer's bias zeroed, a
BatchNorm statistic not remapped, Flatten tiled in blocks instead of
interleaved. The checks every growth test uses (`tests/growth.py`
`assert_preserved`), the library's own verification and the fuzz property
must each fail under each mutation, and pass without it. The mutations reach
into private names of rebuild.py and the rules: if a refactor renames them,
this file fails loudly (monkeypatch refuses a missing attribute) rather than
testing nothing.
"""

import collections

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from keras_net2net import ops
from keras_net2net import rebuild
from keras_net2net.rules import shapes
from tests import factories
from tests import fuzz_models
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot


def _no_division(monkeypatch):
    """Copies along a consumer's input axis, not divided by the copy count."""
    replicate = ops.replicate
    monkeypatch.setattr(ops, "replicate",
                        lambda w, axis, src, counts=None, pad="zero": replicate(w, axis, src,
                                                                                None, pad))


def _zero_grown_bias(monkeypatch):
    """A producer's bias (1-D, on its output axis) comes out all zeros."""
    rewrite = rebuild.Rebuilder._rewrite

    def broken(self, value, axes, io, *rest):
        w = rewrite(self, value, axes, io, *rest)
        if np.ndim(value) == 1 and any(role == "out" for _, role, _ in axes) \
                and w.shape != np.shape(value):
            return np.zeros_like(w)
        return w

    monkeypatch.setattr(rebuild.Rebuilder, "_rewrite", broken)


def _bn_mean_not_remapped(monkeypatch):
    """A grown BatchNorm's extra channels keep Keras' fresh moving mean (0)
    instead of their source channel's."""
    write = rebuild.Rebuilder.write_weights

    def broken(self):
        write(self)
        for layer_id, layer in self.graph.layers.items():
            if isinstance(layer, keras.layers.BatchNormalization):
                grown = self.student_of[layer_id].moving_mean
                value = grown.numpy()
                value[layer.moving_mean.shape[0]:] = 0.0
                grown.assign(value)

    monkeypatch.setattr(rebuild.Rebuilder, "write_weights", broken)


def _flatten_in_blocks(monkeypatch):
    """Flatten treated as channel-major: each channel owns one block of rows,
    the layout DESIGN.md warns about for channels_last."""
    def broken(layout, shape, perm):
        pos = perm.index(layout.axis)
        dims = [shape[p] for p in perm]
        if None in dims[1:]:
            return None
        positions = int(np.prod(dims[1:pos] + dims[pos + 1:]))
        return shapes.Layout(1, tuple(shapes.Segment(s.atom, s.width, s.inner * positions)
                                      for s in layout.segments))

    monkeypatch.setattr(shapes, "flatten_layout", broken)


# mutation -> the factories whose growth it must break.
MUTATIONS = {
    "no_division": (_no_division, [factories.mlp, factories.cnn_flatten]),
    "zero_grown_bias": (_zero_grown_bias, [factories.mlp, factories.residual]),
    "bn_mean_not_remapped": (_bn_mean_not_remapped, [factories.mlp, factories.residual]),
    "flatten_in_blocks": (_flatten_in_blocks, [factories.cnn_flatten, factories.sequential]),
}
CASES = [(name, factory) for name, (_, fs) in MUTATIONS.items() for factory in fs]


@pytest.mark.parametrize("mutation,factory", CASES,
                         ids=[f"{m}-{f.__name__}" for m, f in CASES])
def test_growth_checks_catch_a_broken_rule(mutation, factory, monkeypatch):
    teacher = factories.randomize_state(factory())
    snap, x = snapshot(teacher), probe(teacher)
    # Without the mutation the same growth passes the same checks.
    assert_preserved(teacher, n2n.expand_model(teacher, widen=2.0, seed=0), x)
    MUTATIONS[mutation][0](monkeypatch)
    broken = n2n.expand_model(teacher, widen=2.0, seed=0, verify=False)
    with pytest.raises(AssertionError, match="rel="):
        assert_preserved(teacher, broken, x)
    with pytest.raises(errors.VerificationError):
        n2n.expand_model(teacher, widen=2.0, seed=0)
    assert_unchanged(teacher, snap)


_CODE = """\
in1 = keras.Input((6,), name='in1')
t1 = L.Dense(5, activation='tanh', name='fc1')(in1)
t2 = L.BatchNormalization(name='bn1')(t1)
t3 = L.Dense(3, name='out1')(t2)
model = keras.Model(in1, t3, name='fuzz')
"""


def _case():
    return fuzz_models.Case(_CODE, widen=2.0, producers={"fc1": 5, "out1": 3},
                            deepenable=["fc1", "out1"])


@pytest.mark.parametrize("mutation", ["zero_grown_bias", "bn_mean_not_remapped"])
def test_fuzz_property_catches_a_broken_rule(mutation, monkeypatch):
    assert fuzz_models.check(_case()) == "preserved"
    MUTATIONS[mutation][0](monkeypatch)
    with pytest.raises(fuzz_models.FuzzFailure, match="caught by verification"):
        fuzz_models.check(_case())


def _refuse(named):
    def expand_model(model, **kwargs):
        raise errors.FrozenGroupError(
            f"Expected a layer whose width can grow exactly. Received: widen=2.0, but the "
            f"group of 'fc1' is kept at width 5 because {named}. Fix: none.")
    return expand_model


def test_fuzz_floor_catches_a_grower_that_refuses_everything(monkeypatch):
    """Refusals that name a real barrier pass one by one; the floor on the
    counts is what catches a grower that refuses every model."""
    monkeypatch.setattr(n2n, "expand_model", _refuse("model output 'out1'"))
    outcome = fuzz_models.check(_case())
    assert outcome == "FrozenGroupError"
    with pytest.raises(fuzz_models.FuzzFailure, match="preserved: 0 of 20"):
        fuzz_models.assert_floors(collections.Counter({outcome: 20}))
    fuzz_models.assert_floors(collections.Counter(preserved=18, FrozenGroupError=2))


def test_fuzz_refusal_must_name_a_barrier(monkeypatch):
    monkeypatch.setattr(n2n, "expand_model", _refuse("Dense 'fc1' is too wide"))
    with pytest.raises(fuzz_models.FuzzFailure, match="names no barrier"):
        fuzz_models.check(_case())
