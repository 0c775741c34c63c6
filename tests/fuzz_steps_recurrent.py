"""Fuzz generator steps for recurrent layers, in the style of the steps of
`tests/fuzz_models.py` (`_kind(b, t)` emits source through `b.emit`; Keras
refusing a step drops it).

To wire them in (tests/fuzz_models.py):
- append `RANK3` to the steps of rank-3 tensors and `RANK4` to those of
  rank-4 tensors in `STEPS`;
- let `_width(layer)` read wrapped layers too: `return width_of(layer)` (below)
  covers Bidirectional, TimeDistributed and RNN(cell);
- tests/test_fuzz.py REQUIRED can then list "LSTM", "GRU", "SimpleRNN",
  "Bidirectional", "TimeDistributed", "Masking", "initial_state",
  "return_state=True", "go_backwards=True", "reset_after=False".

Sequences are (batch, time, channels) tensors; a step on a channels_first
rank-3 tensor is still drawn (the RNN then reads the time axis as channels
and the rule must keep that group's width).
"""

from hypothesis import strategies as st

WIDTHS = st.integers(2, 6)
_KINDS = ["LSTM", "GRU", "SimpleRNN"]


def width_of(layer):
    """The width a report row gives a layer: units, filters or output_dim,
    read through wrappers (Bidirectional: units per direction)."""
    config = layer.get_config()
    while True:
        for key in ("units", "filters", "output_dim"):
            if key in config:
                return config[key]
        inner = config.get("layer") or config.get("cell")
        if not isinstance(inner, dict):
            raise AssertionError(f"layer {layer.name!r} has no width")
        config = inner["config"]


def _rnn_source(draw, kind, units, return_sequences, extra=""):
    """Constructor source of one recurrent layer (no name)."""
    args = [str(units), f"return_sequences={return_sequences}"]
    if kind == "GRU":
        args.append(f"reset_after={draw(st.booleans())}")
    if draw(st.integers(0, 2)) == 0:
        args.append("go_backwards=True")
    if draw(st.integers(0, 3)) == 0:
        args.append("activation='relu'")
    return f"L.{kind}({', '.join(args)}{extra})"


def _recurrent(b, t, kind):
    if t.rank != 3:
        return
    draw = b.draw
    units, return_sequences = draw(WIDTHS), draw(st.booleans())
    return_state = draw(st.integers(0, 3)) == 0
    name, out = b.name(kind.lower()), b.var()
    layer = _rnn_source(draw, kind, units, return_sequences,
                        ", return_state=True" if return_state else "")
    layer = layer[:-1] + f", name={name!r})"
    if not return_state:
        b.emit([f"{out} = {layer}({t.var})"], [(out, "channels_last")], [t], {name: units},
               [name])
        return
    states = [b.var() for _ in range(2 if kind == "LSTM" else 1)]
    b.emit([f"{', '.join([out] + states)} = {layer}({t.var})"],
           [(v, "channels_last") for v in [out] + states], [t], {name: units})


def _lstm(b, t):
    _recurrent(b, t, "LSTM")


def _gru(b, t):
    _recurrent(b, t, "GRU")


def _simple_rnn(b, t):
    _recurrent(b, t, "SimpleRNN")


def _bidirectional(b, t):
    """Bidirectional in every merge mode; merge_mode=None returns two tensors."""
    if t.rank != 3:
        return
    draw = b.draw
    kind = draw(st.sampled_from(_KINDS))
    units, return_sequences = draw(WIDTHS), draw(st.booleans())
    merge = draw(st.sampled_from(["concat", "concat", "sum", "ave", "mul", None]))
    name = b.name("bi")
    inner = _rnn_source(draw, kind, units, return_sequences).replace(
        ", go_backwards=True", "")  # Bidirectional makes the backward copy itself
    outs = [b.var()] if merge is not None else [b.var(), b.var()]
    b.emit([f"{', '.join(outs)} = L.Bidirectional({inner}, merge_mode={merge!r}, "
            f"name={name!r})({t.var})"], [(v, "channels_last") for v in outs], [t],
           {name: units}, [name] if merge is not None else [])


