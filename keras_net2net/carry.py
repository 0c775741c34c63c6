"""How each teacher layer becomes a student layer.

Growth edits a layer's config only where its widths change; everything else is
carried over as faithfully as Keras allows, so that layers whose config does
not round-trip (custom layers, Lambdas over module functions, regularizers
without `get_config`) never break a growth that does not touch them:

- a layer that holds no variables and sees exactly the shapes it saw in the
  teacher is reused as it is (Lambda, pixel shuffle, patch extraction): it has
  no state, so sharing it cannot couple the teacher's training to the
  student's;
- any other layer is re-created from its config (`get_config` /
  `from_config`), with regularizers, constraints and initializers that cannot
  be serialised set aside and carried over as the same objects. Where the
  constructor rejects the base arguments Keras puts in every config (`name`,
  `trainable`, `dtype`: an `__init__` without `**kwargs`), the layer is made
  from the config arguments its `__init__` accepts and given the teacher's
  name, trainability and dtype policy after: the same constructor call the
  user made;
- a layer that cannot be re-created is reused if it holds no variables and
  must not change; otherwise `UnsupportedModelError` names it, before any
  work is done.

A config holds names, not objects, so a copy made from it can compute
something else than its teacher: `Dense(activation=keras.ops.gelu)` (tanh
approximation) comes back with `keras.activations.gelu` (exact), and an
adapted `Normalization` comes back normalising with mean 0 and variance 1
(Keras derives the tensors it normalises with from its variables, in
`finalize_state`). Once the student's weights are written, `carry_state`
gives each copied layer the teacher's own callables, and moves what Keras
keeps outside variables (vocabularies, derived tensors) the way Keras' own
saving moves it: `save_own_variables`/`load_own_variables` and
`save_assets`/`load_assets`.
"""

import contextlib
import functools
import inspect
import tempfile
import types

import keras
import numpy as np

from keras_net2net import _keras
from keras_net2net import config_repairs
from keras_net2net import errors

_OBJECT_KINDS = (keras.regularizers.Regularizer, keras.constraints.Constraint,
                 keras.initializers.Initializer)
# Arguments keras.layers.Layer.__init__ accepts besides its named ones.
_LAYER_KWARGS = {"input_dim", "input_shape", "batch_input_shape", "batch_size", "weights"}


class CannotRecreate(Exception):
    """Internal: why a layer could not be re-created from its config."""


def student_layer(layer, reuse, edit=None):
    """The student's layer for teacher `layer`.

    Args:
        layer: the teacher's layer.
        reuse: the layer may be shared with the student (no variables, same
            shapes, same config).
        edit: None, or a function config -> config that applies growth.

    Returns:
        The layer object to call in the student.

    Raises:
        CannotRecreate: with the reason, when a layer that must be copied
            cannot be.
    """
    if reuse:
        return layer
    try:
        return recreate(layer, edit)
    except CannotRecreate:
        if edit is None and not layer.variables:
            return layer  # Stateless and unchanged: as safe as the reuse above.
        raise


def recreate(layer, edit=None):
    """A new, unbuilt layer of the same class from `layer`'s (edited) config."""
    with _set_aside(layer) as carried:
        try:
            config = layer.get_config()
        except Exception as e:  # Any error of user code: reported, not raised as is.
            raise CannotRecreate(f"its get_config() raised {_describe(e)}") from e
    config = detached(config)
    if edit is not None:
        config = edit(config)
    cls = type(layer)
    # The config comes from the user's in-memory teacher, not from a file, so
    # a Lambda's Python function may be rebuilt from it.
    with _keras.SafeModeScope(False):
        try:
            new = cls.from_config(config)
        except Exception as first:  # noqa: BLE001 - retried below, then reported
            new = config_repairs.from_config(cls, config) or \
                _from_own_functions(layer, cls, config, first)
    for attr, obj in carried.items():
        setattr(new, attr, obj)
    return new


