"""A functional model that calls a subclassed keras.Model: read, not refused."""

import keras
import pytest

import keras_net2net as n2n
from tests import factories
from tests.growth import assert_unchanged
from tests.growth import snapshot

L = keras.layers


class Scorer(keras.Model):
    """A subclassed model: its graph is Python code."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense = L.Dense(3)

    def call(self, x):
        return self.dense(x) * 2.0


def _teacher():
    inp = keras.Input((6,))
    x = L.Dense(8, activation="relu", name="fc1")(inp)
    x = L.Dense(5, activation="relu", name="fc2")(x)
    return keras.Model(inp, Scorer(name="scorer")(x))


def test_explain_lists_a_nested_subclassed_model_as_a_barrier():
    report = n2n.explain_model(_teacher(), inline_custom_layers=False)
    barriers = {b["layer"]: b for b in report.barriers}
    assert "scorer" in barriers, report.barriers
    assert "subclassed keras.Model" in barriers["scorer"]["reason"]
    assert {row["name"] for row in report.groups} >= {"fc1"}


@pytest.mark.parametrize("inline", [False, True])
def test_explain_reads_what_growth_refuses(inline):
    """Growth refuses the model (a typed error naming the nested model, the
    teacher unchanged); explaining it does not."""
    teacher = factories.randomize_state(_teacher())
    before = snapshot(teacher)
    with pytest.raises(n2n.errors.UnsupportedModelError, match="nested model 'scorer'"):
        n2n.expand_model(teacher, widen={"fc1": 16}, inline_custom_layers=inline)
    assert_unchanged(teacher, before)
    report = n2n.explain_model(teacher, inline_custom_layers=inline)
    assert any(b["layer"] == "scorer" for b in report.barriers) or any(
        i["layer"] == "scorer" for i in report.inlined), (report.barriers, report.inlined)
    assert_unchanged(teacher, before)
