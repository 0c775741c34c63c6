"""Fuzz generator steps for attention layers and EinsumDense, in the style of
the steps of tests/fuzz_models.py: each takes the builder `b` and a tensor `t`
of its pool, emits one step of source, and is left out when Keras refuses it.

Wiring (tests/fuzz_models.py), see STEPS below:

    from tests import fuzz_steps_attention
    for rank, steps in fuzz_steps_attention.STEPS.items():
        STEPS[rank] = STEPS[rank] + steps

These layers have no `units`/`filters` key, so they are not offered to
per-layer `widen` (producers {}), and the report's head dims (`key_dim`,
`value_dim`, GQA's `head_dim`, `num_repeats`) grow only when named: the
property's report check must let groups with `on_request` keep their width.
"""

from hypothesis import strategies as st

HEADS = st.integers(1, 3)
DIMS = st.integers(1, 4)
WIDTHS = st.integers(2, 6)
ACTIVATIONS = [None, "relu", "tanh", "gelu", "softmax"]


def _partner(b, t, fits):
    """A tensor of the pool that `fits` (t itself is one), newest most often."""
    partners = [u for u in b.pool if fits(u)]
    return partners[len(partners) - 1 - b.draw(st.integers(0, len(partners) - 1))]


def _sequence(t):
    return t.rank == 3 and t.fmt == "channels_last"


def _mha(b, t):
    """Self- or cross-attention; masks, gates, output_shape, returned scores."""
    if not _sequence(t):
        return
    draw = b.draw
    context = _partner(b, t, _sequence)
    alone = context is t
    heads, key_dim = draw(HEADS), draw(DIMS)
    value_dim = draw(st.sampled_from([None, 2, 3]))
    output_shape = draw(st.sampled_from([None, None, 5]))
    gate = draw(st.booleans())
    causal = alone and draw(st.booleans())
    # Keras gives cross-attention scores a wrong symbolic shape (T, T): self only.
    scores = alone and draw(st.integers(0, 3)) == 0
    name, out, weights = b.name("mha"), b.var(), b.var()
    targets = f"{out}, {weights}" if scores else out
    b.emit([f"{targets} = L.MultiHeadAttention({heads}, {key_dim}, value_dim={value_dim!r}, "
            f"output_shape={output_shape!r}, use_gate={gate}, name={name!r})({t.var}, "
            f"{context.var}, use_causal_mask={causal}, return_attention_scores={scores})"],
           # Scores (batch, heads, T, S) carry the heads on axis 1: channels first.
           [(out, "channels_last")] + ([(weights, "channels_first")] if scores else []),
           [t, context])


def _gqa(b, t):
    """Grouped-query attention (query, key and value of one width)."""
    if not _sequence(t):
        return
    draw = b.draw
    context = _partner(b, t, lambda u: _sequence(u) and u.shape[-1] == t.shape[-1])
    kv, repeats, head_dim = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(DIMS)
    causal = context is t and draw(st.booleans())
    name, out = b.name("gqa"), b.var()
    b.emit([f"{out} = L.GroupQueryAttention({head_dim}, {kv * repeats}, {kv}, "
            f"use_gate={draw(st.booleans())}, name={name!r})({t.var}, {context.var}, "
            f"use_causal_mask={causal})"], [(out, "channels_last")], [t, context])


# (equation, output_shape(t, width), bias_axes) per input rank. Channels are
# contracted, kept per channel, carried past a time-mixing kernel, or meet a
# kernel output axis of their own (then they keep their width).
_EQUATIONS = {
    2: [("ab,bc->ac", lambda t, w: (w,), "c"),
        ("ab,b->ab", lambda t, w: (t.shape[-1],), "b")],
    3: [("abc,cd->abd", lambda t, w: (None, w), "d"),
        ("...c,cd->...d", lambda t, w: (w,), "d"),
        ("abc,cde->abde", lambda t, w: (None, 2, w), "de"),
        ("abc,c->abc", lambda t, w: (None, t.shape[-1]), "c"),
        ("abc,bd->adc", lambda t, w: (w, t.shape[-1]), None),
        ("abc,bd->abcd", lambda t, w: t.shape + (w,), "d")],
    4: [("abcd,de->abce", lambda t, w: (None, None, w), "e"),
        ("...d,de->...e", lambda t, w: (w,), None)],
}


def _einsum(b, t):
    """EinsumDense in one of the forms above."""
    if t.rank not in _EQUATIONS:
        return
    draw = b.draw
    equation, shape, bias = draw(st.sampled_from(_EQUATIONS[t.rank]))
    output_shape = shape(t, draw(WIDTHS))
    bias = bias if draw(st.booleans()) else None
    name, out = b.name("ein"), b.var()
    b.emit([f"{out} = L.EinsumDense({equation!r}, output_shape={output_shape!r}, "
            f"bias_axes={bias!r}, activation={draw(st.sampled_from(ACTIVATIONS))!r}, "
            f"name={name!r})({t.var})"], [(out, "channels_last")], [t])


# Steps per input rank, to append to fuzz_models.STEPS.
STEPS = {2: [_einsum], 3: [_einsum, _mha, _gqa], 4: [_einsum]}
