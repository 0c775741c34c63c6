"""Shared checks for the keras_hub encoder-decoder tests (tests/hub/test_bart.py,
hub/test_t5.py, hub/test_whisper.py)."""

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import readout
from tests.hub.helpers import relative

STREAMS = ("decoder_sequence_output", "encoder_sequence_output")  # keras.tree order
DEEPEN = ["transformer_encoder_layer_1", "transformer_decoder_layer_0"]


def grow_and_read_back(teacher, tmp_path, expected, producers, **kwargs):
    """grow_and_check, then both streams read back through their own
    mappings, independently of the library: {output: max relative error}.

    Args:
        producers: {output name: the layer whose mapping that stream has}.
    """
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    mappings = report.mappings()
    assert len(y) == len(STREAMS) == len(z)
    out = {}
    for name, a, b in zip(STREAMS, y, z):
        g = mappings.get(producers[name], list(range(a.shape[-1])))
        assert len(g) == expected.get("hidden_dim", a.shape[-1])
        out[name] = relative(a, readout(b, g, tied=False))
        assert out[name] <= 1e-5, (name, out[name])
    print(f"{type(teacher).__name__} {kwargs}: {out}")
    return student, report, out


def inner_rows(report, width):
    return [r for r in report.inner if r["width"] == width]
