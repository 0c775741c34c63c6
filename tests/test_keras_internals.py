"""Private Keras attributes are read in keras_net2net/_keras.py only, and no
module reads another object's private attributes (tests/test_architecture.py
checks that none imports another module's private names).

The package's source is read with `ast`, without importing it, so a Keras
upgrade that moves an internal breaks `_keras.py` and nothing else, and the
check takes well under a second.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_net2net"
INTERNALS = "_keras.py"

# Imports of Keras / keras_hub internals allowed outside _keras.py, by where
# they are and what they import (see _keras.py's docstring): keras_hub family
# modules import the layer classes that key their rule tables (class lookups,
# not attribute reads; keras_hub exports no public name for most of them).
_ALLOWED_SOURCE_IMPORTS = (
    ("hub/", "keras_hub.src.models."),
    ("hub/", "keras_hub.src.layers.modeling"),
)

# Private attribute reads allowed outside _keras.py: (module, expression),
# each with its reason beside it.
_ALLOWED_READS = set()  # none left: hub drivers call Rebuilder.write_weights

_OWN = ("self", "cls")


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _source_imports(tree):
    """(line, module) of every `keras.src` / `keras_hub.src` import."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.extend((node.lineno, n) for n in names
                     if n.startswith(("keras.src", "keras_hub.src")))
    return found


def _private_reads(tree):
    """(line, expression) of every `x._name` and `getattr(x, "_name")` where
    x is not self or cls: a read of someone else's private attribute."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in _OWN):
                found.append((node.lineno, f"{ast.unparse(node.value)}.{node.attr}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("getattr", "hasattr", "setattr", "delattr") and \
                len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and \
                isinstance(node.args[1].value, str) and _private(node.args[1].value):
            target = ast.unparse(node.args[0])
            if target not in _OWN:
                found.append((node.lineno, f"{target}.{node.args[1].value}"))
    return found


def _relative(path):
    return path.relative_to(PACKAGE).as_posix()


def test_only_keras_internals_module_imports_keras_source():
    bad = []
    for path in _modules():
        rel = _relative(path)
        if rel == INTERNALS:
            continue
        for line, module in _source_imports(ast.parse(path.read_text())):
            if not any(rel.startswith(where) and module.startswith(prefix)
                       for where, prefix in _ALLOWED_SOURCE_IMPORTS):
                bad.append(f"{rel}:{line}: import of {module}")
    assert not bad, "read Keras internals through keras_net2net/_keras.py:\n" + "\n".join(bad)


def test_only_keras_internals_module_reads_private_attributes():
    bad = []
    for path in _modules():
        rel = _relative(path)
        if rel == INTERNALS:
            continue
        for line, expression in _private_reads(ast.parse(path.read_text())):
            if (rel, expression) not in _ALLOWED_READS:
                bad.append(f"{rel}:{line}: {expression}")
    assert not bad, ("private attributes of other objects (Keras' or another module's) "
                     "are read through keras_net2net/_keras.py or made public:\n" +
                     "\n".join(bad))


def test_the_allowed_reads_are_still_there():
    """An exception that is no longer needed is taken off the list."""
    seen = {(_relative(p), e) for p in _modules()
            for _, e in _private_reads(ast.parse(p.read_text()))}
    assert not (_ALLOWED_READS - seen), sorted(_ALLOWED_READS - seen)


@pytest.mark.parametrize("source, kind", [
    ("import keras\nx = model._functional\n", "read"),
    ("y = getattr(layer, '_key_dense', None)\n", "read"),
    ("from keras.src.ops import numpy\n", "source"),
    ("from keras_net2net import rules\nrules.merge._operands(call)\n", "read"),
])
def test_the_checks_catch_a_violation(source, kind):
    tree = ast.parse(source)
    found = {"read": _private_reads, "source": _source_imports}[kind](tree)
    assert found, source


@pytest.mark.parametrize("source", [
    "self._x = 1\ny = self._x\n",
    "from keras_net2net import _keras\n",
    "x = obj.__name__\n",
])
def test_the_checks_let_allowed_code_pass(source):
    tree = ast.parse(source)
    assert not _private_reads(tree)
    assert not _source_imports(tree)
