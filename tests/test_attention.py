"""MultiHeadAttention, GroupQueryAttention and EinsumDense grow exactly: heads,
head dims and model widths, with masks, causal masks, gates and returned
scores; the widths inside layers are named groups of the report."""

import math

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.growth import assert_preserved
from tests.growth import assert_refused
from tests.growth import assert_unchanged
from tests.growth import outputs
from tests.growth import snapshot

L = keras.layers


# -- teachers --------------------------------------------------------------------
def pre_ln_encoder():
    """Embedding (padding masked), pre-LN self-attention and FFN blocks."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    x = L.Embedding(20, 8, mask_zero=True, name="embed")(tokens)
    h = L.LayerNormalization(name="ln1")(x)
    h = L.MultiHeadAttention(2, 4, dropout=0.1, name="mha")(h, h)
    x = L.Add(name="res1")([x, h])
    h = L.LayerNormalization(name="ln2")(x)
    h = L.Dense(16, activation="gelu", name="ffn_up")(h)
    h = L.Dropout(0.1)(h)
    h = L.Dense(8, name="ffn_down")(h)
    x = L.Add(name="res2")([x, h])
    x = L.LayerNormalization(name="ln_f")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, L.Dense(3, name="logits")(x), name="pre_ln_encoder")


def cross_attention():
    """Queries and context of different widths and lengths, an attention mask,
    a gated cross-attention, a causal self-attention and an output_shape."""
    queries = keras.Input((5, 6), name="queries")
    context = keras.Input((7, 10), name="context")
    mask = keras.Input((5, 7), dtype="bool", name="mask")
    q = L.Dense(8, activation="relu", name="q_proj")(queries)
    c = L.Dense(12, activation="tanh", name="c_proj")(context)
    a = L.MultiHeadAttention(3, 4, value_dim=5, use_gate=True, name="cross")(
        q, c, attention_mask=mask)
    s = L.MultiHeadAttention(2, 3, name="causal")(a, a, use_causal_mask=True)
    x = L.Add(name="res")([a, s])
    p = L.MultiHeadAttention(2, 4, output_shape=9, name="proj_attn")(x, c, key=c)
    x = L.Concatenate(name="join")([L.GlobalAveragePooling1D()(x),
                                    L.GlobalMaxPooling1D()(p)])
    return keras.Model([queries, context, mask], L.Dense(2, name="logits")(x),
                       name="cross_attention")


def gqa_block(norm=True):
    """A decoder block: (pre-norm,) causal gated GQA, gated MLP. LayerNorm
    stands in for RMSNormalization, which has no rule yet (issue 11, item 7)."""
    inp = keras.Input((6, 5), name="x")
    x = L.Dense(8, name="stem")(inp)
    h = L.LayerNormalization(name="norm1")(x) if norm else x
    h = L.GroupQueryAttention(4, 4, 2, use_gate=True, name="gqa")(h, h, use_causal_mask=True)
    x = L.Add(name="res1")([x, h])
    h = L.LayerNormalization(name="norm2")(x) if norm else x
    gate = L.Dense(12, activation="silu", name="gate")(h)
    up = L.Dense(12, name="up")(h)
    h = L.Dense(8, name="down")(L.Multiply(name="glu")([gate, up]))
    x = L.Add(name="res2")([x, h])
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(3, name="logits")(x), name="gqa_block")


def gqa_no_norm():
    return gqa_block(norm=False)


def einsum_chain():
    """EinsumDense as a Dense, a (heads, dim) projection, a two-axis
    contraction, a per-channel scale and an ellipsis form."""
    inp = keras.Input((5, 6), name="x")
    x = L.EinsumDense("abc,cd->abd", output_shape=(None, 8), bias_axes="d",
                      activation="relu", name="e1")(inp)
    x = L.EinsumDense("abc,cde->abde", output_shape=(None, 3, 4), bias_axes="de",
                      name="e2")(x)
    x = L.EinsumDense("abde,def->abf", output_shape=(None, 7), bias_axes="f",
                      activation="tanh", name="e3")(x)
    x = L.EinsumDense("...c,c->...c", output_shape=(7,), name="scale")(x)
    x = L.EinsumDense("...b,bc->...c", output_shape=6, bias_axes="c", name="e4")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x), name="einsum_chain")


def scores_output():
    """Attention scores returned as a model output: its heads keep their count."""
    inp = keras.Input((5, 6), name="x")
    x = L.Dense(8, name="proj")(inp)
    y, scores = L.MultiHeadAttention(2, 4, name="attn")(x, x, return_attention_scores=True)
    y = L.Dense(3, name="logits")(L.GlobalAveragePooling1D()(y))
    return keras.Model(inp, [y, scores], name="scores_output")


def _randomize(model, seed=0):
    """Every constant-initialised weight (biases, norm scales) drawn at random,
    so that a wrong rule for it would show."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        value = np.asarray(v)
        if value.size and np.ptp(value) == 0:
            v.assign((value + rng.normal(0, 0.4, value.shape)).astype(v.dtype))
    return model


