"""keras_hub bad inputs get typed errors naming the key, the value and the
fix; the core imports and grows without keras_hub."""

import os
import subprocess
import sys
import textwrap

import pytest

import keras_net2net as n2n
from keras_net2net import errors
from tests.hub_helpers import TINY
from tests.hub_helpers import keras_hub
from tests.hub_helpers import perturb
from tests.hub_helpers import weights_of


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
    before = weights_of(gpt2)
    with pytest.raises(error) as info:
        n2n.expand_model(gpt2, widen=widen)
    message = str(info.value)
    assert message.startswith("Expected"), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    for a, b in zip(before, weights_of(gpt2)):
        assert (a == b).all()


def test_bad_deepen_names_the_blocks(gpt2):
    with pytest.raises(errors.PlanError) as info:
        n2n.expand_model(gpt2, deepen=["layer_norm"])
    assert "transformer_layer_0" in str(info.value) and "'layer_norm'" in str(info.value)


def test_a_preset_name_is_refused():
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model("gpt2_base_en", widen=2.0)
    assert "'gpt2_base_en'" in str(info.value) and "from_preset" in str(info.value)


def test_a_backbone_with_no_rule_lists_the_supported_classes():
    backbone = keras_hub.models.FNetBackbone(
        vocabulary_size=50, num_layers=1, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8)
    with pytest.raises(errors.UnsupportedModelError) as info:
        n2n.expand_model(backbone, widen=2.0)
    message = str(info.value)
    for fragment in ("FNetBackbone", "GPT2Backbone", "BertBackbone", "Fix:"):
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
                            timeout=300, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_explain_model_shows_a_backbone_stream_as_growable(gpt2):
    report = n2n.explain_model(gpt2)
    stream = next(g for g in report.groups if g["name"] == "token_embedding")
    assert not stream["frozen"], stream["reasons"]
    assert {"transformer_layer_0:num_heads", "transformer_layer_0:intermediate_dim"} <= {
        g["name"] for g in report.groups}
