"""Growth on every installed Keras 3 backend, and models crossing between them.

Keras picks its backend once per process, so each other backend runs
tests/backend_worker.py in one subprocess (KERAS_BACKEND=jax, and torch when
it is installed), with TensorFlow made unimportable there. The worker grows
one model per rule family (backend_worker.FAMILIES), saves the students and
loads the ones grown here under TensorFlow; this process then loads the
worker's students. One worker run serves every test of its backend, also
across pytest-xdist workers (see `_once`).

The training binaries stay on TensorFlow: a student grown under JAX is
fine-tuned here by net2net-train, and a binary started under JAX stops with a
message naming KERAS_BACKEND.
"""

import contextlib
import fcntl
import importlib.util
import json
import os
import subprocess
import sys

import keras
import pytest

from tests import backend_worker as worker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each backend with the package that provides it. PyPI's torch wheel pulls
# ~3 GB of CUDA wheels, so the test extra leaves torch out: its leg runs
# wherever a (CPU) torch is installed and skips elsewhere.
BACKENDS = {"jax": "jax", "torch": "torch"}
FAMILIES = list(worker.FAMILIES)
RTOL = 1e-5
TRAIN = "keras_net2net.bin.train"
WORKER_ENV = {
    "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "2",
    # Every layer built with a random initializer compiles jax.random.uniform
    # for its weight shape. With JAX's default partitionable threefry one such
    # compile took 3-30 s of CPU here (per shape, e.g. a 3x3x8x12 kernel);
    # without, 0.5 s. Only the random streams differ, which no test relies on.
    "JAX_THREEFRY_PARTITIONABLE": "0",
    # The worker compiles ~470 tiny XLA programs, one per op and shape; LLVM's
    # optimisation passes were ~25% of its time (28.5 s -> 22 s measured).
    "XLA_FLAGS": "--xla_backend_optimization_level=0",
}


def _installed(backend):
    return importlib.util.find_spec(BACKENDS[backend]) is not None


def _backends():
    return [pytest.param(b, marks=pytest.mark.skipif(
        not _installed(b), reason=f"{BACKENDS[b]} is not installed "
        f"(pip install {BACKENDS[b]} runs this leg)")) for b in BACKENDS]


