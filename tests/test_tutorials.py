"""Runs every tutorial notebook top to bottom, as a reader would.

Each notebook is its own test (so pytest-xdist spreads them over workers)
and runs in a fresh "python3" kernel of this interpreter, with a temporary
directory as its working directory: whatever a tutorial writes stays out of
the repository, and the committed notebook is only read.
"""

import importlib.util
import json
import os
import pathlib
import re
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.ipynb"))
KERNEL_NAME = "python3"
EXPECTED = ["01_widen_a_cnn", "02_deepen_and_widen_a_resnet", "03_net2net_vs_scratch",
            "04_grow_keras_applications", "05_distributed_fine_tuning",
            "06_grow_a_transformer", "07_grow_during_training", "08_grow_a_keras_hub_gpt2"]


def _load_build():
    spec = importlib.util.spec_from_file_location("tutorials_build", TUTORIALS / "_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _kernel_env():
    # The package is importable in the kernel even when it is not installed
    # (e.g. pytest run from a plain checkout).
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path]))}


def _run(nb, workdir, kernel_name, timeout=600):
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute(env=_kernel_env())
    return nb


def _kernel_prefix(kernel_name, workdir):
    """sys.prefix of the interpreter the kernel `kernel_name` runs."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.prefix)")]
    _run(nb, workdir, kernel_name, timeout=120)
    return nb.cells[0].outputs[0]["text"].strip()


@pytest.fixture(scope="session")
def kernel_name(tmp_path_factory):
    """"python3", checked to run this interpreter (the project's venv).

    jupyter_client starts a spec whose argv is `python` with `sys.executable`,
    but a "python3" spec in the user's Jupyter directory may point elsewhere.
    If so, a private spec for this interpreter goes first on JUPYTER_PATH for
    the session; nothing is installed.
    """
    workdir = tmp_path_factory.mktemp("kernel_probe")
    here = os.path.realpath(sys.prefix)
    try:
        registered = os.path.realpath(_kernel_prefix(KERNEL_NAME, workdir))
    except Exception:  # e.g. a spec whose interpreter is gone or lacks ipykernel
        registered = None
    if registered == here:
        yield KERNEL_NAME
        return
    spec_dir = tmp_path_factory.mktemp("jupyter") / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (keras-net2net tests)", "language": "python"}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", os.pathsep.join(
            filter(None, [str(spec_dir.parents[1]), os.environ.get("JUPYTER_PATH")])))
        prefix = _kernel_prefix(KERNEL_NAME, workdir)
        assert os.path.realpath(prefix) == here, (
            f"Expected the {KERNEL_NAME!r} kernel to run {sys.executable}. "
            f"Received: a kernel with sys.prefix={prefix}")
        yield KERNEL_NAME


def _snapshot(directory):
    return {p: p.stat().st_mtime_ns for p in directory.rglob("*")
            if "__pycache__" not in p.parts}


def _images(nb):
    return [output for cell in nb.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, kernel_name, tmp_path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # run from a clean slate, not the saved outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    before = _snapshot(TUTORIALS)
    # Raises CellExecutionError, with the cell and its traceback, on failure.
    _run(nb, tmp_path, kernel_name)
    assert _images(nb), f"Expected {path.name} to draw at least one plot. Received: none"
    assert _snapshot(TUTORIALS) == before, "Expected the tutorial to write only to its cwd"


def test_every_tutorial_has_a_notebook_and_a_source():
    build = _load_build()
    assert [p.stem for p in NOTEBOOKS] == EXPECTED
    assert [p.stem for p in build.sources()] == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_matches_its_source(name):
    """The committed notebook was built from the current source (run
    `python tutorials/_build.py NAME` after editing the source)."""
    build = _load_build()
    source = TUTORIALS / "src" / f"{name}.py"
    expected = [(c.cell_type, c.source) for c in build.to_notebook(source).cells]
    committed = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == expected


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_has_outputs_and_shape(name):
    nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), "Expected every code cell executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert _images(nb), "Expected the saved outputs to include a plot"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.cells[-1].cell_type == "markdown"
    assert nb.cells[-1].source.startswith("## What to try next")
    # The backend is chosen before Keras (or TensorFlow, or the package) is
    # first imported.
    text = "\n".join(c.source for c in code)
    backend = text.find('os.environ["KERAS_BACKEND"] = "tensorflow"')
    first_import = re.search(r"^(import|from) (keras|tensorflow)", text, re.MULTILINE)
    assert 0 <= backend < first_import.start()
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME


def test_parse_cells_splits_code_and_markdown():
    build = _load_build()
    cells = build.parse_cells("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n"
                              "# %%\n\n# %%\nprint(x)\n")
    assert cells == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "print(x)")]
    with pytest.raises(ValueError, match="line 2"):
        build.parse_cells("# %% [markdown]\nnot a comment\n")
