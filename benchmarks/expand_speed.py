"""Expansion time and peak memory against the floor, side by side in one run.

The floor is what any grower must at least do: build the student's graph
(`keras.models.clone_model(student)`) and write its weights
(`set_weights(student.get_weights())`). Prints expand / floor ratios.

    python benchmarks/expand_speed.py --models ResNet50,ResNet101,ResNet152 --widen 2.0
"""

import argparse
import functools
import gc
import os
import sys
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402

import keras_net2net as n2n  # noqa: E402


def measure(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return out, seconds, peak


def floor(student):
    clone = keras.models.clone_model(student)
    clone.set_weights(student.get_weights())
    return clone


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="ResNet50,ResNet101,ResNet152")
    parser.add_argument("--widen", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    print(f"{'model':<12} {'params':>12} {'expand s':>9} {'floor s':>8} {'ratio':>6} "
          f"{'expand MiB':>10} {'floor MiB':>9} {'mem ratio':>9}")
    # One untimed round first: the first clone/expand in a process pays one-off
    # costs (imports, tracing) that belong to neither side.
    warm = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3))
    floor(n2n.expand_model(warm, widen=args.widen, seed=0, verify=False))
    for name in args.models.split(","):
        teacher = getattr(keras.applications, name)(weights=None, input_shape=(args.size, args.size, 3))
        student, t_expand, m_expand = measure(functools.partial(
            n2n.expand_model, teacher, widen=args.widen, seed=0, verify=False))
        _, t_floor, m_floor = measure(functools.partial(floor, student))
        print(f"{name:<12} {student.count_params():>12,} {t_expand:>9.2f} {t_floor:>8.2f} "
              f"{t_expand / t_floor:>6.2f} {m_expand:>10.1f} {m_floor:>9.1f} "
              f"{m_expand / m_floor:>9.2f}", flush=True)
        del teacher, student
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