def _inputs(model, seed=1, batch=3):
    """Inputs for `model`: padded token ids, float features, attention masks
    with at least one visible key per query."""
    rng = np.random.default_rng(seed)
    out = []
    for t in model.inputs:
        shape = (batch,) + tuple(t.shape[1:])
        if "int" in str(t.dtype):
            ids = rng.integers(1, 20, size=shape)
            ids[:, -2:] = 0  # padding, masked by Embedding(mask_zero=True)
            ids[0, -3:] = 0
            out.append(ids.astype(t.dtype))
        elif "bool" in str(t.dtype):
            mask = rng.random(shape) < 0.6
            mask[..., 0] = True
            out.append(mask)
        else:
            out.append(rng.normal(size=shape).astype(t.dtype))
    return out


def _grow(teacher, x, **kwargs):
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, verify_data=x, return_report=True,
                                       **kwargs)
    assert_unchanged(teacher, snap)
    return student, report


def _assert_all_grown(report, widen):
    """Every group grows by the factor except the model's inputs and outputs
    and the widths grown only when named (head dims)."""
    assert not report.skipped, report.skipped
    for g in report.groups:
        if g["frozen"]:
            assert any(r.startswith(("model input", "model output")) for r in g["reasons"]), g
        elif g["on_request"]:
            assert g["new_width"] == g["old_width"], g
        else:
            assert g["new_width"] == math.ceil(g["old_width"] * widen - 1e-9), g


def _assert_inner_rows(report, teacher, student):
    """The report's widths inside layers are the layers' own config values."""
    assert report.inner
    for row in report.inner:
        old = teacher.get_layer(row["layer"]).get_config()[row["width"]]
        new = student.get_layer(row["layer"]).get_config()[row["width"]]
        assert (old, new) == (row["old_width"], row["new_width"]), row


def _round_trip(student, x, tmp_path):
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(outputs(student, x), outputs(loaded, x)):
        np.testing.assert_array_equal(a, b)


# -- growth by a factor -----------------------------------------------------------
GRAPHS = [(pre_ln_encoder, [2.0]), (cross_attention, [1.5, 2.0]), (gqa_block, [2.0]),
          (gqa_no_norm, [1.5, 2.0]), (einsum_chain, [1.5, 2.0])]


@pytest.mark.parametrize("factory,widen", [(f, w) for f, ws in GRAPHS for w in ws],
                         ids=lambda v: getattr(v, "__name__", str(v)))
def test_factor_grows_every_group_exactly(factory, widen, tmp_path):
    teacher = _randomize(factory())
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=widen)
    figures = assert_preserved(teacher, student, x, rtol=1e-5)
    assert report.max_relative_error <= 1e-5, figures
    _assert_all_grown(report, widen)
    if factory is not einsum_chain:
        _assert_inner_rows(report, teacher, student)
    assert student.count_params() > teacher.count_params()
    _round_trip(student, x, tmp_path)


