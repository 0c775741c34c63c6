"""keras_hub Qwen 3.5 (hybrid blocks: a gated delta net, linear attention
with per-head recurrent state, or gated full attention with QK-norm and
partial rotary; one-plus RMS norms; SwiGLU) grows into a bigger
Qwen3_5Backbone: x2, x1.5 (zero pads) and one block deeper of its anchor's
type, the stream read back through its mapping; Qwen3_5CausalLM grows x2
with it. Key heads are copied with their value heads (value head j reads key
head j // r)."""

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

# head_dim 8: partial rotary (0.25) needs an even rotary dim.
TINY = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            head_dim=8, hidden_dim=16, intermediate_dim=32,
            layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
            linear_num_value_heads=4, linear_key_head_dim=4, linear_value_head_dim=4,
            linear_conv_kernel_dim=4)
LINEAR = ("linear_num_key_heads", "linear_num_value_heads")


@pytest.fixture(scope="module")
def qwen():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.Qwen3_5Backbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_dim=32, num_key_value_heads=4, num_query_heads=8,
                           intermediate_dim=64, linear_num_key_heads=4,
                           linear_num_value_heads=8, head_dim=8)),
    (dict(widen=1.5, deepen=["transformer_layer_0"]),
     dict(hidden_dim=24, num_key_value_heads=3, intermediate_dim=48, linear_num_key_heads=3,
          linear_num_value_heads=6, num_layers=3,
          layer_types=["linear_attention", "linear_attention", "full_attention"])),
])
def test_qwen3_5_grows_into_its_class(qwen, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(qwen, tmp_path, expected, **kwargs)
    g = report.mappings()["token_embedding"]
    error = relative(y[0], readout(z[0], g, tied=False))
    print(f"Qwen3_5Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    net = student.get_layer("transformer_layer_0")._linear_attn
    k = expected["linear_num_key_heads"]
    assert tuple(net.in_proj_qkv.kernel.shape) == (expected["hidden_dim"], k * (4 + 4 + 2 * 4))
    if "deepen" in kwargs:  # the new block: its mixer and feed-forward write zero
        new = student.get_layer("transformer_layer_1")
        assert not np.any(new._linear_attn.out_proj.kernel.numpy())
        assert not np.any(new._feedforward_output_dense.kernel.numpy())


def test_qwen3_5_causal_lm_grows_with_its_backbone(qwen, tmp_path):
    task = keras_hub.models.Qwen3_5CausalLM(backbone=qwen, preprocessor=None)
    student, _, errs, (y, z) = grow_and_check(task, tmp_path, dict(hidden_dim=32), widen=2.0)
    assert type(student) is keras_hub.models.Qwen3_5CausalLM
    assert relative(y[0], z[0]) <= 1e-5  # the logits themselves


def test_qwen3_5_keeps_its_head_dims(qwen):
    message = refused(qwen, errors.PlanError, widen={"head_dim": 16})
    assert "head_dim" in message and "rotary" in message, message
