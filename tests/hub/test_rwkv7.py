"""keras_hub RWKV-7 (pre-LN blocks of a time mix: token shift, per-head
generalised delta-rule recurrence, low-rank decay/rate/value/gate paths,
group norm; and a relu^2 channel mix) grows into a bigger RWKV7Backbone: x2
and one block deeper (after a block other than the first), its logits
compared as they are; RWKV7CausalLM with it. x1.5 and a copy of block 0 are
refused with the reason, the teacher unchanged."""

import keras
import numpy as np
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(hidden_size=16, head_size=8, num_layers=2, vocabulary_size=50,
            intermediate_dim=32, gate_lora=4, mv_lora=4, aaa_lora=4, decay_lora=4)


@pytest.fixture(scope="module")
def rwkv():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.RWKV7Backbone(**TINY))


@pytest.mark.parametrize("kwargs,expected", [
    (dict(widen=2.0), dict(hidden_size=32, intermediate_dim=64, num_layers=2)),
    (dict(widen=2.0, deepen=["rwkv_layer_1"]),
     dict(hidden_size=32, intermediate_dim=64, num_layers=3)),
])
def test_rwkv7_grows_into_its_class(rwkv, kwargs, expected, tmp_path):
    student, report, errs, (y, z) = grow_and_check(rwkv, tmp_path, expected, **kwargs)
    error = relative(y[0], z[0])  # the head's logits
    print(f"RWKV7Backbone {kwargs}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5
    att = student.get_layer("rwkv_layer_1").att
    assert tuple(att.r_k.shape) == (4, 8)  # heads doubled, head size kept
    if "deepen" in kwargs:
        assert not np.any(student.get_layer("rwkv_layer_2").att.output_layer.kernel.numpy())


def test_rwkv7_causal_lm_grows_with_its_backbone(rwkv, tmp_path):
    task = keras_hub.models.RWKV7CausalLM(backbone=rwkv, preprocessor=None)
    student, _, _, (y, z) = grow_and_check(task, tmp_path, dict(hidden_size=32), widen=2.0)
    assert type(student) is keras_hub.models.RWKV7CausalLM
    assert relative(y[0], z[0]) <= 1e-5


@pytest.mark.parametrize("kwargs,error,fragment", [
    (dict(widen=1.5), errors.FrozenGroupError, "initial LayerNorm"),
    (dict(deepen=["rwkv_layer_0"]), errors.PlanError, "after the first"),
])
def test_rwkv7_refuses_what_is_not_exact(rwkv, kwargs, error, fragment):
    message = refused(rwkv, error, **kwargs)
    assert fragment in message, message