def _from_own_functions(layer, cls, config, first):
    """`cls.from_config` with the teacher's own functions in place of the
    names the config holds for them (a user's activation function that Keras
    cannot find by name): a constructor takes the function as the user
    passed it."""
    own = {}
    for key, value in config.items():
        try:
            held = getattr(layer, key, None) if value is not None else None
        except Exception:  # noqa: BLE001 - a property of user code
            held = None
        if _plain_function(held):
            own[key] = held
    if own:
        try:
            return cls.from_config({**config, **own})
        except Exception:  # noqa: BLE001 - the first error is the one reported
            pass
    return _from_accepted_arguments(layer, cls, config, first)


def detached(config):
    """A copy of a config that shares no state with the layer it came from.

    Some layers put their own variables in their config (keras_hub's D-FINE
    decoder returns its `upsampling_factor` weight): a layer made from it
    would track the teacher's variable as its own, and writing the student's
    weights would write into the teacher. Variables become NumPy copies of
    their values (what the constructor was given to initialise them from);
    dicts, lists and tuples are copied, so editing the config cannot edit a
    structure the teacher holds; anything else is the same object.

    Example:

    ```python
    config = detached(layer.get_config())
    ```
    """
    if isinstance(config, keras.Variable):
        return np.array(config.numpy())
    if type(config) is dict:
        return {k: detached(v) for k, v in config.items()}
    if type(config) in (list, tuple):
        return type(config)(detached(v) for v in config)
    return config


def check_own_variables(teacher, student):
    """Raises if the student holds a variable of the teacher: writing the
    student's weights would change the teacher.

    Raises:
        UnsupportedModelError: naming the variable.
    """
    mine = {id(v): v for v in teacher.variables}
    for variable in student.variables:
        if id(variable) in mine:
            raise errors.UnsupportedModelError(
                f"Expected a student that shares no variable with the teacher. Received: "
                f"the student holds the teacher's variable {variable.path!r}, which a layer "
                f"made from the teacher's config took as its own. Fix: keep that layer out "
                f"of get_config(), or register a rule for it with "
                f"keras_net2net.register_rule. The teacher is unchanged.")


def _from_accepted_arguments(layer, cls, config, first):
    """`cls(**config)` with only the arguments its `__init__` accepts; the
    base ones it rejects (name, trainable, dtype) are set on the instance."""
    params = inspect.signature(cls.__init__).parameters
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params.values())
    dropped = [k for k in config if k not in params]
    if takes_kwargs or not dropped or not _looks_like_base_arguments(dropped):
        raise CannotRecreate(f"its from_config() raised {_describe(first)}") from first
    try:
        new = cls(**{k: v for k, v in config.items() if k in params})
    except Exception as e:  # noqa: BLE001
        raise CannotRecreate(
            f"its from_config() raised {_describe(first)}, and so did its constructor "
            f"with the arguments it accepts: {_describe(e)}") from e
    new.name = layer.name
    new.trainable = layer.trainable
    new.dtype_policy = layer.dtype_policy
    return new


def _looks_like_base_arguments(keys):
    base = set(inspect.signature(keras.layers.Layer.__init__).parameters) | _LAYER_KWARGS
    return set(keys) <= base


@contextlib.contextmanager
def _set_aside(layer):
    """Temporarily sets attributes holding regularizers, constraints or
    initializers that cannot be serialised to None, so that `get_config`
    works; yields {attribute: object} to carry into the student. The
    teacher's attributes are restored however the block exits."""
    carried = {}
    for attr, value in list(vars(layer).items()):
        if isinstance(value, _OBJECT_KINDS) and not _serialisable(value):
            carried[attr] = value
    try:
        for attr in carried:
            object.__setattr__(layer, attr, None)
        yield carried
    finally:
        for attr, value in carried.items():
            object.__setattr__(layer, attr, value)


def _serialisable(obj):
    try:
        keras.saving.serialize_keras_object(obj)
        return True
    except Exception:  # noqa: BLE001 - any failure means "carry the object"
        return False


def _describe(e):
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(e).__name__}: {first[:200]}"


