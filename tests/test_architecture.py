"""The import contracts in setup.cfg ([importlinter]) hold, and they can fail;
no module imports another module's private names.

import-linter reads the source statically (no TensorFlow import), so both
checks take a second or two. (tests/test_keras_internals.py: private Keras
attributes are read in keras_net2net/_keras.py only.)
"""

import ast
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("importlinter")

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _lint(root):
    """lint-imports on the package under `root` with the project's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
         " sys.exit(lint_imports_command())", "--no-cache", str(ROOT / "setup.cfg")],
        cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and "0 broken" in result.stdout


def test_a_wrong_way_import_breaks_a_contract(tmp_path):
    shutil.copytree(ROOT / "keras_net2net", tmp_path / "keras_net2net",
                    ignore=shutil.ignore_patterns("__pycache__"))
    base = tmp_path / "keras_net2net" / "rules" / "base.py"
    base.write_text(base.read_text() + "\nfrom keras_net2net.training import config\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Growth rules never import training" in result.stdout
    assert "BROKEN" in result.stdout


def test_a_core_module_importing_hub_breaks_a_contract(tmp_path):
    """keras_hub support plugs in through keras_net2net.makers: a core module
    that imports the hub package again (as expand.py once did) fails."""
    shutil.copytree(ROOT / "keras_net2net", tmp_path / "keras_net2net",
                    ignore=shutil.ignore_patterns("__pycache__"))
    expand = tmp_path / "keras_net2net" / "expand.py"
    expand.write_text(expand.read_text() + "\nfrom keras_net2net import hub\n")
    result = _lint(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "The core never imports keras_net2net.hub" in result.stdout
    assert "BROKEN" in result.stdout


def test_the_core_loads_hub_only_once_keras_hub_is_imported():
    """Importing and running the core imports no keras_net2net.hub module;
    importing keras_hub and growing a keras_hub model loads it (by name,
    through keras_net2net.makers)."""
    pytest.importorskip("keras_hub")
    code = textwrap.dedent("""
        import sys
        import keras
        import keras_net2net as n2n
        from keras_net2net import expand, makers
        x = keras.Input((4,))
        m = keras.Model(x, keras.layers.Dense(2)(keras.layers.Dense(3, name="h")(x)))
        n2n.expand_model(m, widen=2.0)
        n2n.explain_model(m)
        loaded = sorted(n for n in sys.modules if n.startswith("keras_net2net.hub"))
        assert not loaded and "keras_hub" not in sys.modules, loaded
        import keras_hub
        assert makers.maker_for(m) is makers.CLONE
        assert "keras_net2net.hub.backbone" in sys.modules
        b = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=1, num_heads=2,
                                          hidden_dim=8, intermediate_dim=16,
                                          max_sequence_length=8)
        assert type(makers.maker_for(b)).__name__ == "BackboneMaker"
        print("ok")
    """)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), \
        result.stdout[-1000:] + result.stderr[-2000:]


def test_no_import_cycle_among_package_modules():
    """Function-level imports count too (grimp reads them all)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("keras_net2net")
    cycles = sorted({tuple(sorted((a, b))) for a in graph.modules
                     for b in graph.find_modules_directly_imported_by(a)
                     if b.startswith("keras_net2net") and
                     graph.chain_exists(importer=b, imported=a)})
    assert not cycles, cycles


def _private_imports(source, modules):
    """`from keras_net2net.x import _name` in `source` where `_name` is not a
    package module (`_keras`, `_lazy_exports` are package-private modules,
    made to be imported by the package; a private function or class is not)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("keras_net2net"):
            found.extend(f"from {node.module} import {a.name}" for a in node.names
                         if a.name.startswith("_") and not a.name.startswith("__")
                         and f"{node.module}.{a.name}" not in modules)
    return found


def _package_modules():
    names = set()
    for path in (ROOT / "keras_net2net").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_no_module_imports_another_modules_private_names():
    """A name another module needs is public; `module._name` reads are caught
    by tests/test_keras_internals.py."""
    modules = _package_modules()
    bad = [f"{path.relative_to(ROOT)}: {text}"
           for path in sorted((ROOT / "keras_net2net").rglob("*.py"))
           for text in _private_imports(path.read_text(), modules)]
    assert not bad, bad
    assert _private_imports("from keras_net2net.rules.merge import _operands\n", modules)
    assert not _private_imports("from keras_net2net import _keras\n", modules)
