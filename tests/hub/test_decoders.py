"""keras_hub decoders built on Llama's blocks (keras_net2net.hub.llama) grow
into bigger models of their own class: Phi-3 (other sublayer names), Qwen 3
(QK-norm, a `head_dim` free of the model width, tied by default), Mixtral
(a mixture of experts: every expert's FFN grows, the router's logits are
kept), Qwen-MoE and Qwen 3 MoE (fused gate/up experts, a shared expert, dense
blocks by index). x2, x1.5 (zero pads: RMS norms), one identity block deeper; their
causal LMs decode the teacher's greedy tokens."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import assert_same_greedy_tokens
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import readout
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, num_layers=2, num_query_heads=4, num_key_value_heads=2,
            hidden_dim=16, intermediate_dim=24)

# name: (backbone maker, causal LM class, tied LM head)
MODELS = {
    "phi3": (lambda **k: keras_hub.models.Phi3Backbone(**k), keras_hub.models.Phi3CausalLM,
             False),
    "qwen3": (lambda **k: keras_hub.models.Qwen3Backbone(head_dim=8, **k),
              keras_hub.models.Qwen3CausalLM, True),
    "qwen3_untied": (lambda **k: keras_hub.models.Qwen3Backbone(
        head_dim=8, tie_word_embeddings=False, **k), keras_hub.models.Qwen3CausalLM, False),
    "mixtral": (lambda **k: keras_hub.models.MixtralBackbone(num_experts=3, top_k=2, **k),
                keras_hub.models.MixtralCausalLM, False),
    # Fused gate/up experts, a shared expert with its sigmoid gate.
    "qwen_moe": (lambda **k: keras_hub.models.QwenMoeBackbone(
        moe_intermediate_dim=12, shared_expert_intermediate_dim=20, num_experts=4, top_k=2,
        **k), keras_hub.models.QwenMoeCausalLM, False),
    # Its own head_dim, QK-norm, a dense first block (mlp_only_layers).
    "qwen3_moe": (lambda **k: keras_hub.models.Qwen3MoeBackbone(
        moe_intermediate_dim=12, num_experts=4, top_k=2, head_dim=8, mlp_only_layers=[0], **k),
        keras_hub.models.Qwen3MoeCausalLM, False),
}
# Widths inside the blocks that grow with the factor: {name: {key: (x2, x1.5)}}.
INNER = {"qwen_moe": {"moe_intermediate_dim": (24, 18), "shared_expert_intermediate_dim": (40, 30)},
         "qwen3_moe": {"moe_intermediate_dim": (24, 18)}}
CASES = [
    (dict(widen=2.0), dict(hidden_dim=32, num_query_heads=8, num_key_value_heads=4,
                           intermediate_dim=48, num_layers=2)),
    (dict(widen=1.5, deepen=["transformer_layer_0"]),
     dict(hidden_dim=24, num_query_heads=6, num_key_value_heads=3, intermediate_dim=36,
          num_layers=3)),
    (dict(deepen={"transformer_layer_1": 2}), dict(hidden_dim=16, num_layers=4)),
]


def make(name, scale=0.2):
    keras.utils.set_random_seed(0)
    return perturb(MODELS[name][0](**TINY), scale=scale)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("kwargs,expected", CASES)
def test_llama_like_decoders_grow_into_their_class(name, kwargs, expected, tmp_path):
    teacher = make(name)
    if name.startswith("qwen3"):
        expected = {**expected, "head_dim": 8}  # kept: rotary
    for key, (x2, x15) in INNER.get(name, {}).items():
        factor = kwargs.get("widen")
        expected = {**expected, key: {2.0: x2, 1.5: x15}.get(factor, teacher.get_config()[key])}
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, expected, **kwargs)
    g = report.mappings().get("token_embedding", list(range(16)))
    assert len(g) == expected["hidden_dim"]
    error = relative(y[0], readout(z[0], g, tied=MODELS[name][2]))
    print(f"{name} {kwargs}: max rel {error:.2e}")
    assert error <= 1e-5
    if "widen" in kwargs:  # every block's kv heads and FFN (every expert's) grown
        for width in ("num_key_value_heads", "intermediate_dim", *INNER.get(name, {})):
            rows = [r for r in report.inner if r["width"] == width]
            assert len(rows) == 2 and all(r["new_width"] == expected[width] for r in rows), (
                width, report.inner)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_llama_like_causal_lms_decode_the_same_tokens(name, tmp_path):
    _, task, _ = MODELS[name]
    teacher = task(backbone=make(name, scale=1.0), preprocessor=None)
    student, report, errs, (y, z) = grow_and_check(teacher, tmp_path, {}, widen=1.5,
                                                   deepen=["transformer_layer_1"])
    assert relative(y[0], z[0]) <= 1e-5
    assert_same_greedy_tokens(teacher, student)


def test_mixtral_router_is_unchanged():
    """The router reads the stream: its rows are divided by the copy counts,
    so the student's router logits are the teacher's on the same tokens."""
    import numpy as np

    import keras_net2net as n2n

    teacher = make("mixtral")
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    g = np.asarray(report.mappings()["token_embedding"])
    x = np.random.default_rng(0).normal(size=(5, 16)).astype("float32")
    x_grown = x[:, g] if (g >= 0).all() else None
    for i in range(2):
        old = teacher.get_layer(f"transformer_layer_{i}")._sparse_moe_block
        new = student.get_layer(f"transformer_layer_{i}")._sparse_moe_block
        a = np.asarray(old._sparse_feedforward_gate_dense(x))
        b = np.asarray(new._sparse_feedforward_gate_dense(x_grown))
        assert relative(a, b) <= 1e-6
        assert tuple(new.expert_bank._expert_feedforward_output_dense.shape) == (3, 48, 32)


def test_qwen3_refuses_a_head_dim_key_typed():
    message = refused(make("qwen3"), errors.PlanError, widen={"head_dim": 16})
    assert "rotary" in message and "head_dim" in message, message
