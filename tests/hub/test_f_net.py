"""keras_hub FNet (post-LN blocks of Fourier mixing over tokens and the hidden
axis, then a feed-forward) grows only its feed-forward width, exactly (x2 and
x1.5 of `intermediate_dim`), into a bigger FNetBackbone; FNetTextClassifier
with it. The model width is refused with the reason (the DFT over the
hidden axis does not commute with copied channels), and so is deepening (the
Fourier sublayer has no weight to zero); the teacher is unchanged."""

import keras
import pytest

from keras_net2net import errors
from tests.hub.helpers import grow_and_check
from tests.hub.helpers import keras_hub
from tests.hub.helpers import perturb
from tests.hub.helpers import refused
from tests.hub.helpers import relative

TINY = dict(vocabulary_size=50, num_layers=2, hidden_dim=8, intermediate_dim=16,
            max_sequence_length=16)


@pytest.fixture(scope="module")
def fnet():
    keras.utils.set_random_seed(0)
    return perturb(keras_hub.models.FNetBackbone(**TINY))


@pytest.mark.parametrize("widen,width", [({"intermediate_dim": 32}, 32),
                                         ({"intermediate_dim": 1.5}, 24)])
def test_f_net_grows_its_feed_forward(fnet, widen, width, tmp_path):
    _, _, errs, (y, z) = grow_and_check(fnet, tmp_path, dict(hidden_dim=8,
                                                              intermediate_dim=width),
                                        widen=widen)
    error = max(relative(a, b) for a, b in zip(y, z))  # the stream is kept: compared as is
    print(f"FNetBackbone widen={widen}: max rel {max(errs):.2e} (report), {error:.2e} (here)")
    assert error <= 1e-5


def test_f_net_text_classifier_grows_its_feed_forward(fnet, tmp_path):
    task = keras_hub.models.FNetTextClassifier(backbone=fnet, num_classes=3, preprocessor=None)
    perturb(task, seed=1)
    _, _, _, (y, z) = grow_and_check(task, tmp_path, dict(intermediate_dim=32),
                                     widen={"intermediate_dim": 32})
    assert relative(y[0], z[0]) <= 1e-5


@pytest.mark.parametrize("kwargs,error,fragment", [
    (dict(widen=2.0), errors.FrozenGroupError, "Fourier transform over the hidden axis"),
    (dict(widen={"hidden_dim": 16}), errors.FrozenGroupError, "intermediate_dim"),
    (dict(deepen=["f_net_layer_0"]), errors.PlanError, "no weight to zero"),
])
def test_f_net_refuses_what_is_not_exact(fnet, kwargs, error, fragment):
    message = refused(fnet, error, **kwargs)
    assert fragment in message, message
