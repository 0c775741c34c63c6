"""How a binary starts: flags first, TensorFlow later, a quiet console.

Each binary defines and checks its flags before anything imports TensorFlow,
so `--help`, `--helpshort` and a bad flag answer in about a second. Modules
that load TensorFlow are bound with `lazy_module` and imported when `main`
first uses them.

Quiet by default, loud on request:
- TensorFlow's C++ start-up lines (written before absl's C++ logging starts,
  so `TF_CPP_MIN_LOG_LEVEL` does not reach them in TF 2.19+) and its C++ log
  lines are dropped from stderr, unless the user set `TF_CPP_MIN_LOG_LEVEL`.
- Python INFO lines of other libraries (TFDS, absl) are dropped and TFDS
  progress bars are off (`TQDM_DISABLE`), unless `--verbosity`/`-v` is
  given; the project's own INFO lines and every warning stay.
The library (`import keras_net2net`) changes none of this: only the
binaries' `run_main` does.
"""

import contextlib
import importlib.util
import logging as std_logging
import os
import re
import sys
import threading

from absl import app
from absl import flags
from absl import logging

# A C++ log line of TensorFlow/XLA: "I0000 00:00:1796402640.48 3632 port.cc:153] ...".
# Before absl's C++ logging starts, the seconds field holds the epoch time.
_TF_LOG_LINE = re.compile(rb"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
# Lines TensorFlow prints around its C++ log lines without their prefix.
_TF_LOG_EXTRA = (b"WARNING: All log messages before absl::InitializeLog() is called",
                 b"To enable the following instructions:")
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lazy_module(name):
    """Returns module `name`, imported when one of its attributes is first read.

    The recipe of `importlib.util.LazyLoader`: a binary binds its TensorFlow
    modules at module level as usual, and they load only once `main` runs.

    Args:
        name: the module's full name.

    Returns:
        The module (already imported, or lazily loading).
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def is_tensorflow_log_line(line):
    """Whether a line of stderr (bytes) is one of TensorFlow's C++ log lines."""
    return bool(_TF_LOG_LINE.match(line)) or line.startswith(_TF_LOG_EXTRA)


@contextlib.contextmanager
def tensorflow_log_lines_dropped():
    """Drops TensorFlow's C++ log lines from this process's stderr.

    TensorFlow writes them from C++ straight to file descriptor 2, where no
    Python logging setting reaches them. Inside the context, Python's
    `sys.stderr` (and absl's handler) write to the real stderr directly, and
    descriptor 2 is a pipe whose lines a thread forwards there, TensorFlow's
    C++ log lines left out. So Python's own lines (absl logging in the same
    format included) are never filtered.
    """
    sys.stderr.flush()
    original = os.dup(2)
    python_stderr = open(os.dup(original), "w", buffering=1,
                         encoding=sys.stderr.encoding, errors="backslashreplace")
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_forward, args=(read_end, original),
                            name="stderr-filter", daemon=True)
    pump.start()
    absl_handler = logging.get_absl_handler().python_handler
    saved_stderr, saved_stream = sys.stderr, absl_handler.stream
    sys.stderr = python_stderr
    if saved_stream is saved_stderr:
        absl_handler.stream = python_stderr
    try:
        yield
    finally:
        sys.stderr = saved_stderr
        if absl_handler.stream is python_stderr:
            absl_handler.stream = saved_stream
        python_stderr.close()
        os.dup2(original, 2)  # Closes the pipe's write end: the pump ends.
        pump.join(timeout=5)
        os.close(original)


def _forward(read_end, target):
    pending = b""
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines
                            if not is_tensorflow_log_line(line))
            if kept:
                os.write(target, kept)
    if pending and not is_tensorflow_log_line(pending):
        os.write(target, pending)


class _ProjectInfoOnly(std_logging.Filter):
    """Keeps warnings and errors, and INFO lines of keras_net2net itself."""

    def filter(self, record):
        return (record.levelno >= std_logging.WARNING
                or record.pathname.startswith(_PACKAGE_DIR + os.sep))


def quiet_unless_verbose(flag_values=flags.FLAGS, project_info=True):
    """After flags are parsed: other libraries' INFO lines stay off unless
    `--verbosity`/`-v` was given.

    Args:
        flag_values: the parsed flags.
        project_info: keep keras_net2net's own INFO lines (a binary whose
            progress is printed lines passes False: only warnings remain).

    Returns:
        True when the console is quiet.
    """
    if flag_values["verbosity"].present:
        return False
    if project_info:
        logging.get_absl_handler().addFilter(_ProjectInfoOnly())
    else:
        logging.set_verbosity(logging.WARNING)
    return True


def list_flags_in_short_help(flag_values=flags.FLAGS):
    """Makes --helpshort list every keras_net2net flag of the program.

    absl's --helpshort shows the main module's flags; a console script's
    main module defines none, so the package's flags are declared there.
    Call it just before `app.run`.

    Args:
        flag_values: the `FlagValues` the flags are defined on.
    """
    for module, module_flags in flag_values.flags_by_module_dict().items():
        if module.startswith("keras_net2net"):
            for flag in module_flags:
                flag_values.register_key_flag_for_module(sys.argv[0], flag)


def require_tensorflow_backend(program=None):
    """Stops a binary started under a Keras backend other than TensorFlow.

    The binaries train, evaluate and expand through `tf.distribute`, `tf.data`
    and TFDS, which hold TensorFlow tensors only. Growth itself runs on every
    backend: call `keras_net2net.expand_model` from Python instead.

    Args:
        program: the name to put in the message; default `sys.argv[0]`'s.

    Raises:
        SystemExit: with the message (exit status 1) when
            `keras.config.backend()` is not "tensorflow".
    """
    import keras

    backend = keras.config.backend()
    if backend == "tensorflow":
        return
    program = program or os.path.basename(sys.argv[0] or "net2net")
    sys.exit(
        f"{program}: error: Expected the TensorFlow Keras backend: the "
        f"keras-net2net binaries train and read data with tf.distribute and "
        f"tf.data. Received: KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '(unset)')}"
        f", so Keras runs on {backend!r}. Fix: run with KERAS_BACKEND=tensorflow "
        f"(or unset it and set \"backend\": \"tensorflow\" in ~/.keras/keras.json)"
        f"; to grow a model under {backend}, call keras_net2net.expand_model "
        f"from Python.")


def run_main(define_flags, main, project_info=True):
    """Console entry point of a binary: its flags, short help, absl's
    `app.run`, a quiet console; the TensorFlow backend is checked once the
    flags are good.

    Args:
        define_flags: `define_flags()` of the binary (must not load
            TensorFlow).
        main: `main(argv)` of the binary.
        project_info: as for `quiet_unless_verbose`.
    """
    quiet_cpp = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # TFDS draws its bars with tqdm, which reads its defaults from TQDM_*
    # when it is imported: set before anything can import it.
    bars_off = "TQDM_DISABLE" not in os.environ
    os.environ.setdefault("TQDM_DISABLE", "1")
    define_flags()
    list_flags_in_short_help()

    def checked_main(argv):
        if not quiet_unless_verbose(project_info=project_info) and bars_off:
            del os.environ["TQDM_DISABLE"]
        require_tensorflow_backend()
        return main(argv)

    with contextlib.ExitStack() as stack:
        if quiet_cpp:
            stack.enter_context(tensorflow_log_lines_dropped())
        app.run(checked_main)
