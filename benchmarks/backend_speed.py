"""Expansion time per Keras backend, as a ratio to that backend's own floor.

Keras picks its backend once per process, so each backend runs this script
again in a subprocess (`--child`). In each, after an untimed warm-up on a small
model, it times:

- expand: `expand_model(teacher, widen=..., verify=False)`;
- floor: what any grower must at least do on that backend, build the student's
  graph and write its weights (`expand_speed.floor`);
- call: a first forward pass of the student at a new batch size, like the
  call that `expand_model` always makes to check the student runs. Under JAX an eager
  first call compiles every op for its new shapes, so this column tells the
  backend's first-call cost from the rewriter's own.

    python benchmarks/backend_speed.py                          # ResNet50 x2
    python benchmarks/backend_speed.py --backends jax --model MobileNetV2 --widen 1.5

Backends whose package is not installed are listed as skipped.

Under JAX, every layer built with a random initializer compiles
`jax.random.uniform` for its weight shape; with JAX's default partitionable
threefry some shapes take many seconds each on CPU. `--env
JAX_THREEFRY_PARTITIONABLE=0` shows the same run without that cost (expand and
floor both build layers, so both pay it).
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

BACKENDS = ("tensorflow", "jax", "torch")


def _timed(fn):
    """Seconds of fn(), from cold compile caches: JAX caches each op compiled
    for a shape (and each initializer's random kernel), so a section timed
    after another would find the shapes they share already compiled."""
    import keras

    if keras.config.backend() == "jax":
        import jax

        jax.clear_caches()
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def child(args):
    """Times one model in this process's backend; prints one JSON line."""
    import keras
    import numpy as np

    import keras_net2net as n2n
    from benchmarks.expand_speed import floor
    from tests import factories

    # Untimed: imports and one-off tracing belong to neither side.
    warm = factories.residual()
    floor(n2n.expand_model(warm, widen=args.widen, seed=0, verify=False))

    shape = (args.size, args.size, 3)
    teacher = getattr(keras.applications, args.model)(weights=None, input_shape=shape)
    student, t_expand = _timed(lambda: n2n.expand_model(
        teacher, widen=args.widen, seed=0, verify=False))
    _, t_floor = _timed(lambda: floor(student))
    # A batch size other than the one expand_model's check used (4).
    x = np.random.default_rng(0).uniform(0, 255, (3,) + shape).astype("float32")
    _, t_call = _timed(lambda: student(x, training=False))
    print(json.dumps({
        "backend": keras.config.backend(), "model": args.model,
        "params": student.count_params(), "expand_s": t_expand,
        "floor_s": t_floor, "call_s": t_call}), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--model", default="ResNet50")
    parser.add_argument("--widen", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the children, e.g. "
                        "JAX_THREEFRY_PARTITIONABLE=0 (repeatable)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    print(f"{args.model} x{args.widen} at {args.size}x{args.size}"
          + "".join(f", {item}" for item in args.env))
    print(f"{'backend':<11} {'params':>12} {'expand s':>9} {'floor s':>8} {'ratio':>6} "
          f"{'call s':>7} {'expand/(floor+call)':>20}")
    for backend in args.backends.split(","):
        if importlib.util.find_spec(backend) is None:
            print(f"{backend:<11} skipped: {backend} is not installed")
            continue
        env = {**os.environ, "JAX_PLATFORMS": "cpu",
               **dict(item.split("=", 1) for item in args.env), "KERAS_BACKEND": backend}
        result = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--child", f"--model={args.model}",
             f"--widen={args.widen}", f"--size={args.size}"],
            cwd=ROOT, env=env, capture_output=True, text=True)
        if result.returncode:
            print(f"{backend:<11} failed:\n{result.stderr[-2000:]}")
            continue
        r = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{backend:<11} {r['params']:>12,} {r['expand_s']:>9.2f} {r['floor_s']:>8.2f} "
              f"{r['expand_s'] / r['floor_s']:>6.2f} {r['call_s']:>7.2f} "
              f"{r['expand_s'] / (r['floor_s'] + r['call_s']):>20.2f}", flush=True)


if __name__ == "__main__":
    main()
