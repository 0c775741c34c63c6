"""The binaries as a user first meets them: fast flags, a quiet console."""

import os
import re
import subprocess
import sys
import time

import pytest
from absl import flags

from keras_net2net.bin import console

BINARIES = ("train", "expand", "compare", "evaluate", "demo")
# Flag answers come before TensorFlow loads (~5-9 s here): a generous bound.
FLAG_ANSWER_SECONDS = 3.0
# A TensorFlow C++ log line, or absl's Python line in the same format.
LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ", re.M)


def _run(module, *args, env=None, timeout=120, cwd=None):
    """Runs a binary as a user's shell would: no TF_CPP_MIN_LOG_LEVEL set."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TF_CPP_MIN_LOG_LEVEL", "TQDM_DISABLE")}
    began = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", f"keras_net2net.bin.{module}", *args],
                            capture_output=True, text=True, timeout=timeout,
                            env={**clean, **(env or {})}, cwd=cwd)
    return result, time.perf_counter() - began


@pytest.mark.parametrize("binary", BINARIES)
def test_helpshort_answers_before_tensorflow_loads(binary):
    result, seconds = _run(binary, "--helpshort")
    assert "flags:" in result.stdout and "--dataset" in result.stdout, result.stdout[-2000:]
    assert seconds <= FLAG_ANSWER_SECONDS, f"--helpshort took {seconds:.1f} s"
    assert not LOG_LINE.search(result.stderr), result.stderr[-2000:]
    assert "absl::InitializeLog" not in result.stderr


@pytest.mark.parametrize("binary", BINARIES)
def test_a_bad_flag_answers_before_tensorflow_loads(binary, tmp_path):
    result, seconds = _run(binary, "--synthetic_classes=x", cwd=tmp_path)
    assert result.returncode == 1
    assert "FATAL Flags parsing error: flag --synthetic_classes=x" in result.stderr, \
        result.stderr[-2000:]
    assert seconds <= FLAG_ANSWER_SECONDS, f"the flag error took {seconds:.1f} s"
    assert not LOG_LINE.search(result.stderr), result.stderr[-2000:]
    assert not os.listdir(tmp_path)


def test_demo_console_has_progress_and_no_library_chatter(digits_dir, tmp_path):
    """A tiny `make demo` at default verbosity: its own progress lines and
    table, no TensorFlow/TFDS log lines, bars or tf.data cache warnings."""
    result, _ = _run("demo", f"--model_dir={tmp_path}", f"--data_dir={digits_dir}",
                     "--parts=image", "--dataset=digits", "--arms=wider",
                     "--teacher_widths=2,4,4", "--teacher_steps=6", "--budgets=10,14,18",
                     "--warmup_steps=2", "--rewarm_steps=2", "--eval_every=0", "--seeds=1",
                     "--lr_sweep=1", "--eval_examples=100", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seed 0: teacher, 6 steps" in result.stdout
    assert "demo finished in" in result.stdout
    # The small model alone is on by default, its figures in the headline.
    assert "small model alone" in result.stdout and '"grown_gain_equal_compute"' in (
        result.stdout)
    console_text = result.stdout + result.stderr
    assert not LOG_LINE.search(console_text), console_text[-3000:]
    for chatter in ("did not fully read the dataset being cached", "absl::InitializeLog",
                    "Downloading and preparing", "\x1b[", "it/s]", "examples/s]"):
        assert chatter not in console_text, chatter


def test_tensorflow_log_lines_are_dropped_and_python_lines_kept(capfd):
    with console.tensorflow_log_lines_dropped():
        os.write(2, b"I0000 00:00:1796402640.482397    3632 port.cc:153] oneDNN on.\n"
                    b"WARNING: All log messages before absl::InitializeLog() is called"
                    b" are written to STDERR\n"
                    b"E0000 00:00:1796402703.352624    4133 cuda_platform.cc:52] cuInit\n"
                    b"a C library's own line\n")
        print("I1204 16:45:03.353269 1405 runner.py:129] step 0 eval", file=sys.stderr)
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "cuInit" not in err and "InitializeLog" not in err
    assert "a C library's own line" in err
    assert "runner.py:129] step 0 eval" in err  # Python's lines are never filtered.


def test_quiet_unless_verbose_keeps_loud_runs_loud():
    loud, quiet = flags.FlagValues(), flags.FlagValues()
    for values, argv in ((loud, ["prog", "-v", "0"]), (quiet, ["prog"])):
        flags.DEFINE_integer("verbosity", -1, "", short_name="v", flag_values=values)
        values(argv)
    handler = console.logging.get_absl_handler()
    before = list(handler.filters)
    try:
        assert not console.quiet_unless_verbose(loud)
        assert handler.filters == before
        assert console.quiet_unless_verbose(quiet)
        assert len(handler.filters) == len(before) + 1
    finally:
        handler.filters[:] = before


def test_importing_the_package_loads_neither_keras_nor_tensorflow():
    # comparison_options holds `Arm`, so a study can name its arms before TF.
    code = ("import sys, keras_net2net, keras_net2net.bin.flags, keras_net2net.training.config,"
            " keras_net2net.training.comparison_options;"
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.strip() == "[]", result.stderr[-2000:]
