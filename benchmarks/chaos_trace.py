"""Where a float32 comparison stops meaning anything: block by block, the
float64 student's error next to the teacher's own float32-vs-float64 error.

EfficientNetV2L with random weights doubles rounding errors every few blocks,
so its float32 logits differ from its own float64 logits by ~100%. Growing it
is still exact: the student's float64 error starts at 1e-15 and grows at the
same rate as the teacher's own rounding, ~1e-9 times it, until both saturate.

    python benchmarks/chaos_trace.py --model EfficientNetV2L --widen 2.0
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_net2net as n2n  # noqa: E402
from benchmarks import zoo  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="EfficientNetV2L")
    parser.add_argument("--widen", type=float, default=2.0)
    parser.add_argument("--every", type=int, default=6, help="every k-th residual add")
    args = parser.parse_args()
    teacher = zoo.build(args.model)
    teacher64 = zoo.as_float64(teacher)
    student64 = n2n.expand_model(teacher64, widen=args.widen, seed=0, verify=False)
    names = [l.name for l in teacher.layers if l.name.endswith("add")][::args.every]
    names.append(teacher.layers[-1].name)

    def taps(model):
        return keras.Model(model.inputs[0], [model.get_layer(n).output for n in names])

    x = np.random.default_rng(0).uniform(0, 255, (2,) + tuple(teacher.input_shape[1:]))
    print(f"{'layer':<24} {'student64 vs teacher64':>22} {'teacher32 vs teacher64':>22}")
    for name, a, b, c in zip(names, taps(teacher64)(x), taps(student64)(x),
                             taps(teacher)(x.astype("float32"))):
        a = np.asarray(a)
        # g(j) = j for j < n: the student's first n channels are the teacher's.
        b = np.asarray(b)[..., :a.shape[-1]]
        c = np.asarray(c, dtype=np.float64)
        scale = np.max(np.abs(a))
        print(f"{name:<24} {np.max(np.abs(a - b)) / scale:>22.2e} "
              f"{np.max(np.abs(a - c)) / scale:>22.2e}")


if __name__ == "__main__":
    main()
