"""Runs every tutorial notebook top to bottom, as a reader would.

Each notebook is its own test (so pytest-xdist spreads them over workers)
and runs in a fresh "python3" kernel of this interpreter, with a temporary
directory as its working directory: whatever a tutorial writes stays out of
the repository, and the committed notebook is only read.

The committed notebooks are built at full size. To fit the suite's CI time
budget (15 minutes on 2 cores), the test runs them smaller, as papermill
would: each tutorial has one cell tagged "parameters" holding its run sizes
(steps, epochs, examples), and `QUICK[name]` is inserted after it as an
"injected-parameters" cell. Every cell and code path still runs; only the
sizes shrink. `test_quick_sizes_override_the_parameters_cell` keeps the
overrides in step with the notebooks.
"""

import ast
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
PARAMETERS, INJECTED = "parameters", "injected-parameters"
# Run sizes for test_notebook_runs_top_to_bottom, replacing each notebook's
# parameters cell (see the module docstring).
QUICK = {
    "01_widen_a_cnn": "TEACHER_EPOCHS = 3\nFINE_TUNE_EPOCHS = 1",
    "02_deepen_and_widen_a_resnet": "TEACHER_EPOCHS = 2\nFINE_TUNE_EPOCHS = 1",
    "03_net2net_vs_scratch": (
        "TEACHER_STEPS = 40\nBUDGETS = (20, 40, 60)\n"
        "SEEDS = 2  # seed 1 takes the rates chosen on seed 0\n"
        "LR_SWEEP = (1.0,)  # one rate; the choice on the selection half still runs\n"
        "COMPARE_TEACHER_STEPS, COMPARE_BUDGETS, COMPARE_SEEDS = 40, (30, 60, 90), 1"),
    "04_grow_keras_applications": "PROBE_IMAGES = 8",
    "05_distributed_fine_tuning": (
        "TEACHER_STEPS = 10\nSTUDENT_STEPS = 10\nMORE_STEPS = 5\nEVAL_EVERY, LOG_EVERY = 5, 5"),
    "06_grow_a_transformer": (
        "TEACHER_STEPS, TEACHER_EVERY = 20, 10\nFINE_TUNE_STEPS, FINE_TUNE_EVERY = 10, 5\n"
        "TEST_EXAMPLES = 256  # verify_data is its first 256"),
    "07_grow_during_training": (
        "GROW_AT, TRAIN_STEPS = 20, 40  # the loss table reads steps up to GROW_AT + 20\n"
        "EVAL_EVERY = 20\nTEACHER_EPOCHS, STUDENT_EPOCHS = 1, 1"),
    "08_grow_a_keras_hub_gpt2": (
        "TRAIN_SEQUENCES, TEST_SEQUENCES = 256, 64\nTEACHER_EPOCHS = 2\nMORE_EPOCHS = 1"),
}


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
    # Once every cell has run, a graceful shutdown only waits ~3 s for
    # TensorFlow's teardown in the kernel.
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                     shutdown_kernel="immediate",
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


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]


def _parameters_cells(nb):
    return [index for index, cell in enumerate(nb.cells)
            if PARAMETERS in cell.metadata.get("tags", [])]


def _inject_quick_sizes(nb, name):
    """Inserts QUICK[name] right after the notebook's parameters cell."""
    [index] = _parameters_cells(nb)
    cell = nbformat.v4.new_code_cell(QUICK[name], metadata={"tags": [INJECTED]})
    nb.cells.insert(index + 1, cell)


def _assigned_names(source):
    """Names bound by the top-level assignments of `source`."""
    names = set()
    for statement in ast.parse(source).body:
        targets = (statement.targets if isinstance(statement, ast.Assign)
                   else [getattr(statement, "target", None)])
        names.update(node.id for target in targets if target is not None
                     for node in ast.walk(target) if isinstance(node, ast.Name))
    return names


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
    _inject_quick_sizes(nb, path.stem)
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
    committed = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    assert _cells(committed) == _cells(build.to_notebook(source))


@pytest.mark.parametrize("name", EXPECTED)
def test_quick_sizes_override_the_parameters_cell(name):
    """One parameters cell per notebook, no other cell reassigns its names,
    and QUICK[name] assigns only those names (a renamed or shadowed size
    would otherwise run at full size)."""
    nb = nbformat.read(TUTORIALS / f"{name}.ipynb", as_version=4)
    [index] = _parameters_cells(nb)
    assert nb.cells[index].cell_type == "code"
    parameters = _assigned_names(nb.cells[index].source)
    for cell in nb.cells[index + 1:]:
        if cell.cell_type == "code":
            shadowed = _assigned_names(cell.source) & parameters
            assert not shadowed, (f"Expected only the parameters cell to assign "
                                  f"{sorted(shadowed)}. Received: a later cell\n{cell.source}")
    quick = ast.parse(QUICK[name]).body
    assert quick and all(isinstance(s, (ast.Assign, ast.AnnAssign)) for s in quick), (
        f"Expected QUICK[{name!r}] to be assignments only. Received: {QUICK[name]!r}")
    missing = _assigned_names(QUICK[name]) - parameters
    assert not missing, f"Expected {sorted(missing)} in {name}'s parameters cell"


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
                              "# %%\n\n# %% tags=[\"parameters\"]\nSTEPS = 5\n"
                              "# %%\nprint(x)\n")
    assert cells == [("markdown", "# Title\n\ntext", []), ("code", "x = 1", []),
                     ("code", "STEPS = 5", ["parameters"]), ("code", "print(x)", [])]
    with pytest.raises(ValueError, match="line 2"):
        build.parse_cells("# %% [markdown]\nnot a comment\n")
    with pytest.raises(ValueError, match="line 1"):
        build.parse_cells("# %% tags=parameters\nx = 1\n")
