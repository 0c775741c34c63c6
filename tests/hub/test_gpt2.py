"""keras_hub GPT-2 grows into a bigger GPT2Backbone / GPT2CausalLM (same
class, exact), at x2, at x1.5 (LEMON pads: GPT-2 is pre-LN) and deeper by an
identity block; the grown causal LM decodes the same greedy tokens."""

import keras
import numpy as np
import pytest

from tests.hub.helpers import TINY
from tests.hub.helpers import assert_same_greedy_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative


def gpt2(scale=0.2):
    # Seeded: some initial draws decode a constant continuation, which the
    # greedy-token test refuses as proving little (it failed 2 runs in 11).
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.GPT2Backbone(**TINY), scale=scale)


CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_heads=4, intermediate_dim=64, num_layers=2)),
    (dict(widen=1.5), dict(hidden_dim=24, num_heads=3, intermediate_dim=48, num_layers=2)),
    (dict(deepen={"transformer_layer_0": 1}), dict(hidden_dim=16, num_layers=3)),
    (dict(widen={"hidden_dim": 40, "num_heads": 5, "intermediate_dim": 50},
          deepen=["transformer_layer_1"]),
     dict(hidden_dim=40, num_heads=5, intermediate_dim=50, num_layers=3)),
    # The head dim grows (16 // 2 = 8 -> 32 // 2 = 16): GPT-2 has no rotary.
    (dict(widen={"hidden_dim": 32, "num_heads": 2}), dict(hidden_dim=32, num_heads=2)),
]


@pytest.mark.parametrize("kwargs,expected", CASES)
def test_backbone_grows_into_a_gpt2_backbone(kwargs, expected, tmp_path):
    teacher = gpt2()
    student, report, errors, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(16)))
    error = relative(y[0], readout(z[0], g, tied=True))
    print(f"GPT2Backbone {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5
    if "widen" in kwargs:
        assert len(g) == expected["hidden_dim"]
        heads = [r for r in report.inner if r["width"] == "num_heads"]
        assert len(heads) == 2 and all(r["new_width"] == expected["num_heads"] for r in heads)


@pytest.mark.parametrize("kwargs", [dict(widen=1.5, deepen=["transformer_layer_1"])])
def test_causal_lm_grows_and_decodes_the_same_tokens(kwargs, tmp_path):
    teacher = keras_hub.models.GPT2CausalLM(backbone=gpt2(scale=1.0), preprocessor=None)
    student, report, errors, (y, z) = grow_and_check(teacher, tmp_path, {}, **kwargs)
    assert relative(y[0], z[0]) <= 1e-5  # logits: no readout needed
    prompt = {"token_ids": np.array([[5, 7, 9, 0, 0, 0, 0, 0], [1, 2, 0, 0, 0, 0, 0, 0]], "int32"),
              "padding_mask": np.array([[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]], "int32")}
    assert_same_greedy_tokens(teacher, student, prompt, jit_compile=False)


def test_backbone_grown_alone_serves_a_causal_lm():
    """The tied LM head reads the grown token embedding: a GPT2CausalLM built
    on a grown backbone gives the teacher's logits."""
    import keras_net2net as n2n

    backbone = gpt2()
    teacher = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    student = keras_hub.models.GPT2CausalLM(
        backbone=n2n.expand_model(backbone, widen=1.5, seed=0), preprocessor=None)
    x = {"token_ids": np.array([[3, 4, 5, 6]], "int32"), "padding_mask": np.ones((1, 4), "int32")}
    assert relative(teacher(x), student(x)) <= 1e-5
