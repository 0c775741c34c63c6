import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess
import sys

import pytest


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
