r"""What `make demo` runs: net2net-compare on the bundled digits.

Trains a small CNN teacher (4/8/16 channels), grows it wider, deeper and
both, and races each student against the same architecture from random
weights, over 3 seeds. Takes a few minutes on 2 CPU cores and needs no
network: the digits ship with scikit-learn.

    python -m keras_net2net.bin.demo --model_dir=runs/demo

Every net2net-compare flag works here too; only the defaults differ.
"""

import time

from absl import app
from absl import flags

from keras_net2net.bin import compare
from keras_net2net.bin import flags as shared_flags

FLAGS = flags.FLAGS

# Chosen to finish in minutes on 2 CPU cores; see BUILD_NOTES.md for figures.
DEMO_DEFAULTS = {
    "model_dir": "runs/demo",
    "data_dir": "runs/tensorflow_datasets",
    "teacher_widths": ["4", "8", "16"],
    "teacher_steps": 1000,
    "student_steps": 600,
    "eval_every": 20,
    "seeds": 3,
}


def main(argv):
    began = time.perf_counter()
    compare.main(argv)
    print(f"demo finished in {time.perf_counter() - began:.0f} s; open "
          f"{FLAGS.model_dir}/curves.png for the learning curves.")


def run():
    """Entry point of `python -m keras_net2net.bin.demo`."""
    compare.define_flags()
    for name, value in DEMO_DEFAULTS.items():
        FLAGS.set_default(name, value)
    shared_flags.list_flags_in_short_help()
    app.run(main)


if __name__ == "__main__":
    run()