def test_layer_norm_graph_at_non_integer_factor():
    """x1.5 through LayerNorm: the stream grows, or (while LayerNorm grows by
    whole multiples only) keeps its width with a note; heads and FFN grow."""
    teacher = _randomize(pre_ln_encoder())
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=1.5)
    assert_preserved(teacher, student, x, rtol=1e-5)
    grown = {r["layer"]: r["new_width"] for r in report.layers}
    if report.skipped:  # LayerNorm at integer factors only
        assert [s["request"] for s in report.skipped] == ["embed"]
        assert "LayerNormalization" in report.skipped[0]["reason"] and grown["embed"] == 8
    else:
        assert grown["embed"] == 12
    rows = {(r["layer"], r["width"]): r for r in report.inner}
    assert rows["mha", "num_heads"]["new_width"] == 3
    assert grown["ffn_up"] == 24


# -- widths inside layers, by name -------------------------------------------------
INNER_REQUESTS = [
    (pre_ln_encoder, {"mha": {"num_heads": 3, "key_dim": 7, "value_dim": 5}}),
    (cross_attention, {"cross": {"num_heads": 5, "key_dim": 5, "value_dim": 9},
                       "causal": {"key_dim": 4}, "proj_attn": 12, "q_proj": 11}),
    (gqa_block, {"gqa": {"num_key_value_heads": 3, "num_repeats": 3, "head_dim": 7}}),
    (gqa_no_norm, {"gqa": {"num_repeats": 1.5, "head_dim": 2.0}, "stem": 11}),
]


@pytest.mark.parametrize("factory,widen", INNER_REQUESTS, ids=lambda v: getattr(
    v, "__name__", None) or "-".join(v))
def test_named_inner_widths_grow_exactly(factory, widen, tmp_path):
    teacher = _randomize(factory())
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=widen, strict=True)
    assert_preserved(teacher, student, x, rtol=1e-5)
    _assert_inner_rows(report, teacher, student)
    named = {(layer, key) for layer, keys in widen.items() if isinstance(keys, dict)
             for key in keys}
    groups = {g["name"]: g for g in report.groups}
    for layer, key in named:
        g = groups[f"{layer}:{key}"]
        assert g["new_width"] > g["old_width"], g
    _round_trip(student, x, tmp_path)


def test_gqa_query_heads_keep_their_key_value_head():
    """num_query_heads = kv heads x repeats in the student, and every query
    head of a kv head copies a query head of the matching teacher kv head."""
    teacher = _randomize(gqa_no_norm())
    x = _inputs(teacher)
    widen = {"gqa": {"num_key_value_heads": 3, "num_repeats": 3}}
    student, report = _grow(teacher, x, widen=widen, mapping="random")
    assert_preserved(teacher, student, x, rtol=1e-5)
    config = student.get_layer("gqa").get_config()
    assert (config["num_query_heads"], config["num_key_value_heads"]) == (9, 3)
    kv = next(g for g in report.groups if g["name"] == "gqa:num_key_value_heads")["mapping"]
    old_q = teacher.get_layer("gqa").weights[0].numpy()  # query kernel (model, heads, dim)
    new_q = student.get_layer("gqa").weights[0].numpy()
    for head in range(9):
        source = [h for h in range(4) if np.array_equal(new_q[:, head], old_q[:, h])]
        # Teacher head h reads kv head h // 2; student head p reads kv head p // 3.
        assert len(source) == 1 and source[0] // 2 == kv[head // 3], (head, source, kv)


def test_key_dim_growth_zeroes_the_query_copies():
    """Key dims: keys copied, each query dim kept once (x sqrt(d'/d)), copies zero."""
    teacher = _randomize(scores_output())
    x = _inputs(teacher)
    student, _ = _grow(teacher, x, widen={"attn": {"key_dim": 7}}, mapping="round_robin")
    assert_preserved(teacher, student, x, rtol=1e-5)
    old_q, old_k = (teacher.get_layer("attn").weights[i].numpy() for i in (0, 2))
    new_q, new_k = (student.get_layer("attn").weights[i].numpy() for i in (0, 2))
    np.testing.assert_allclose(new_q[..., :4], old_q * np.sqrt(7 / 4), rtol=1e-6)
    np.testing.assert_array_equal(new_q[..., 4:], 0.0)
    np.testing.assert_array_equal(new_k[..., 4:], old_k[..., :3])


