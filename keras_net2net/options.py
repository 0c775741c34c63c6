"""The growth options as text and back: one parser and one formatter.

`expand_model(widen=..., deepen=...)` takes Python values; the binaries take
the same options as flag text (`--widen=conv1=16,fc1=1.5`,
`--deepen=fc1:2,block1_ln1..block1_res2:stack`), and reports and comparison
records write them back as JSON, where a span key `("first", "last")` is the
text "first..last". This module does both directions, so the span syntax is
read and written in one place. It imports neither Keras nor TensorFlow: the
binaries parse their flags before TensorFlow loads.

```python
from keras_net2net import options

deepen = options.parse_deepen("fc1:2,block1_ln1..block1_res2:1")
# {'fc1': 2, ('block1_ln1', 'block1_res2'): 1}
options.jsonable(deepen)
# {'fc1': 2, 'block1_ln1..block1_res2': 1}
```
"""

from keras_net2net import errors

SPAN = ".."  # between a span's first and last layer names: "first..last"
DEEPEN_KINDS = ("identity", "residual")  # deepen one layer
SPAN_KINDS = ("block", "stack")  # a span's copy: zeroed branches / trained weights


def span_text(key):
    """A deepen key as the flags write it: ("a", "b") -> "a..b"; a layer
    name as it is.

    Example:
    >>> span_text(("block1_ln1", "block1_res2"))
    'block1_ln1..block1_res2'
    """
    return SPAN.join(key) if isinstance(key, tuple) else key


def span_key(text):
    """A deepen key from its text: "a..b" -> ("a", "b"); a name as it is.

    Raises:
        ValueError: a span without both names, or with more than two.

    Example:
    >>> span_key("block1_ln1..block1_res2")
    ('block1_ln1', 'block1_res2')
    """
    if SPAN not in text:
        return text
    first, _, last = text.partition(SPAN)
    if not (first.strip() and last.strip()) or SPAN in last:
        raise ValueError(f"Expected a span first{SPAN}last. Received: {text!r}")
    return first.strip(), last.strip()


def jsonable(deepen):
    """`deepen=` with span keys as text, for reports and JSON records.

    Example:
    >>> jsonable({("a", "b"): 1, "fc1": "residual"})
    {'a..b': 1, 'fc1': 'residual'}
    """
    if isinstance(deepen, dict):
        return {span_text(k): v for k, v in deepen.items()}
    return deepen


def as_counts(deepen):
    """`deepen=` as {name: how}: None -> {}, a name or a list of names -> one
    each; anything else is returned as given, for the caller to refuse.

    Example:
    >>> as_counts(["conv1", "fc1"])
    {'conv1': 1, 'fc1': 1}
    """
    if deepen is None:
        return {}
    if isinstance(deepen, str):
        deepen = [deepen]
    if isinstance(deepen, (list, tuple)):
        return {name: 1 for name in deepen}
    return deepen


def block_counts(deepen, example):
    """`as_counts(deepen)` where it is a dict, else a typed PlanError whose
    fix names `example` (a block name of the model).

    Example:
    >>> block_counts("block_1", "block_2")
    {'block_1': 1}
    """
    counts = as_counts(deepen)
    if not isinstance(counts, dict):
        raise errors.PlanError(
            f"Expected deepen to be a block name, a list of them or {{name: count}}. "
            f"Received: deepen={deepen!r}. Fix: e.g. deepen=[{example!r}].")
    return counts


def parse_widen(text):
    """Parses --widen: a factor ("1.5") or per-layer widths ("conv1=16,fc1=2.0").

    Args:
        text: the flag value, or None.

    Returns:
        None, a float, or {layer name: int width or float factor}.

    Raises:
        ValueError: if the text is neither form.

    Example:
    >>> parse_widen("conv1=16,fc1=1.5")
    {'conv1': 16, 'fc1': 1.5}
    """
    if not text:
        return None
    if "=" not in text:
        return float(text)
    widths = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not (sep and name.strip()):
            raise ValueError(f"Expected name=width. Received: {item!r}")
        value = value.strip()
        widths[name.strip()] = int(value) if value.isdigit() else float(value)
    return widths


def parse_deepen(text):
    """Parses --deepen: names ("conv2,fc1") or name:count|kind pairs; a name
    "first..last" is a span of residual blocks to repeat (key (first, last)).

    Args:
        text: the flag value, or None.

    Returns:
        None, a list of layer names, or {name: int count or "identity" or
        "residual"} as soon as any entry has a ":"; a span takes a count,
        "block" or "stack" (a copy with the trained weights, G_stack).

    Raises:
        ValueError: if an entry is malformed.

    Example:
    >>> parse_deepen("fc1:2,conv2:residual")
    {'fc1': 2, 'conv2': 'residual'}
    >>> parse_deepen("block1_ln1..block1_res2:1")
    {('block1_ln1', 'block1_res2'): 1}
    >>> parse_deepen("block1_ln1..block1_res2:stack")
    {('block1_ln1', 'block1_res2'): 'stack'}
    """
    if not text:
        return None
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise ValueError(f"Expected layer names separated by commas. "
                         f"Received: {text!r}")
    if not any(":" in item for item in items):
        return [span_key(item) for item in items]
    plan = {}
    for item in items:
        name, _, how = item.partition(":")
        name, how = span_key(name.strip()), how.strip() or "1"
        if how.isdigit() and int(how) > 0:
            plan[name] = int(how)
        elif how in DEEPEN_KINDS or (how in SPAN_KINDS and isinstance(name, tuple)):
            plan[name] = how
        else:
            raise ValueError(f"Expected name:count or name:{'|'.join(DEEPEN_KINDS)}, "
                             f"or first..last:count|{'|'.join(SPAN_KINDS)}. Received: "
                             f"{item!r}")
    return plan
