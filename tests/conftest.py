import os
import tempfile

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TF's own CPU Conv kernels take only NHWC; its oneDNN kernels take NCHW too.
# TF 2.21 starts with oneDNN off on the build machine (an AVX2 CPU), and then
# no channels_first conv runs on CPU at all: switch it on before TF loads.
# Subprocesses and notebook kernels inherit it. (tests/test_keras_quirks.py)
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Hypothesis caches source constants under ./.hypothesis even without a
# database: keep the source tree clean.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                      os.path.join(tempfile.gettempdir(), "keras-net2net-hypothesis"))

import subprocess
import sys

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "keras_quirk: reproduces a Keras/TensorFlow behaviour in plain Keras "
        "(not keras-net2net); fails when that behaviour changes")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory):
    """A TFDS data_dir with the bundled digits built once per test worker."""
    from keras_net2net.data import inputs
    data_dir = str(tmp_path_factory.mktemp("tfds"))
    inputs.make_input_fns("digits", 64, data_dir=data_dir)
    return data_dir


def run_module(module, *args, timeout=180, env=None):
    """Runs `python -m module args` in a fresh process; returns the result."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env=full_env)


@pytest.fixture
def run_binary():
    """`run_module` as a fixture, for tests of the absl binaries."""
    return run_module


@pytest.fixture
def run_main(capfd, monkeypatch):
    """Runs a binary's `main` in this process, as `python -m module args`
    would once its flags are parsed, without a new process's ~5-9 s of
    TensorFlow start-up.

    For tests of what `main` does with good flags (its outputs, its errors on
    bad files): flag errors, device set-up and kills stay in real processes
    (`run_binary`). The binary's flags are defined on a fresh `FlagValues`
    and parsed; `main` runs with it as the module's `FLAGS`. A `sys.exit`
    message goes to stderr with status 1, as Python does at exit.

    Returns:
        `run(module, *args)` -> `subprocess.CompletedProcess`.
    """
    import importlib

    from absl import flags

    def run(module, *args):
        binary = importlib.import_module(module)
        flag_values = flags.FlagValues()
        binary.define_flags(flag_values)
        argv = [module, *map(str, args)]
        flag_values(argv)
        monkeypatch.setattr(binary, "FLAGS", flag_values)
        capfd.readouterr()
        returncode = 0
        try:
            binary.main(argv[:1])
        except SystemExit as stop:
            if isinstance(stop.code, str):
                print(stop.code, file=sys.stderr)
            returncode = stop.code if isinstance(stop.code, int) else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(argv, returncode, out, err)

    return run


# The modules with the longest tests (notebooks, binaries in several
# processes, the JAX worker) run first, each kept whole so that its module
# fixtures are set up once. xdist's worksteal hands each worker a contiguous
# half of the collection and steals from the tails, so at the end a long test
# left the other worker idle; ordered so, a fresh clone's suite took 662 s
# instead of 697 s (BUILD_NOTES.md).
HEAVY_FIRST = ("test_tutorials.py", "training/test_grow_in_run.py", "test_backends.py",
               "test_fuzz.py", "bin/test_train.py", "hub/test_t5.py")


def pytest_collection_modifyitems(config, items):
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    # A renamed module would quietly lose its early slot (a slower suite).
    missing = [n for n in HEAVY_FIRST if not os.path.exists(os.path.join(tests_dir, n))]
    if missing:
        raise pytest.UsageError(
            f"Expected every HEAVY_FIRST module in tests/conftest.py to exist. "
            f"Received: {', '.join(missing)} missing. Fix: rename it there too.")
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}

    def order(item):
        name = os.path.relpath(str(item.path), tests_dir).replace(os.sep, "/")
        return rank.get(name, len(HEAVY_FIRST))

    items.sort(key=order)  # stable: every other test keeps pytest's order


# Files a run may leave in the source tree only if git ignores them: a test or
# tutorial that writes a model, report or plot beside the code is a bug.
_ARTIFACTS = (".keras", ".h5", ".json", ".png", ".npz", ".npy", ".csv", ".txt", ".tfrecord",
              ".weights.h5", ".ckpt", ".index")


def _untracked_artifacts():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"],
                             cwd=root, capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # not a git checkout: nothing to compare
    return {line[3:] for line in out.splitlines()
            if line.startswith("??") and line.endswith(_ARTIFACTS)}


def pytest_sessionstart(session):
    if not hasattr(session.config, "workerinput"):  # the xdist controller, or no xdist
        session.config._artifacts_before = _untracked_artifacts()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "_artifacts_before", None)
    after = _untracked_artifacts() if before is not None else None
    if after is not None and after - before:
        session.config._left_in_tree = sorted(after - before)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    left = getattr(config, "_left_in_tree", None)
    if left:
        terminalreporter.write_line(
            "FAILED: the run left files in the source tree (write under tmp_path or an "
            f"ignored folder): {left}", red=True)


@pytest.fixture
def float64():
    """Layers built inside the test compute in float64 (the global dtype policy,
    which `keras.config.set_floatx` alone no longer changes once set)."""
    import keras

    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(old)


def run_workers(module, args, count=2, timeout=300):
    """Runs `python -m module args` as `count` multi-worker processes on
    localhost (TF_CONFIG), waits for all; returns their (stdout, stderr)
    after checking each exited 0."""
    import json
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    workers = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    processes = []
    for index in range(count):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "2"}
        processes.append(subprocess.Popen([sys.executable, "-m", module, *map(str, args)],
                                          env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs
