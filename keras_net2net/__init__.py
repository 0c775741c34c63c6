"""keras-net2net: grow trained Keras models without changing what they compute.

Public names are imported on first use (`keras_net2net._lazy_exports`), so
`import keras_net2net` loads neither Keras nor TensorFlow by itself.
"""

from typing import TYPE_CHECKING

from keras_net2net import _lazy_exports

__all__ = ["expand_model", "explain_model", "expand_optimizer", "ExpansionReport",
           "register_rule", "errors"]
__version__ = "0.1.0"

__getattr__, __dir__ = _lazy_exports.attach(__name__, {
    "errors": "keras_net2net.errors",
    "expand_model": "keras_net2net.expand:expand_model",
    "explain_model": "keras_net2net.expand:explain_model",
    "expand_optimizer": "keras_net2net.optimizer_state:expand_optimizer",
    "ExpansionReport": "keras_net2net.report:ExpansionReport",
    "register_rule": "keras_net2net.rules:register_rule",
})

if TYPE_CHECKING:  # Static analysers and IDEs see the eager imports.
    from keras_net2net import errors
    from keras_net2net.expand import expand_model
    from keras_net2net.expand import explain_model
    from keras_net2net.optimizer_state import expand_optimizer
    from keras_net2net.report import ExpansionReport
    from keras_net2net.rules import register_rule
