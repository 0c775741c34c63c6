"""keras-net2net: grow trained Keras models without changing what they compute."""

from keras_net2net import errors
from keras_net2net.expand import expand_model
from keras_net2net.expand import explain_model
from keras_net2net.optimizer_state import expand_optimizer
from keras_net2net.report import ExpansionReport
from keras_net2net.rules import register_rule

__all__ = ["expand_model", "explain_model", "expand_optimizer", "ExpansionReport",
           "register_rule", "errors"]
__version__ = "0.1.0"