def test_returned_scores_keep_their_heads():
    teacher = _randomize(scores_output())
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=2.0)
    assert_preserved(teacher, student, x, rtol=1e-5)
    heads = next(g for g in report.groups if g["name"] == "attn:num_heads")
    assert heads["frozen"] and "model output" in heads["reasons"][0]
    assert student.get_layer("proj").units == 16


def test_gqa_scores_output_keeps_heads_but_grows_head_dim():
    inp = keras.Input((5, 8), name="x")
    h = L.Dense(8, name="proj")(inp)
    y, scores = L.GroupQueryAttention(3, 4, 2, name="gqa")(h, h, return_attention_scores=True)
    teacher = _randomize(keras.Model(inp, [L.Dense(2, name="logits")(y), scores]))
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen={"gqa": {"head_dim": 5}, "proj": 12})
    assert_preserved(teacher, student, x, rtol=1e-5)
    frozen = {g["name"] for g in report.groups if g["frozen"]}
    assert {"gqa:num_key_value_heads", "gqa:num_repeats"} <= frozen
    assert student.get_layer("gqa").head_dim == 5


# Key dims to 16: Keras' TensorFlow backend rounds the attention scale
# 1/sqrt(key_dim) to float32 (tf.cast of a Python float in its fused
# dot_product_attention), and 1/sqrt(16) is exact there; see the next test.
@pytest.mark.parametrize("factory,widen", [
    (pre_ln_encoder, {"mha": {"num_heads": 3, "key_dim": 16, "value_dim": 6}, "embed": 16}),
    (cross_attention, 2.0), (gqa_block, {"gqa": {"num_key_value_heads": 4, "num_repeats": 3,
                                                 "head_dim": 16}, "stem": 16}),
    (einsum_chain, 1.5)], ids=["encoder", "cross", "gqa", "einsum"])
def test_float64_exact(factory, widen, float64):
    teacher = _randomize(factory())
    assert teacher.get_layer("logits").kernel.dtype == "float64"
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=widen, tolerance=1e-9)
    assert_preserved(teacher, student, x, rtol=1e-9)


def test_float64_key_dim_limited_by_the_backends_float32_scale(float64):
    """At key_dim 9 the student's scale 1/3 is rounded to float32 by the
    backend (the teacher's 1/2 is exact): ~1e-9 relative, the backend's
    rounding of a constant, not the construction's (16 above is exact)."""
    keras.utils.set_random_seed(0)  # the same weights whatever ran before in this worker
    teacher = _randomize(pre_ln_encoder())
    x = _inputs(teacher)
    student, _ = _grow(teacher, x, widen={"mha": {"key_dim": 9}}, tolerance=1e-8)
    assert_preserved(teacher, student, x, rtol=1e-8)



# -- EinsumDense equations ---------------------------------------------------------
@pytest.mark.parametrize("equation,output_shape,bias_axes,reads", [
    ("abc,cd->abd", (None, 5), "d", "contracts"),
    ("...c,cd->...d", 5, "d", "contracts"),
    ("abc,c->abc", (None, 4), "c", "per-channel"),
    ("abc,bd->abcd", (6, 4, 3), "d", "passes-and-produces"),
    ("abc,bd->adc", (3, 4), None, "passes"),
])
def test_einsum_equations(equation, output_shape, bias_axes, reads):
    inp = keras.Input((6, 5), name="x")
    h = L.Dense(4, name="before")(inp)
    y = L.EinsumDense(equation, output_shape=output_shape, bias_axes=bias_axes, name="ein")(h)
    y = L.Flatten()(y) if len(y.shape) > 3 else L.GlobalAveragePooling1D()(y)
    teacher = _randomize(keras.Model(inp, L.Dense(2, name="logits")(y)))
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=2.0)
    assert_preserved(teacher, student, x, rtol=1e-5)
    groups = {g["name"]: g for g in report.groups}
    # The layer feeding the einsum grows unless its channels would have to
    # share the output with the einsum's own.
    assert groups["before"]["frozen"] == (reads == "passes-and-produces")
    if reads == "passes-and-produces":
        assert "a tensor carries one channel axis" in groups["before"]["reasons"][0]
    if "ein" in groups:
        assert groups["ein"]["new_width"] == 2 * groups["ein"]["old_width"]


