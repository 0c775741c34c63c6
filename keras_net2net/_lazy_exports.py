"""Package attributes imported on first use (PEP 562).

`import keras_net2net` (or one of its packages) must not load Keras and
TensorFlow: the binaries import their package to define and check flags, and
`--help` should answer before TensorFlow's ~5 s start. A package's public
names are imported the first time they are read.
"""

import importlib


def attach(package, exports):
    """Returns `(__getattr__, __dir__)` for a package's lazy public names.

    Args:
        package: the package's `__name__`.
        exports: {public name: "module" or "module:attribute"}; a name not
            listed that is a submodule of the package is imported as one, as
            an eager `__init__` that imported it would have made it readable.

    Returns:
        The two module-level functions to assign in the package's `__init__`.

    Example:
    >>> __getattr__, __dir__ = attach(__name__, {"expand_model":
    ...                                          "keras_net2net.expand:expand_model"})
    """
    module_globals = importlib.import_module(package).__dict__

    def __getattr__(name):
        target = exports.get(name)
        if target is None:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(
                    f"module {package!r} has no attribute {name!r}") from None
        module_name, _, attribute = target.partition(":")
        value = importlib.import_module(module_name)
        if attribute:
            value = getattr(value, attribute)
        module_globals[name] = value  # Later reads skip __getattr__.
        return value

    def __dir__():
        return sorted(set(module_globals) | set(exports))

    return __getattr__, __dir__
