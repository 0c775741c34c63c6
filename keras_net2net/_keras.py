"""Every private Keras / keras_hub attribute the package reads, in one place.

Keras 3 exposes most of what growth needs (`get_config`, `clone_model`'s
hooks, `KerasTensor`s, `Node.arguments`), but not all of it: a Sequential's
hidden graph, a Functional's nodes by depth, the structure its inputs were
given in, a variable's deferred initial value, an optimizer's per-variable
slots, the sublayers of attention and keras_hub blocks. Each such read is a
small function or constant here, with the reason it is needed and, where
Keras may change it, a probe with a fallback. A Keras upgrade that moves one
of them should break this file and nothing else; tests/test_keras_internals.py
fails when another module reads a private Keras attribute directly.

Allowed exceptions, kept where they are:
- keras_hub family modules (`keras_net2net/hub/*.py`) import layer classes
  (and the family's own helpers, such as MobileNet's `adjust_channels`) from
  `keras_hub.src.models.<family>` and `keras_hub.src.layers.modeling`: these
  are class lookups that key their rule tables, not attribute reads, and
  keras_hub exports no public name for most of them. Importing them here would
  make the core import keras_hub.
- Attributes a module sets and reads on its own objects (`self._x`).

Checked against Keras 3.15 and keras_hub 0.32 (TensorFlow and JAX backends).

```python
from keras_net2net import _keras

struct = _keras.inputs_struct(model)  # {"token_ids": ..., ...} for a backbone
for layer in _keras.sublayers(model):
    ...
```
"""

import keras

# -- keras.ops operation classes -------------------------------------------------
# The rules table is keyed by operation class (`keras.ops.add(x, y)` records a
# `keras.src.ops.numpy.Add` node). Keras exports the functions, not the
# classes, so the modules that define them are read here.
from keras.src.ops import core as ops_core
from keras.src.ops import image as ops_image
from keras.src.ops import math as ops_math
from keras.src.ops import nn as ops_nn
from keras.src.ops import numpy as ops_numpy

# Keras' global state (deferred variables) and stateless scopes: the student is
# built without drawing initial values it would overwrite (keras_net2net.lazy).
from keras.src.backend.common import global_state as _global_state
from keras.src.backend.common.stateless_scope import in_stateless_scope  # noqa: F401

# The backend-independent base class of `keras.Variable`: inline.py patches its
# `value` property while tracing, to catch reads of a sublayer's weight.
from keras.src.backend.common.variables import Variable as VARIABLE_BASE  # noqa: F401

# A `from_config` in unsafe mode: a carried Lambda layer's config holds its
# function's bytecode, which safe mode refuses (keras.saving exports no scope).
from keras.src.saving.serialization_lib import SafeModeScope  # noqa: F401

try:  # The class of Functional models; a Sequential is not one.
    from keras.src.models.functional import Functional as _FUNCTIONAL
except ImportError:  # pragma: no cover - Keras moved it
    _FUNCTIONAL = None


# -- models and graphs -----------------------------------------------------------
def functional_of(model):
    """The Functional graph behind `model`: a Sequential keeps one, built on
    first call (`_functional`); a Functional model is its own. `model` itself
    where there is none (an unbuilt Sequential, a subclassed model)."""
    return getattr(model, "_functional", None) or model


def hidden_functional(model):
    """A Sequential's Functional graph (`_functional`), or None (unbuilt)."""
    return getattr(model, "_functional", None)


def is_functional(model):
    """Whether `model` is a Functional model (keras_hub backbones are)."""
    if _FUNCTIONAL is not None:
        return isinstance(model, _FUNCTIONAL)
    # Fallback: a Functional model is the one class with a node table.
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth") and \
        not isinstance(model, keras.Sequential)  # pragma: no cover


def inputs_struct(model):
    """The structure `model`'s inputs were given in (`_inputs_struct`): a dict
    for keras_hub backbones, a list, or one tensor; None where there is none
    (an unbuilt model). `Functional.input` returns it too, but raises on the
    models this is asked about before they are known to be Functional."""
    return getattr(functional_of(model), "_inputs_struct", None)


def nodes_by_depth(functional):
    """{depth: [Node]} of a Functional graph (`_nodes_by_depth`): the one
    ordering of its nodes, operations of `x + y` included, that Keras keeps."""
    return functional._nodes_by_depth


def inbound_nodes(operation):
    """The Nodes at which `operation` was called (`_inbound_nodes`)."""
    return operation._inbound_nodes