def test_einsum_summing_over_channels_is_refused_with_strict():
    inp = keras.Input((6, 5), name="x")
    h = L.Dense(4, name="before")(inp)
    y = L.EinsumDense("abc,bd->ad", output_shape=3, name="ein")(h)
    teacher = _randomize(keras.Model(inp, L.Dense(2, name="logits")(y)))
    assert_refused(teacher, dict(widen={"before": 8}, strict=True), errors.FrozenGroupError,
                   ["widen={'before': 8}", "EinsumDense 'ein' sums over its channels",
                    "strict=False"])


# -- bad requests ------------------------------------------------------------------
@pytest.mark.parametrize("factory,kwargs,error,fragments", [
    (pre_ln_encoder, dict(widen={"mha": {"heads": 4}}), errors.PlanError,
     ["layer 'mha'", "['key_dim', 'num_heads', 'value_dim']", "widen={'mha': {'heads': 4}}"]),
    (pre_ln_encoder, dict(widen={"ffn_up": {"units": 32}}), errors.PlanError,
     ["layer 'ffn_up'", "class Dense", "which has none", "widen={'ffn_up': 2.0}"]),
    (pre_ln_encoder, dict(widen={"mha": {}}), errors.PlanError, ["widen={'mha': {}}"]),
    (pre_ln_encoder, dict(widen={"mha": {"key_dim": 2}}), errors.PlanError,
     ["width 'key_dim' of layer 'mha'", "only adds units", "ask for 4 or more"]),
    (pre_ln_encoder, dict(widen={"mha": {"num_heads": "many"}}), errors.PlanError,
     ["width 'num_heads' of layer 'mha'", "widen={'mha': {'num_heads': 'many'}}"]),
    (gqa_block, dict(widen={"gqa": 8}), errors.PlanError,
     ["layer 'gqa'", "GroupedQueryAttention", "widen={'gqa': {'head_dim': 8}}"]),
    (scores_output, dict(widen={"attn": {"num_heads": 4}}, strict=True),
     errors.FrozenGroupError, ["widen={'attn': {'num_heads': 4}}", "model output",
                               "strict=False"]),
], ids=["unknown-key", "no-inner-widths", "empty", "narrower", "not-a-number", "gqa-number",
        "frozen-heads-strict"])
def test_bad_requests_are_typed_errors(factory, kwargs, error, fragments):
    teacher = _randomize(factory())
    snap = snapshot(teacher)
    assert_refused(teacher, dict(kwargs, verify_data=_inputs(teacher)), error, fragments)
    assert_unchanged(teacher, snap)


def test_frozen_heads_are_skipped_with_a_note_without_strict():
    teacher = _randomize(scores_output())
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen={"attn": {"num_heads": 4, "value_dim": 6}})
    assert_preserved(teacher, student, x, rtol=1e-5)
    assert report.skipped[0]["request"] == "attn:num_heads"
    assert "model output" in report.skipped[0]["reason"]
    assert student.get_layer("attn").get_config()["value_dim"] == 6
    assert "not applied: attn:num_heads: model output" in str(report)


def test_replay_mappings_of_inner_groups():
    teacher = _randomize(cross_attention())
    x = _inputs(teacher)
    first, report = _grow(teacher, x, widen={"cross": {"num_heads": 5, "key_dim": 6}},
                          mapping="random")
    second = n2n.expand_model(teacher, mappings=report.mappings(), verify_data=x)
    for a, b in zip(outputs(first, x), outputs(second, x)):
        np.testing.assert_array_equal(a, b)
    for w1, w2 in zip(first.weights, second.weights):
        np.testing.assert_array_equal(np.asarray(w1), np.asarray(w2))


