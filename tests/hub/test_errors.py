"""keras_hub bad inputs get typed errors naming the key, the value and the
fix; the core imports and grows without keras_hub."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.growth import assert_preserved
from tests.growth import probe
from tests.hub.helpers import TINY
from tests.hub.helpers import assert_unchanged
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import snapshot


@pytest.fixture(scope="module")
def gpt2():
    return perturb(keras_hub.models.GPT2Backbone(**TINY))


@pytest.mark.parametrize("widen,error,fragments", [
    ({"hidden_dim": 30, "num_heads": 4}, errors.PlanError,
     ["'num_heads' to divide 'hidden_dim'", "num_heads=4", "hidden_dim=30", "Fix:"]),
    ({"hidden_dim": 20, "num_heads": 4}, errors.PlanError, ["head dim", "hidden_dim=20", "Fix:"]),
    ({"num_layers": 4}, errors.PlanError, ["'num_layers'", "deepen=", "Fix:"]),
    ({"intermediate_dim": 16}, errors.PlanError, ["'intermediate_dim' >= its current value 32",
                                                  "Fix:"]),
    (0.5, errors.PlanError, ["widen >= 1", "widen=0.5"]),
])
def test_bad_width_requests_are_typed(gpt2, widen, error, fragments):
    snap = snapshot(gpt2)
    with pytest.raises(error) as info:
        n2n.expand_model(gpt2, widen=widen)
    assert_unchanged(gpt2, snap)
    message = str(info.value)
    assert message.startswith("Expected"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_bad_deepen_names_the_blocks(gpt2):
    message = refused(gpt2, errors.PlanError, deepen=["layer_norm"])
    assert "transformer_layer_0" in message and "'layer_norm'" in message


def test_a_preset_name_is_refused():
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model("gpt2_base_en", widen=2.0)
    assert "'gpt2_base_en'" in str(info.value) and "from_preset" in str(info.value)


def test_a_backbone_with_no_rule_lists_the_supported_classes():
    backbone = keras_hub.models.EdRecBackbone(
        vocab_size=50, num_layers_enc=1, num_layers_dec=1, hidden_dim=8,
        intermediate_dim=16, num_heads=2)
    message = refused(backbone, errors.UnsupportedModelError, widen=2.0)
    for fragment in ("EdRecBackbone", "GPT2Backbone", "BertBackbone", "Fix:"):
        assert fragment in message, message


def test_core_works_without_keras_hub():
    """keras_hub set to None in sys.modules: importing it raises, and the
    core imports and grows a model all the same."""
    code = textwrap.dedent("""
        import sys
        sys.modules["keras_hub"] = None
        import keras, numpy as np
        import keras_net2net as n2n
        from keras_net2net import hub
        assert hub.activate() is None
        x = keras.Input((4,))
        m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Dense(3, name="h")(x)))
        s, r = n2n.expand_model(m, widen=2.0, return_report=True)
        assert r.max_relative_error < 1e-5 and s.get_layer("h").units == 6
        assert "keras_net2net.hub.backbone" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_explain_model_shows_a_backbone_stream_as_growable(gpt2):
    report = n2n.explain_model(gpt2)
    stream = next(g for g in report.groups if g["name"] == "token_embedding")
    assert not stream["frozen"], stream["reasons"]
    assert {"transformer_layer_0:num_heads", "transformer_layer_0:intermediate_dim"} <= {
        g["name"] for g in report.groups}


def test_a_functional_copy_of_dfine_grows_and_keeps_the_teacher():
    """DFineBackbone's decoder returns its `upsampling_factor` variable in its
    config: a decoder made from it wrote into the teacher's (issue 27). Its
    functional copy grows now (unknown layers keep their width), exactly,
    and the teacher is bit-identical."""
    hgnet = keras_hub.models.HGNetV2Backbone(
        stem_channels=[3, 8, 8], stackwise_stage_filters=[
            [8, 8, 16, 1, 3, 3], [16, 8, 32, 1, 3, 3], [32, 8, 32, 1, 3, 3],
            [32, 8, 32, 1, 3, 3]],
        apply_downsample=[False, True, True, True],
        use_lightweight_conv_block=[False, False, True, True], depths=[1, 1, 1, 1],
        hidden_sizes=[16, 32, 32, 32], embedding_size=8, use_learnable_affine_block=True,
        hidden_act="relu", image_shape=(64, 64, 3), out_features=["stage3", "stage4"],
        data_format="channels_last")
    dfine = keras_hub.models.DFineBackbone(
        backbone=hgnet, decoder_in_channels=[16, 16], encoder_hidden_dim=16, num_denoising=0,
        num_labels=4, hidden_dim=16, learn_initial_query=False, num_queries=8,
        anchor_image_size=(64, 64), feat_strides=[16, 32], num_feature_levels=2,
        encoder_in_channels=[32, 32], encode_proj_layers=[1], num_attention_heads=2,
        encoder_ffn_dim=16, num_encoder_layers=1, hidden_expansion=0.34,
        depth_multiplier=0.5, eval_idx=-1, num_decoder_layers=1, decoder_attention_heads=2,
        decoder_ffn_dim=16, decoder_n_points=[2, 2], lqe_hidden_dim=8, num_lqe_layers=2,
        out_features=["stage3", "stage4"], image_shape=(64, 64, 3),
        data_format="channels_last", seed=0)
    teacher = keras.Model(dfine.inputs, dfine.outputs)
    snap = snapshot(dfine)
    student = n2n.expand_model(teacher, widen=2.0, seed=0)
    assert_unchanged(dfine, snap)
    assert_preserved(teacher, student, probe(teacher))


def test_a_nan_in_a_second_backbone_output_fails_verification(monkeypatch):
    """BERT returns the sequence and the pooled output; a NaN in the second,
    as read back through the mapping, fails the one verification."""
    from keras_net2net import makers

    read_back = makers.read_back
    keys = []

    def nan_in_second(ctx, the_plan, key, value):
        keys.append(key)
        out = read_back(ctx, the_plan, key, value)
        return out * np.nan if key == ctx.graph.outputs[1] else out

    monkeypatch.setattr(makers, "read_back", nan_in_second)
    teacher = perturb(keras_hub.models.BertBackbone(**TINY))
    snap = snapshot(teacher)
    with pytest.raises(errors.VerificationError) as info:
        n2n.expand_model(teacher, widen=2.0, seed=0)
    assert_unchanged(teacher, snap)
    rows = info.value.report.verification["inference"]
    assert len(rows) == 2 and len(keys) == 2, rows
    assert rows[0]["max_rel"] < 1e-5 and rows[1]["max_rel"] == float("inf"), rows
    assert "max |d|/max |y| = inf" in str(info.value), str(info.value)
