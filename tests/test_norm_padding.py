"""LayerNorm and RMSNorm streams grow at any width (LEMON's construction, see
keras_net2net/padding.py): k copies of each channel plus pads holding the
per-token mean (LayerNorm inputs) or zero (RMSNorm inputs, norm outputs),
gamma' = sqrt(s) gamma, epsilon' = s epsilon with s = k n / q."""

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.factories import pre_ln_encoder
from tests.factories import randomize_state
from tests.growth import assert_preserved
from tests.growth import assert_unchanged
from tests.growth import probe
from tests.growth import snapshot

L = keras.layers


def rms_gated_decoder(width=8):
    """Llama's shape: RMSNorm, grouped-query attention, a gated (SwiGLU) MLP."""
    tokens = keras.Input((6,), dtype="int32")
    x = L.Embedding(30, width, name="embed")(tokens)
    h = L.RMSNormalization(name="attn_norm")(x)
    h = L.GroupQueryAttention(4, 4, 2, name="gqa")(h, h, use_causal_mask=True)
    x = L.Add()([x, h])
    h = L.RMSNormalization(name="mlp_norm")(x)
    gate = L.Dense(12, activation="silu", name="gate")(h)
    up = L.Dense(12, name="up")(h)
    x = L.Add()([x, L.Dense(width, name="down")(L.Multiply()([gate, up]))])
    x = L.RMSNormalization(name="final_norm")(x)
    return keras.Model(tokens, L.Dense(30, name="lm_head")(x))


def post_ln_encoder(width=6):
    """BERT's order: the norm reads the residual sum."""
    inp = keras.Input((5, 3))
    x = L.Dense(width, name="proj")(inp)
    h = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = L.LayerNormalization(name="ln_attn")(L.Add()([x, h]))
    h = L.Dense(2 * width, activation="gelu", name="ffn_in")(x)
    x = L.LayerNormalization(name="ln_ffn")(L.Add()([x, L.Dense(width, name="ffn_out")(h)]))
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


def conv_bn_ln():
    """A norm-fed conv stream through BatchNorm and ReLU ("zero" pads)."""
    inp = keras.Input((6, 3))
    x = L.Conv1D(5, 3, padding="same", name="conv")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.BatchNormalization(name="bn")(x)
    x = L.ReLU()(x)
    x = L.Conv1D(4, 1, name="mix")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(2, name="logits")(x))


PADDED = {"pre_ln_encoder": pre_ln_encoder,
          "pre_rms_encoder": lambda: pre_ln_encoder(L.RMSNormalization),
          "rms_gated_decoder": rms_gated_decoder, "conv_bn_ln": conv_bn_ln}


