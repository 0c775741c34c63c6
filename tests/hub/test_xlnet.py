"""keras_hub XLNet (a word embedding, a sinusoidal relative position encoding
of the model width, post-LN two-stream relative attention blocks with
per-head content/position/segment biases) grows into a bigger XLNetBackbone:
x2, and x3 one block deeper (the post-LN hand-over), the stream read back
through its mapping; the blocks' position projections hold the old rows
where the new encoding holds the old frequencies, zero elsewhere. x1.5 is
refused with the reason."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=16)


@pytest.fixture(scope="module")
def xlnet():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.XLNetBackbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=16, num_heads=4, intermediate_dim=32, num_layers=2)),
    (dict(widen=3.0, deepen=["xlnet_encoder_1"]),
     dict(hidden_dim=24, num_heads=6, intermediate_dim=48, num_layers=3)),
])
def test_xlnet_grows_into_its_class(xlnet, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(xlnet, tmp_path, expected, **kwargs)
    g = report.mappings()["content_query_embedding"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"XLNetBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    k, d = expected["hidden_dim"] // 8, expected["hidden_dim"]
    placed = [k * r for r in range(4)] + [d // 2 + k * r for r in range(4)]
    for block in range(expected["num_layers"]):
        rows = student.get_layer(f"xlnet_encoder_{block}").relative_attention
        rows = rows._encoding_dense.kernel.numpy()
        others = np.delete(rows, placed, axis=0)
        assert not np.any(others) and np.all(np.any(rows[placed], axis=(1, 2)))


def test_xlnet_refuses_a_non_integer_factor(xlnet):
    message = refused(xlnet, errors.PlanError, widen=1.5)
    assert "10000^(-2i / hidden_dim)" in message and "widen=2.0" in message, message
