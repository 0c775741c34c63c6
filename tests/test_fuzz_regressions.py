"""Cases the fuzzer (tests/test_fuzz.py, benchmarks/fuzz.py) found, kept as
small explicit models: each grows, keeps every output and has the widths and
layers its report names."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests import factories
from tests.fuzz_models import probe
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import snapshot

L = keras.layers


def _grow(teacher, **kwargs):
    teacher = factories.randomize_state(teacher)
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_preserved(teacher, student, probe(teacher))
    assert_unchanged(teacher, snap)
    return student, report


def test_nested_sequential_keeps_its_name_beside_a_residual_insertion():
    """A residual insertion anywhere turned nested Sequentials into Functionals
    named 'functional_N', so 'sub/conv' paths of the report named nothing."""
    inp = keras.Input((5, 5, 3))
    sub = keras.Sequential([keras.Input((5, 5, 3)), L.Conv2D(4, 3, padding="same", name="sub_a"),
                            L.Conv2D(3, 1, name="sub_b")], name="sub")
    x = L.GlobalAveragePooling2D()(sub(inp))
    teacher = keras.Model(inp, L.Dense(2, name="out")(L.Dense(4, name="fc")(x)))
    student, report = _grow(teacher, widen=2.0, deepen={"sub/sub_a": 1, "fc": "residual"})
    assert student.get_layer("sub").get_layer("sub_a").filters == 8
    assert student.get_layer("sub").get_layer("sub_a_deepen_1").filters == 8
    assert student.get_layer("fc_deepen_1_add")
    assert {r["layer"] for r in report.layers} >= {"sub/sub_a", "sub/sub_b"}


def test_sequential_with_residual_insertion_keeps_its_name():
    teacher = factories.sequential()
    student, _ = _grow(teacher, deepen={"conv2": "residual"})
    assert student.name == teacher.name
    assert np.isfinite(student.count_params())


def _squeeze_excite():
    inp = keras.Input((4, 4, 2))
    x = L.Conv2D(5, 1, name="conv")(inp)
    s = L.GlobalAveragePooling2D()(x)
    s = L.Dense(3, activation="relu", name="reduce")(s)
    s = L.Dense(5, activation="sigmoid", name="expand")(s)
    x = L.Multiply(name="scale")([x, L.Reshape((1, 1, 5))(s)])
    return keras.Model(inp, L.Dense(2, name="out")(L.Flatten()(x)))


@pytest.mark.parametrize("widen", [{"expand": 2.0, "conv": 5}, {"conv": 5, "expand": 10},
                                   {"conv": 1.0, "expand": 6}])
def test_asking_a_coupled_layer_to_keep_its_width_is_a_conflict(widen):
    """widen={'expand': 2.0, 'conv': 5}: 'conv' (width 5) is coupled to
    'expand' through the Multiply; the request to keep it at 5 was dropped and
    the student grew it to 10 anyway."""
    teacher = factories.randomize_state(_squeeze_excite())
    snap = snapshot(teacher)
    with pytest.raises(errors.PlanError, match="Expected one width.*'conv'.*'scale'"):
        n2n.expand_model(teacher, widen=widen)
    assert_unchanged(teacher, snap)
    _, report = _grow(_squeeze_excite(), widen={"conv": 5, "expand": 5, "reduce": 4})
    widths = {r["layer"]: r["new_width"] for r in report.layers}
    assert widths == {"conv": 5, "expand": 5, "reduce": 4, "out": 2}


def test_refusal_inside_an_inlined_custom_layer_names_its_path():
    """Fuzz seed 0, example 453: a LayerNormalization inside an inlined custom
    layer refuses a fractional factor. The message names it by its path in the
    inlined view ('gated/...'), which the teacher's own layer list lacks; the
    fuzz's refusal check now reads the inlined view's names too."""
    from tests import fuzz_models
    from tests import fuzz_steps_custom

    inp = keras.Input((6,))
    x = fuzz_steps_custom.GatedDense(5, name="gated")(inp)
    teacher = factories.randomize_state(keras.Model(inp, L.Dense(3, name="out")(x)))
    snap = snapshot(teacher)
    with pytest.raises(errors.FrozenGroupError, match=r"LayerNormalization 'gated/") as caught:
        n2n.expand_model(teacher, widen=2.176, strict=True)
    assert_unchanged(teacher, snap)
    case = fuzz_models.Case(code="", widen=2.176, strict=True)
    fuzz_models.check_refusal(teacher, case, caught.value)  # raises FuzzFailure if not


def test_refusal_naming_an_ops_call_barrier_passes_the_fuzz_check():
    """Fuzz seed 0, example 1422 (final generator): a keras.ops call with no
    rule (ops.any) keeps a group; the refusal names it as "Any 'any'", a
    barrier explain_model lists but no layer of the teacher."""
    from tests import fuzz_models

    inp = keras.Input((6,))
    x = L.Dense(5, name="bi5")(inp)
    flag = keras.ops.any(x, axis=-1, keepdims=True)
    teacher = factories.randomize_state(
        keras.Model(inp, [L.Dense(2, name="out")(x), flag]))
    snap = snapshot(teacher)
    with pytest.raises(errors.FrozenGroupError, match=r"Any '") as caught:
        n2n.expand_model(teacher, widen={"bi5": 7}, strict=True)
    assert_unchanged(teacher, snap)
    fuzz_models.check_refusal(teacher, fuzz_models.Case(code="", widen={"bi5": 7}, strict=True),
                              caught.value)  # raises FuzzFailure if not