def sublayers(layer, include_self=False, recursive=True):
    """Every layer tracked by `layer`, depth first (`_flatten_layers`): unlike
    `layer.layers` it reaches sublayers of sublayers, and of any layer."""
    return layer._flatten_layers(include_self=include_self, recursive=recursive)


# -- deferred variables (keras_net2net.lazy) -------------------------------------
_DEFERRED_LIST = "uninitialized_variables"  # Keras' global list of deferred variables


def pending_variables():
    """The variables Keras holds to initialize at a stateless scope's exit."""
    return _global_state.get_global_attribute(_DEFERRED_LIST) or []


def defers_values(probe):
    """Whether `probe`, made in `StatelessScope(initialize_variables=False)`,
    deferred its value the way keras_net2net.lazy relies on: `_value` None,
    `_initializer` kept, `_deferred_initialize` callable."""
    return (probe._value is None and callable(probe._initializer)
            and callable(getattr(probe, "_deferred_initialize", None)))


def is_deferred(variable):
    """Whether `variable` holds no value yet, only its initializer."""
    return getattr(variable, "_value", 0) is None and \
        getattr(variable, "_initializer", None) is not None


def convert_for(variable, value):
    """`value` as a tensor of `variable`'s dtype, converted as `assign`
    converts it (float32 variables of a mixed_float16 model stay float32)."""
    return variable._convert_to_tensor(value, dtype=variable._dtype)


def initialize_deferred(variable, value=None):
    """Gives a deferred `variable` its first value: `value` (a tensor of its
    shape and dtype), or its own initializer's draw when None."""
    if value is not None:
        variable._initializer = lambda shape, dtype=None, **kwargs: value
    variable._deferred_initialize()


# -- optimizers (keras_net2net.optimizer_state, training.schedules) --------------
def learning_rate_object(optimizer):
    """The optimizer's learning rate as given (`_learning_rate`): its
    `LearningRateSchedule` object, where `optimizer.learning_rate` is the
    schedule's current value. None where there is none."""
    return getattr(optimizer, "_learning_rate", None)


def set_learning_rate_object(optimizer, rate):
    """Hands `optimizer` the schedule object itself, not a copy from config."""
    optimizer._learning_rate = rate


def distribution_strategy(optimizer):
    """The tf.distribute strategy the optimizer was made under, or None."""
    return getattr(optimizer, "_distribution_strategy", None)


def optimizer_variables(optimizer):
    """All the optimizer's variables, globals and slots, in creation order."""
    return optimizer._variables


def optimizer_trainable_variables(optimizer):
    """The model variables the optimizer was built on, in slot order."""
    return optimizer._trainable_variables


def optimizer_holds(optimizer, variable):
    """Whether the optimizer was built on `variable` (has slots for it)."""
    return optimizer._var_key(variable) in optimizer._trainable_variables_indices


def slot_index(optimizer, variable):
    """The index of `variable`'s slots in each of the optimizer's slot lists."""
    return optimizer._get_variable_index(variable)


# -- attention layers ------------------------------------------------------------
def attention_key_dense(layer):
    """A MultiHeadAttention's key projection (an EinsumDense), or None."""
    return getattr(layer, "_key_dense", None)


def attention_projections(layer):
    """A MultiHeadAttention's query, key and value projections (EinsumDenses)."""
    return [layer._query_dense, layer._key_dense, layer._value_dense]


def attention_output_dense(layer):
    """A MultiHeadAttention's output projection (an EinsumDense)."""
    return layer._output_dense


def attention_output_shape(layer):
    """A MultiHeadAttention's `output_shape` argument, as it keeps it."""
    return layer._output_shape


def attention_axes(layer):
    """The axes a MultiHeadAttention attends over, resolved at build."""
    return layer._attention_axes


# -- keras_hub blocks ------------------------------------------------------------
def self_attention(layer):
    """A keras_hub transformer block's self-attention layer."""
    return layer._self_attention_layer


def cross_attention(layer):
    """A keras_hub TransformerDecoder's cross-attention layer, or None."""
    return getattr(layer, "_cross_attention_layer", None)


def query_dense(attention):
    """A keras_hub attention layer's query projection (an EinsumDense)."""
    return attention._query_dense


# -- keras.applications layers ---------------------------------------------------
def application_layer(module, name):
    """A layer class that a keras.applications model defines without
    exporting it (ConvNeXt's LayerScale), or None where this Keras lacks it."""
    import importlib

    try:
        return getattr(importlib.import_module(f"keras.src.applications.{module}"), name)
    except (ImportError, AttributeError):  # pragma: no cover - older Keras
        return None
