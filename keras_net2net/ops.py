"""NumPy math of Net2Net: mappings, replication with division, identity
kernels and symmetry-breaking noise. All in float64, cast once by callers."""

import numpy as np


def mapping(old, new, kind, rng, blocks=None):
    """The Net2WiderNet map g: {0..new-1} -> {0..old-1}.

    Args:
        old: current width n.
        new: target width q >= n.
        kind: "random" (extra units copy random units, as in the paper) or
            "round_robin" (unit j copies j mod n).
        rng: a `numpy.random.Generator` for "random".
        blocks: when set, every unit is copied exactly q / n times and copies
            stay inside each of `blocks` equal consecutive blocks, which keeps
            LayerNormalization (blocks=1) and GroupNormalization exact.

    Returns:
        An int64 array of length `new`.
    """
    j = np.arange(new, dtype=np.int64)
    if blocks is not None:
        k, size = new // old, old // blocks
        return (j // (k * size)) * size + (j % (k * size)) % size
    if kind == "round_robin":
        return j % old
    extra = rng.integers(0, old, size=new - old, dtype=np.int64)
    return np.concatenate([j[:old], extra])


def segment_indices(g, inner, offset):
    """Old positions of a segment whose channel i spans `inner` positions
    (negative, a pad, where g is)."""
    idx = (g[:, None] * inner + np.arange(inner, dtype=np.int64)).ravel() + offset
    idx[np.repeat(g < 0, inner)] = -1
    return idx


def replicate(w, axis, src, counts=None, pad="zero"):
    """`w` copied along `axis` by `src`; divided by copy counts when given.

    Positions whose `src` is negative are pads (keras_net2net.padding): they
    hold the mean of `w` along `axis` when `pad` is "mean", else zero.
    """
    pads = src < 0
    take = np.where(pads, 0, src) if pads.any() else src
    out = np.take(w, take, axis=axis)
    shape = [1] * out.ndim
    shape[axis] = -1
    if counts is not None:
        out /= np.where(pads, 1, counts[take]).reshape(shape)  # in place: no second copy
    if pads.any():
        index = [slice(None)] * out.ndim
        index[axis] = pads
        fill = np.mean(w, axis=axis, keepdims=True) if pad == "mean" and counts is None else 0.0
        out[tuple(index)] = fill
    return out


def first_copies(src, old):
    """sqrt(new / old) at the first new position copying each old position,
    0.0 at its other copies (attention's query dims: rules.base.QUERY_DIMS)."""
    keep = np.zeros(len(src))
    keep[np.unique(src, return_index=True)[1]] = 1.0
    return keep * np.sqrt(len(src) / old)


def balanced_noise(shape, axis, src, scale, rng):
    """Noise that sums to zero over the copies of each unit along `axis`.

    Copies of a unit carry identical activations, so a consumer whose rows for
    those copies change by terms that sum to zero computes exactly the same
    function, yet the copies now receive different gradients.
    """
    e = rng.normal(0.0, scale, size=shape)
    moved = np.moveaxis(e, axis, 0)
    units = src >= 0  # pads (negative src) copy no unit: they get no noise
    moved[~units] = 0.0
    sums = np.zeros((int(src.max()) + 1,) + moved.shape[1:])
    np.add.at(sums, src[units], moved[units])
    counts = np.bincount(src[units], minlength=sums.shape[0]).reshape(
        (-1,) + (1,) * (moved.ndim - 1))
    moved[units] = moved[units] - (sums / np.maximum(counts, 1))[src[units]]
    return np.moveaxis(moved, 0, axis)


def identity_kernel(window, channels, depthwise=False, per_group=None):
    """A conv kernel (or Dense kernel when window == ()) that is the identity:
    a one at the centre tap for each channel. `per_group` is the kernel's
    input size for grouped convs (channels / groups)."""
    if depthwise:
        k = np.zeros(tuple(window) + (channels, 1))
        centre = tuple(s // 2 for s in window)
        k[centre + (slice(None), 0)] = 1.0
        return k
    per_group = channels if per_group is None else per_group
    k = np.zeros(tuple(window) + (per_group, channels))
    centre = tuple(s // 2 for s in window)
    idx = np.arange(channels)
    k[centre + (idx % per_group, idx)] = 1.0
    return k
