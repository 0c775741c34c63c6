"""keras_hub Qwen 3.5 MoE (Qwen 3.5's hybrid blocks with a sparse mixture of
experts: a router, fused [gate | up] experts, a gated shared expert) grows
into a bigger Qwen3_5MoeBackbone: x2, and x1.5 one block deeper, the stream
read back through its mapping; routing is the teacher's (the router's rows
divided), every expert's width and the shared expert's grow."""

import keras
import numpy as np
import pytest

from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            head_dim=8, hidden_dim=16, moe_intermediate_dim=8,
            shared_expert_intermediate_size=8, num_experts=4, top_k=2,
            layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
            linear_num_value_heads=4, linear_key_head_dim=4, linear_value_head_dim=4,
            linear_conv_kernel_dim=4)


@pytest.fixture(scope="module")
def qwen_moe():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.Qwen3_5MoeBackbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, num_key_value_heads=4, num_query_heads=8,
                           moe_intermediate_dim=16, shared_expert_intermediate_size=16,
                           linear_num_key_heads=4, linear_num_value_heads=8)),
    (dict(widen=1.5, deepen=["transformer_layer_1"]),
     dict(hidden_dim=24, moe_intermediate_dim=12, shared_expert_intermediate_size=12,
          linear_num_value_heads=6, num_layers=3,
          layer_types=["linear_attention", "full_attention", "full_attention"])),
])
def test_qwen3_5_moe_grows_into_its_class(qwen_moe, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(qwen_moe, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"Qwen3_5MoeBackbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    experts = student.get_layer("transformer_layer_0").mlp.expert_bank
    units = expected["moe_intermediate_dim"]
    assert tuple(experts._expert_feedforward_gate_dense.shape) == (4, expected["hidden_dim"],
                                                                     2 * units)
    if "deepen" in kwargs:
        new = student.get_layer("transformer_layer_2").mlp.expert_bank
        assert not np.any(new._expert_feedforward_output_dense.numpy())
