"""Shared pieces of the dual-encoder tests (tests/hub/test_clip.py,
test_siglip.py): tiny towers, perturbation that leaves index tables alone,
and the composite's growth checked end to end."""

import keras
import numpy as np

from tests.hub.helpers import keras_hub
from tests.growth import assert_unchanged
from tests.growth import snapshot

import keras_net2net as n2n  # noqa: E402
from keras_net2net.hub import dual_encoder  # noqa: E402

VISION = dict(patch_size=4, hidden_dim=8, num_layers=2, num_heads=2, intermediate_dim=16,
              image_shape=(8, 8, 3))
TEXT = dict(vocabulary_size=20, embedding_dim=8, hidden_dim=8, num_layers=2, num_heads=2,
            intermediate_dim=16, max_sequence_length=6)
TOWER_KEYS = ("hidden_dim", "num_heads", "intermediate_dim", "num_layers")


def perturb(model, seed=0, scale=0.2):
    """Every float weight moved by N(0, scale); integer position ids set to
    0..n-1 (a CLIP built from a config holds zeros there until a preset
    loads them)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "int" in str(w.dtype):
            w.assign(np.broadcast_to(np.arange(w.shape[-1]), w.shape).astype(w.dtype))
            continue
        w.assign(w.numpy() + rng.normal(0.0, scale, w.shape).astype(w.dtype))
    floats = [w for w in model.weights if "int" not in str(w.dtype)]
    assert all(np.all((w.numpy() != 0) & (w.numpy() != 1)) for w in floats)
    return model


def towers(prefix, **kwargs):
    """The arguments of a tiny `{prefix}Backbone` (CLIP, MetaCLIP2, SigLIP):
    its towers named "vision" and "text" (as presets name them: their
    layers then carry the name, e.g. "vision_encoder_block_0"), and `kwargs`."""
    models = keras_hub.models
    keras.utils.set_random_seed(0)
    return dict(vision_encoder=getattr(models, f"{prefix}VisionEncoder")(name="vision", **VISION),
                text_encoder=getattr(models, f"{prefix}TextEncoder")(name="text", **TEXT),
                **kwargs)


def dual(prefix, **kwargs):
    """A tiny perturbed `{prefix}Backbone` (see `towers`)."""
    return perturb(getattr(keras_hub.models, f"{prefix}Backbone")(**towers(prefix, **kwargs)))


def tiny_clip():
    return towers("CLIP", projection_dim=6)


def tiny_metaclip2():
    return towers("MetaCLIP2", projection_dim=6)


def tiny_siglip():
    return towers("SigLIP")


def relative(y, z):
    y, z = np.asarray(y, np.float64), np.asarray(z, np.float64)
    return float(np.max(np.abs(y - z)) / np.max(np.abs(y)))


def grow_dual(teacher, tmp_path, expected, **kwargs):
    """Grows a dual encoder and checks: same class, each tower's config
    (`expected` {"vision_encoder": (hidden, heads, intermediate, layers),
    "text_encoder": ..., other key: value}), the teacher bit-identical, both
    logits within 1e-5 relative (here, on new inputs, and in the report), the
    head's scalars kept, and the `.keras` round trip exact. Returns
    (student, report, max relative error)."""
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, seed=0, return_report=True, **kwargs)
    assert_unchanged(teacher, snap)
    assert type(student) is type(teacher)
    config = student.get_config()
    for key, value in expected.items():
        got = (tuple(config[key]["config"][k] for k in TOWER_KEYS)
               if key in dual_encoder.TOWERS else config[key])
        assert got == value, (key, got, value)
    assert max(row["max_rel"] for row in report.verification["inference"]) <= 1e-5
    x = dual_encoder.probe(teacher, batch=4, seed=1)
    y, z = teacher(x), student(x)
    error = max(relative(y[k], z[k]) for k in ("vision_logits", "text_logits"))
    assert error <= 1e-5, error
    heads = [next(layer for layer in model.layers if type(layer).__name__.endswith("Head"))
             for model in (teacher, student)]
    assert heads[0].weights  # the logit scale (and SigLIP's bias): kept as they are
    for a, b in zip(heads[0].weights, heads[1].weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    path = tmp_path / "student.keras"
    student.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(student)
    w = loaded(x)
    for k in z:
        np.testing.assert_array_equal(np.asarray(z[k]), np.asarray(w[k]))
    return student, report, error


def new_block_is_identity(tower, index, zero_layers):
    """Block `index` of a tower has its writers zero, the block before not."""
    blocks = [layer for layer in tower.layers if "encoder_block_" in layer.name]
    for name in zero_layers:
        new = [w for w in blocks[index].weights if f"/{name}/" in w.path]
        old = [w for w in blocks[index - 1].weights if f"/{name}/" in w.path]
        assert new and not any(np.any(w.numpy()) for w in new), name
        assert any(np.any(w.numpy()) for w in old), name