# -- explain_model -----------------------------------------------------------------
def test_explain_shows_heads_as_groups():
    teacher = cross_attention()
    report = n2n.explain_model(teacher)
    groups = {g["name"]: g for g in report.groups}
    assert groups["cross:num_heads"]["old_width"] == 3
    assert not groups["cross:num_heads"]["on_request"]
    assert groups["cross:key_dim"]["on_request"] and groups["cross:value_dim"]["old_width"] == 5
    text = str(report)
    assert "cross:num_heads" in text and "widen={'cross': {'key_dim': ...}}" in text
    assert "num_heads 3, key_dim 4, value_dim 5" in text
    rows = {(r["layer"], r["width"]): r["old_width"] for r in report.inner}
    assert rows["causal", "num_heads"] == 2 and rows["proj_attn", "key_dim"] == 4


def test_report_lists_old_and_new_heads():
    teacher = _randomize(gqa_no_norm())
    x = _inputs(teacher)
    _, report = _grow(teacher, x, widen=2.0)
    rows = {r["width"]: (r["old_width"], r["new_width"]) for r in report.inner}
    assert rows == {"num_query_heads": (4, 8), "num_key_value_heads": (2, 4),
                    "head_dim": (4, 4)}
    assert "num_query_heads 4 -> 8, num_key_value_heads 2 -> 4" in str(report)
    assert n2n.ExpansionReport.from_json(report.to_json()).inner == report.inner


def test_mha_on_a_model_input_grows_its_output_through_output_shape(tmp_path):
    """The query (a model input) keeps its width; the output grows anyway,
    by setting output_shape, which the teacher left to the query's width."""
    inp = keras.Input((5, 6), name="x")
    y = L.MultiHeadAttention(2, 3, name="attn")(inp, inp)
    teacher = _randomize(keras.Model(inp, L.Dense(2, name="logits")(y)))
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=2.0)
    assert_preserved(teacher, student, x, rtol=1e-5)
    assert teacher.get_layer("attn").get_config()["output_shape"] is None
    assert tuple(student.get_layer("attn").get_config()["output_shape"]) == (12,)
    _round_trip(student, x, tmp_path)


def test_head_dim_of_one_keeps_the_heads_on_tensorflow():
    """Keras' TensorFlow add() reads a (heads, 1) bias as one over the
    sequence axis once heads == sequence length (5 here): such heads keep
    their count, other widths still grow."""
    inp = keras.Input((5, 3), name="x")
    h = L.Dense(4, name="proj")(inp)
    y = L.MultiHeadAttention(3, 1, value_dim=2, name="attn")(h, h)
    teacher = _randomize(keras.Model(inp, L.Dense(2, name="logits")(y)))
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen={"attn": {"num_heads": 5, "key_dim": 2}},
                            strict=False)
    assert_preserved(teacher, student, x, rtol=1e-5)
    heads = next(g for g in report.groups if g["name"] == "attn:num_heads")
    if keras.backend.backend() == "tensorflow":
        assert heads["frozen"] and "head dim of 1" in heads["reasons"][0]
        assert student.get_layer("attn").get_config()["key_dim"] == 2


def test_einsum_with_a_wrong_symbolic_shape_is_a_barrier():
    """Keras reverses the '...' axes in EinsumDense's symbolic output shape
    (here (6, 2) for (2, 6)); growth through it would misread the tensor."""
    inp = keras.Input((2, 6, 6), name="x")
    y = L.EinsumDense("...d,de->...e", output_shape=(4,), name="ein")(inp)
    y = L.Dense(2, name="logits")(L.Flatten(data_format="channels_first")(y))
    teacher = _randomize(keras.Model(inp, y))
    x = _inputs(teacher)
    student, report = _grow(teacher, x, widen=2.0)
    assert_preserved(teacher, student, x, rtol=1e-5)
    assert [b["layer"] for b in report.barriers] == ["ein"]
    assert "wrong symbolic output shape" in report.barriers[0]["reason"]
