"""keras_hub ELECTRA (post-LN encoder, factorised embeddings projected to the
model width where they differ) grows into a bigger ElectraBackbone: x2, a
non-integer embedding / feed-forward width, one identity block deeper, with
and without the projection; both outputs (sequence and pooled) exact."""

import keras
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative


def electra(embedding_dim):
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.ElectraBackbone(
        vocab_size=50, num_layers=2, num_heads=2, hidden_dim=16, embedding_dim=embedding_dim,
        intermediate_dim=32, max_sequence_length=16))


@pytest.mark.parametrize("embedding_dim,kwargs,expected", [
    (8, dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, embedding_dim=16)),
    (8, dict(widen={"hidden_dim": 32, "intermediate_dim": 48, "embedding_dim": 12}),
     dict(hidden_dim=32, num_heads=4, intermediate_dim=48, embedding_dim=12)),
    (8, dict(deepen=["transformer_layer_0"]), dict(hidden_dim=16, num_layers=3)),
    (16, dict(widen=2.0, deepen=["transformer_layer_1"]),
     dict(hidden_dim=32, embedding_dim=32, num_heads=4, num_layers=3)),
])
def test_electra_grows_into_its_class(embedding_dim, kwargs, expected, tmp_path):
    teacher = electra(embedding_dim)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    stream = "embeddings_projection" if embedding_dim != 16 else "token_embedding"
    maps = report.mappings()
    names = [r["output"] for r in report.verification["inference"]]
    assert len(names) == 2
    for out_name, a, b in zip(names, y, z):
        g = maps.get("pooled_dense" if out_name == "pooled_dense" else stream, list(range(16)))
        error = relative(a, readout(b, g, tied=False))
        print(f"electra {embedding_dim} {kwargs} {out_name}: max rel {error:.2e}")
        assert error <= 1e-5