@pytest.mark.parametrize("name", sorted(PADDED))
@pytest.mark.parametrize("widen", [1.5, 1.25, 2.0])
def test_norm_fed_groups_grow_at_any_factor(name, widen):
    teacher = randomize_state(PADDED[name]())
    snap = snapshot(teacher)
    student, report = n2n.expand_model(teacher, widen=widen, seed=0, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    assert_unchanged(teacher, snap)
    assert not report.skipped, report.skipped
    hidden = [g for g in report.groups if not g["frozen"] and not g.get("on_request")]
    assert hidden and all(g["new_width"] == int(np.ceil(g["old_width"] * widen - 1e-9))
                          for g in hidden), [(g["name"], g["old_width"], g["new_width"])
                                             for g in hidden]


def test_pads_carry_the_mean_and_the_norm_is_rescaled():
    teacher = randomize_state(pre_ln_encoder())
    student, report = n2n.expand_model(teacher, widen=1.5, mapping="round_robin",
                                       return_report=True)
    stream = next(g for g in report.groups if "token_embed" in g["producers"])
    assert stream["mapping"] == [0, 1, 2, 3, 4, 5, -1, -1, -1]
    old = teacher.get_layer("token_embed").embeddings.numpy()
    new = student.get_layer("token_embed").embeddings.numpy()
    np.testing.assert_allclose(new[:, :6], old, rtol=1e-6)
    for pad in range(6, 9):  # a LayerNorm input: pads write the mean of the channels
        np.testing.assert_allclose(new[:, pad], old.mean(axis=1), rtol=1e-5, atol=1e-7)
    s = 6 / 9
    ln, ln2 = teacher.get_layer("norm0_attn"), student.get_layer("norm0_attn")
    np.testing.assert_allclose(ln2.gamma.numpy()[:6], np.sqrt(s) * ln.gamma.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(ln2.beta.numpy()[6:], 0.0)
    assert ln2.epsilon == pytest.approx(s * ln.epsilon)
    reader = student.get_layer("ffn0_in").kernel.numpy()
    np.testing.assert_array_equal(reader[6:], 0.0)  # readers ignore the pads


def test_rms_streams_pad_with_zeros():
    teacher = randomize_state(rms_gated_decoder())
    student = n2n.expand_model(teacher, widen=1.5, mapping="round_robin")
    embed = student.get_layer("embed").embeddings.numpy()
    np.testing.assert_array_equal(embed[:, 8:], 0.0)  # 8 -> 12: 4 zero pads
    down = student.get_layer("down")
    np.testing.assert_array_equal(down.kernel.numpy()[:, 8:], 0.0)
    np.testing.assert_array_equal(down.bias.numpy()[8:], 0.0)


@pytest.mark.parametrize("strict", [False, True])
def test_post_ln_keeps_non_integer_factors_with_the_reason(strict):
    teacher = randomize_state(post_ln_encoder())
    if strict:
        with pytest.raises(errors.FrozenGroupError) as info:
            n2n.expand_model(teacher, widen=1.5, strict=True)
        message = str(info.value)
        assert message.startswith("Expected") and "Fix:" in message
        assert "LayerNormalization 'ln_attn'" in message, message
        return
    student, report = n2n.expand_model(teacher, widen=1.5, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    why = " ".join(s["reason"] for s in report.skipped)
    assert "cannot be padded" in why and "ln_attn" in why, why
    assert student.get_layer("proj").units == 6
    assert student.get_layer("ffn_in").units == 18  # what does not feed a norm grows
    two = n2n.expand_model(teacher, widen=2.0)  # integer factors copy evenly
    assert two.get_layer("proj").units == 12
    assert_preserved(teacher, two, probe(teacher))


def test_non_linear_writer_into_a_layernorm_keeps_its_width():
    inp = keras.Input((4, 3))
    x = L.Dense(6, activation="sigmoid", name="writer")(inp)
    x = L.LayerNormalization(name="ln")(x)
    x = L.GlobalAveragePooling1D()(x)
    teacher = randomize_state(keras.Model(inp, L.Dense(2, name="logits")(x)))
    student, report = n2n.expand_model(teacher, widen=1.5, return_report=True)
    assert_preserved(teacher, student, probe(teacher))
    why = " ".join(s["reason"] for s in report.skipped)
    assert "'writer'" in why and "sigmoid" in why, why


def test_padded_growth_is_exact_in_float64_and_with_balanced_noise(float64, tmp_path):
    teacher = randomize_state(pre_ln_encoder())
    student = n2n.expand_model(teacher, widen=1.5, seed=1)
    assert_preserved(teacher, student, probe(teacher), rtol=1e-9)
    noisy = n2n.expand_model(teacher, widen=1.5, seed=1, noise=0.1)
    assert_preserved(teacher, noisy, probe(teacher), rtol=1e-9)
    student.save(tmp_path / "student.keras")
    loaded = keras.models.load_model(tmp_path / "student.keras")
    assert_preserved(student, loaded, probe(teacher), rtol=0.0)


def test_padded_mappings_replay_exactly():
    teacher = randomize_state(pre_ln_encoder())
    student, report = n2n.expand_model(teacher, widen=1.5, seed=2, return_report=True)
    replay = n2n.expand_model(teacher, mappings=report.mappings())
    for a, b in zip(student.get_weights(), replay.get_weights()):
        np.testing.assert_array_equal(a, b)


def bert_style():
    """Post-LN encoder as BERT lays it out: token + position embeddings, the
    embedding LayerNorm, attention and feed-forward each followed by Add and
    LayerNorm, the first token's vector through a tanh pooler."""
    tokens = keras.Input((6,), dtype="int32", name="tokens")
    positions = keras.Input((6,), dtype="int32", name="positions")
    x = L.Add()([L.Embedding(25, 8, name="token_embed")(tokens),
                 L.Embedding(6, 8, name="position_embed")(positions)])
    x = L.LayerNormalization(name="embed_ln")(x)
    h = L.MultiHeadAttention(2, 4, name="mha")(x, x)
    x = L.LayerNormalization(name="attn_ln")(L.Add()([x, h]))
    h = L.Dense(16, activation="gelu", name="ffn_in")(x)
    x = L.LayerNormalization(name="ffn_ln")(L.Add()([x, L.Dense(8, name="ffn_out")(h)]))
    x = L.Dense(8, activation="tanh", name="pooler")(x[:, 0, :])
    return keras.Model([tokens, positions], L.Dense(2, name="logits")(x))


def test_bert_style_encoder_grows_whole_multiples_and_keeps_its_stream_otherwise():
    teacher = randomize_state(bert_style())
    x = probe(teacher)
    student, report = n2n.expand_model(teacher, widen=2.0, seed=0, return_report=True)
    assert_preserved(teacher, student, x)
    hidden = [g for g in report.groups if not g["frozen"] and not g.get("on_request")]
    assert hidden and all(g["new_width"] == 2 * g["old_width"] for g in hidden)
    student, report = n2n.expand_model(teacher, widen=1.5, seed=0, return_report=True)
    assert_preserved(teacher, student, x)
    widths = {r["layer"]: r["new_width"] for r in report.layers}
    assert widths["token_embed"] == 8  # the post-LN stream: no exact pads (padding.py)
    assert widths["ffn_in"] == 24 and widths["pooler"] == 12 and widths["mha"] == 8
    assert student.get_layer("mha").num_heads == 3
    why = " ".join(s["reason"] for s in report.skipped)
    assert "cannot be padded" in why, why