def _encoder_decoder(b, t):
    """A decoder that starts from an encoder's final state (initial_state)."""
    if t.rank != 3:
        return
    draw = b.draw
    kind = draw(st.sampled_from(_KINDS))
    units = draw(WIDTHS)
    encoder, decoder = b.name("enc"), b.name("dec")
    states = [b.var() for _ in range(2 if kind == "LSTM" else 1)]
    out = b.var()
    b.emit([f"_, {', '.join(states)} = L.{kind}({units}, return_state=True, "
            f"name={encoder!r})({t.var})",
            f"{out} = L.{kind}({units}, return_sequences=True, name={decoder!r})("
            f"{t.var}, initial_state=[{', '.join(states)}])"],
           [(out, "channels_last")], [t], {encoder: units, decoder: units}, [decoder])


def _masked(b, t):
    """Two padded time steps, masked: every later recurrent layer skips them."""
    if t.rank != 3 or t.fmt != "channels_last":  # ZeroPadding1D pads axis 1
        return
    name, out = b.name("mask"), b.var()
    b.emit([f"{out} = L.ZeroPadding1D((0, 2))({t.var})",
            f"{out} = L.Masking(0.0, name={name!r})({out})"], [(out, t.fmt)], [t])


def _time_distributed(b, t):
    """TimeDistributed(Dense) on sequences, TimeDistributed(Conv1D) on rank 4."""
    if t.rank not in (3, 4) or t.fmt != "channels_last":
        return
    draw = b.draw
    units, name, out = draw(WIDTHS), b.name("td"), b.var()
    if t.rank == 3:
        inner = f"L.Dense({units}, activation={draw(st.sampled_from([None, 'relu', 'tanh']))!r})"
    else:
        inner = f"L.Conv1D({units}, {draw(st.integers(1, 2))}, padding='same')"
    b.emit([f"{out} = L.TimeDistributed({inner}, name={name!r})({t.var})"],
           [(out, "channels_last")], [t], {name: units})


def _conv_lstm(b, t):
    """ConvLSTM1D/2D/3D where the layout fits: a rank-4 tensor read as a
    sequence as it is (axis 1 as time, ConvLSTM1D), or a two-step sequence
    made from the tensor (it and its negation stacked on a new axis 1;
    ConvLSTM3D also gets a unit depth axis). Outputs come back to a rank the
    pool holds: the last step of a returned sequence, ConvLSTM3D's unit depth
    squeezed. The layer's data_format is the tensor's, sometimes the other
    one (the rule then keeps the width: channels_first)."""
    if t.rank not in (3, 4):
        return
    draw = b.draw
    fmt = b.fmt(t)
    dims = 1 if t.rank == 3 else draw(st.sampled_from([1, 2, 3]))
    direct = t.rank == 4 and dims == 1
    filters, kernel = draw(WIDTHS), draw(st.integers(1, 3))
    padding, return_sequences = draw(st.sampled_from(["same", "valid"])), draw(st.booleans())
    if dims == 3:
        padding = "same"  # the unit depth axis takes no valid window wider than 1
    activation = draw(st.sampled_from(["tanh", "relu"]))
    name, seq, out = b.name("convlstm"), b.var(), b.var()
    lines = [f"{seq} = {t.var}" if direct else
             f"{seq} = keras.ops.stack([{t.var}, -{t.var}], axis=1)"]
    if dims == 3:
        depth_axis = 2 if fmt == "channels_last" else 3
        lines.append(f"{seq} = keras.ops.expand_dims({seq}, axis={depth_axis})")
    lines.append(f"{out} = L.ConvLSTM{dims}D({filters}, {kernel}, padding={padding!r}, "
                 f"activation={activation!r}, data_format={fmt!r}, "
                 f"return_sequences={return_sequences}, name={name!r})({seq})")
    rank = t.rank + (0 if direct else 1) + (dims == 3) - (not return_sequences)
    if rank > t.rank and not direct:
        lines.append(f"{out} = {out}[:, -1]")  # the last step
        rank -= 1
    if dims == 3:
        depth_axis = 1 if fmt == "channels_last" else 2
        lines.append(f"{out} = keras.ops.squeeze({out}, axis={depth_axis})")
    b.emit(lines, [(out, fmt)], [t], {name: filters})


# Simplest first: hypothesis shrinks toward the start of each list.
RANK3 = [_lstm, _gru, _simple_rnn, _bidirectional, _time_distributed, _masked,
         _encoder_decoder, _conv_lstm]
RANK4 = [_time_distributed, _conv_lstm]