@contextlib.contextmanager
def _locked(path):
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _once(tmp_path_factory, name, fn):
    """Runs fn(directory) once per test run, even across xdist workers.

    xdist's workers share their basetemp's parent; a plain run uses its own
    basetemp. The first caller builds the directory, the others wait on the
    lock and read it.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    directory = base / f"backends_{name}"
    with _locked(base / f"backends_{name}.lock"):
        if not (directory / "done").exists():
            directory.mkdir(exist_ok=True)
            fn(directory)
            (directory / "done").touch()
    return directory


def _grow_under_tensorflow(directory):
    """Each family grown in this (TensorFlow) process, saved for the others."""
    figures = {}
    for family in FAMILIES:
        worker._safely(figures, family, lambda: worker.grow_and_save(
            str(directory), "tensorflow", family))
    (directory / "results.json").write_text(json.dumps(figures))


@pytest.fixture
def tensorflow_students(tmp_path_factory):
    return _once(tmp_path_factory, "tensorflow", _grow_under_tensorflow)


@pytest.fixture
def backend_run(request, tensorflow_students, tmp_path_factory):
    """(backend, worker output directory, worker results) for `backend`."""
    backend = request.param

    def run_worker(directory):
        env = {**os.environ, **WORKER_ENV, "KERAS_BACKEND": backend}
        result = subprocess.run(
            [sys.executable, "-m", "tests.backend_worker", "--out", str(directory),
             "--load", str(tensorflow_students)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        (directory / "log.txt").write_text(
            f"exit status {result.returncode}\n{result.stdout}\n{result.stderr}")

    directory = _once(tmp_path_factory, backend, run_worker)
    results_file = directory / "results.json"
    assert results_file.exists(), (directory / "log.txt").read_text()[-5000:]
    results = json.loads(results_file.read_text())
    assert results["backend"] == backend
    return backend, directory, results


def _ok(entry):
    assert "error" not in entry, entry["error"]
    return entry


backend_param = pytest.mark.parametrize("backend_run", _backends(), indirect=True)


@backend_param
@pytest.mark.parametrize("family", FAMILIES)
def test_family_grows_exactly(backend_run, family):
    backend, _, results = backend_run
    figures = _ok(results["grown"][family])
    assert figures["grown"], figures
    assert figures["rel"] <= RTOL and figures["report_rel"] <= RTOL, (backend, figures)
    assert figures["groups_explained"] > 0
    assert figures["optimizer_slots"] > 0  # expand_optimizer ran on this backend


@backend_param
@pytest.mark.parametrize("family", FAMILIES)
def test_student_saved_under_tensorflow_loads_there(backend_run, family):
    _, _, results = backend_run
    loaded = _ok(results["loaded"][family])
    assert loaded["max_abs"] <= RTOL * loaded["max_y"], loaded


@backend_param
@pytest.mark.parametrize("family", FAMILIES)
def test_student_saved_there_loads_under_tensorflow(backend_run, family):
    backend, directory, results = backend_run
    _ok(results["grown"][family])
    loaded = worker.check_load(str(directory), f"{backend}_{family}")
    assert loaded["max_abs"] <= RTOL * loaded["max_y"], loaded


@backend_param
def test_rewriter_never_asks_for_tensorflow(backend_run):
    _, _, results = backend_run
    # The guard works: it refuses, and it blames an import from the rewriter.
    assert results["guard_controls"] == {"refused": True, "blamed": True}
    assert not results["tensorflow_in_sys_modules"]
    # Keras may ask (its LazyModule probes whether TensorFlow is available);
    # keras_net2net, or anyone else, may not.
    for attempt in results["tensorflow_imports"]:
        assert not attempt["from_rewriter"], attempt
        assert f"{os.sep}keras{os.sep}src{os.sep}" in attempt["file"], attempt


@backend_param
def test_student_grown_there_fine_tunes_with_net2net_train(
        backend_run, run_binary, digits_dir, tmp_path):
    _, _, results = backend_run
    digits = _ok(results["digits"])
    assert digits["teacher_accuracy"] >= 0.9, digits
    # Same function: at most a near-tie among 1797 digits may flip.
    assert digits["student_accuracy"] == pytest.approx(
        digits["teacher_accuracy"], abs=1e-3), digits
    run = tmp_path / "tuned"
    result = run_binary(TRAIN, f"--model_dir={run}", f"--data_dir={digits_dir}",
                        f"--init_model={digits['path']}", "--train_steps=4",
                        "--log_every=1", "--global_batch_size=32",
                        "--learning_rate=1e-4", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    history = json.loads((run / "history.json").read_text())
    losses = [entry["loss"] for entry in history["train"]]
    # An untrained 10-class net starts near ln 10 = 2.3; the grown student
    # keeps the teacher's skill from the first step on.
    assert len(losses) == 4 and max(losses) < 1.0, losses
    assert history["eval"][-1]["accuracy"] >= 0.85, history["eval"]
    tuned = keras.models.load_model(run / "model.keras")
    assert tuned.count_params() == keras.models.load_model(
        digits["path"]).count_params()


def test_family_grows_exactly_under_tensorflow(tensorflow_students):
    figures = json.loads((tensorflow_students / "results.json").read_text())
    for family in FAMILIES:
        entry = _ok(figures[family])
        assert entry["grown"] and entry["rel"] <= RTOL, (family, entry)


@pytest.mark.skipif(not _installed("jax"), reason="jax is not installed")
def test_binary_under_another_backend_stops_naming_keras_backend(run_binary, tmp_path):
    result = run_binary(TRAIN, f"--model_dir={tmp_path / 'run'}",
                        env={"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Expected the TensorFlow Keras backend" in result.stderr
    assert "Received: KERAS_BACKEND=jax" in result.stderr
    assert "Fix: run with KERAS_BACKEND=tensorflow" in result.stderr
    assert not (tmp_path / "run").exists()