def carry_state(teacher, student):
    """Makes the copied layer `student` compute what `teacher` computes, where
    its config alone does not (see the module docstring). Call it once the
    student's weights are written; sublayers (an RNN's cell, a custom layer's
    Dense) are paired with the teacher's by position and class.

    Args:
        teacher: the teacher's layer.
        student: its copy in the student, made by `recreate`.

    Example:

    ```python
    copy = carry.recreate(dense)
    copy.build(dense.input.shape)
    copy.set_weights(dense.get_weights())
    carry.carry_state(dense, copy)
    assert copy.activation is dense.activation
    ```
    """
    if student is teacher:
        return
    pairs = _sublayer_pairs(teacher, student)
    for old, new in pairs:
        _carry_callables(old, new)
    for old, new in pairs:
        if callable(getattr(old, "finalize_state", None)):
            _carry_preprocessing_state(old, new)


def _sublayer_pairs(teacher, student):
    olds = list(_keras.sublayers(teacher, include_self=True))
    news = list(_keras.sublayers(student, include_self=True))
    if len(olds) == len(news) and all(type(a) is type(b) for a, b in zip(olds, news)):
        return list(zip(olds, news))
    return [(teacher, student)]


def _carry_callables(old, new):
    """Sets on `new` every plain function `old` holds (an activation, a Lambda's
    function, a TextVectorization's split) where `new` holds another one: the
    config named it, and the name may resolve to another function. Methods,
    and attributes the class itself defines (Keras wraps `build` per
    instance), are the layer's own code, not arguments it was given; a
    function that closes over the teacher layer would tie the two together."""
    own = vars(new)
    for attr, value in list(vars(old).items()):
        if not _plain_function(value) or hasattr(type(old), attr):
            continue
        current = own.get(attr)
        if current is value or not _plain_function(current) or _closes_over(value, old):
            continue
        object.__setattr__(new, attr, value)


def _plain_function(value):
    return isinstance(value, (types.FunctionType, types.BuiltinFunctionType, functools.partial))


def _closes_over(fn, obj):
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            if cell.cell_contents is obj:
                return True
        except ValueError:  # an empty cell
            continue
    return False


def _carry_preprocessing_state(old, new):
    """A preprocessing layer (it has `finalize_state`) keeps state outside
    its variables: the tensors it computes with (Normalization), a lookup
    table (StringLookup, TextVectorization). Moved as saving the teacher and
    loading it into the student would: assets (vocabularies) first, then
    its own variables, whose loading re-derives the rest. Calling
    `finalize_state` directly is not safe: Discretization recomputes its bins
    from an adapt() summary the copy does not have."""
    if callable(getattr(old, "save_assets", None)) and callable(getattr(new, "load_assets", None)):
        with tempfile.TemporaryDirectory() as path:
            old.save_assets(path)
            new.load_assets(path)
    store = {}
    old.save_own_variables(store)
    try:
        new.load_own_variables(store)
    except ValueError:
        # Variables of other shapes (a registered rule grew it): re-load the
        # student's own, already written, values.
        store = {}
        new.save_own_variables(store)
        new.load_own_variables(store)


def refusal(path, layer, why_changes, reason):
    """The typed error for a layer growth must change but cannot re-create."""
    init = inspect.signature(type(layer).__init__).parameters
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in init.values())
    fixes = ["implement get_config() returning every __init__ argument"]
    if not takes_kwargs:
        fixes.append("accept **kwargs in __init__ and pass them to super().__init__()")
    fixes.append("or register a rule for it with keras_net2net.register_rule")
    return errors.UnsupportedModelError(
        f"Expected every layer that growth copies to be re-creatable from its config. "
        f"Received: layer {path!r} of class {type(layer).__name__}, which {why_changes}, "
        f"but {reason}. Fix: {', '.join(fixes)}. The teacher is unchanged.")


def build_failure(e, path=None, class_name=None):
    """The typed error for a student graph that Keras cannot build."""
    where = f"layer {path!r} ({class_name}) raised " if path else ""
    return errors.UnsupportedModelError(
        f"Expected the student to build from the teacher's layers. Received: "
        f"{where}{_describe(e)}. A layer whose width changed cannot take its new input. Fix: "
        f"register a rule for it with keras_net2net.register_rule, or keep the layers "
        f"around it at their width (widen={{name: width}}). The teacher is unchanged.")
