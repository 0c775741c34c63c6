"""Grows every keras.applications model and prints a table per model.

For each architecture (weights=None, logits): widen x1.5, widen x2.0 and
widen x1.5 + deepen at a few inner conv layers; logits compared on random
inputs, with every weight that starts at a constant (biases, norm scales and
shifts, moving statistics, LayerScale) randomised by tests/factories.py.

    python benchmarks/zoo.py                 # all models
    python benchmarks/zoo.py --only ResNet50,MobileNetV3Small --plans widen1.5
"""

import argparse
import inspect
import os
import sys
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_net2net as n2n  # noqa: E402
from tests import factories  # noqa: E402

# Smallest input each family accepts (others take 32x32).
MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71, "NASNetMobile": 32,
            "NASNetLarge": 32}


def application_names():
    return sorted(n for n, f in vars(keras.applications).items()
                  if n[0].isupper() and callable(f))


def build(name, size=None, spread=0.2):
    fn = getattr(keras.applications, name)
    size = size or MIN_SIZE.get(name, 32)
    kwargs = dict(weights=None, input_shape=(size, size, 3))
    if "classifier_activation" in inspect.signature(fn).parameters:
        kwargs["classifier_activation"] = None
    if "include_preprocessing" in inspect.signature(fn).parameters:
        kwargs["include_preprocessing"] = True
    # Constant-initialised weights randomised, moderately so that the deepest
    # nets stay well conditioned enough for a float32 comparison to mean
    # something.
    return factories.randomize_state(fn(**kwargs), seed=1, spread=spread)


def inner_convs(model, k=3):
    """k conv layers spread through the model, for deepen plans."""
    from keras_net2net.deepen import deepenable

    names = [l.name for l in model._flatten_layers() if deepenable(l)
             and not isinstance(l, keras.layers.Dense)]
    picks = np.linspace(1, len(names) - 2, k).astype(int)
    return [names[i] for i in picks]


PLANS = {
    "widen1.5": lambda m: dict(widen=1.5),
    "widen2.0": lambda m: dict(widen=2.0),
    "widen1.5+deepen": lambda m: dict(widen=1.5, deepen=inner_convs(m)),
}


def as_float64(model):
    """The same model computing in float64, to tell float32 rounding from a
    wrong transform."""
    def clone(layer):
        if not isinstance(layer, keras.layers.Layer):
            return layer  # keras.ops operations compute in their inputs' dtype
        config = layer.get_config()
        config["dtype"] = "float64"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights([w.astype("float64") for w in model.get_weights()])
    return copy


def float64_error(model, kwargs, x):
    """The same growth done on a float64 copy of the teacher: a float32 error
    above tolerance is rounding if this one is tiny (some of these nets with
    random BatchNorm statistics differ by 40% between their own float32 and
    float64 runs)."""
    teacher = as_float64(model)
    student = n2n.expand_model(teacher, seed=0, verify=False, **kwargs)
    y = np.asarray(teacher(x.astype("float64"), training=False))
    z = np.asarray(student(x.astype("float64"), training=False))
    y32 = np.asarray(model(x, training=False), dtype=np.float64)
    scale = np.max(np.abs(y))
    # How much this teacher amplifies rounding: its own float32 error, scaled
    # from float32's unit roundoff to float64's.
    floor = float(np.max(np.abs(y32 - y)) / scale) * (2.0**-53 / 2.0**-24)
    return float(np.max(np.abs(y - z)) / scale), floor


def run(name, plan, tolerance=1e-5, spread=0.2):
    model = build(name, spread=spread)
    kwargs = PLANS[plan](model)
    x = np.random.default_rng(0).uniform(0, 255, (2,) + tuple(model.input_shape[1:])).astype("float32")
    tracemalloc.start()
    t0 = time.perf_counter()
    student, report = n2n.expand_model(model, seed=0, verify=False, return_report=True, **kwargs)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    y, z = np.asarray(model(x, training=False)), np.asarray(student(x, training=False))
    rel = float(np.max(np.abs(y - z)) / np.max(np.abs(y)))
    rel64, floor64 = float64_error(model, kwargs, x) if rel > tolerance else (None, None)
    # Kept: frozen by a barrier, or skipped (a width the group cannot take).
    skipped = {s["request"]: s["reason"] for s in report.skipped}
    kept = [dict(g, reasons=g["reasons"] or [skipped.get(g["name"], "skipped")])
            for g in report.groups if g["new_width"] == g["old_width"]]
    hidden_kept = [g for g in kept if not any(
        r.startswith(("model input", "model output")) for r in g["reasons"])]
    return dict(model=name, plan=plan, params_before=report.params_before,
                params_after=report.params_after,
                widened=sum(g["new_width"] > g["old_width"] for g in report.groups),
                kept=len(kept), hidden_kept=hidden_kept, max_rel=rel, max_rel64=rel64, floor64=floor64,
                seconds=seconds, peak_mib=peak)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated model names")
    parser.add_argument("--plans", default=",".join(PLANS), help="comma-separated plans")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    parser.add_argument("--spread", type=float, default=0.2,
                        help="constant-initialised scales drawn from [1 - s, 1 + s], "
                             "shifts with std 0.6 s")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else application_names()
    print(f"{'model':<22} {'plan':<16} {'params before':>13} {'after':>11} {'grown':>5} "
          f"{'kept':>4} {'max rel err':>11} {'expand s':>8} {'peak MiB':>8}")
    failures = 0
    for name in names:
        for plan in args.plans.split(","):
            try:
                r = run(name, plan, args.tolerance, args.spread)
            except Exception as e:  # report and go on with the sweep
                failures += 1
                print(f"{name:<22} {plan:<16} ERROR {type(e).__name__}: {str(e)[:200]}")
                continue
            # Above tolerance in float32, the transform is judged in float64,
            # against that teacher's own rounding amplification.
            bad = r["max_rel"] > args.tolerance and not (
                r["max_rel64"] is not None
                and r["max_rel64"] <= max(1e-9, 1000 * r["floor64"]))
            failures += bad
            print(f"{r['model']:<22} {r['plan']:<16} {r['params_before']:>13,} "
                  f"{r['params_after']:>11,} {r['widened']:>5} {r['kept']:>4} "
                  f"{r['max_rel']:>11.2e} {r['seconds']:>8.2f} {r['peak_mib']:>8.1f}"
                  + (f"  float64: {r['max_rel64']:.1e} (rounding floor {r['floor64']:.1e})"
                     if r["max_rel64"] is not None else "")
                  + ("  FAIL" if bad else ""), flush=True)
            for g in r["hidden_kept"][:3]:
                print(f"    kept {g['name']} ({g['old_width']}): {g['reasons'][0]}")
            if len(r["hidden_kept"]) > 3:
                print(f"    ... and {len(r['hidden_kept']) - 3} more hidden groups kept")
            keras.backend.clear_session()
    print(f"{failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
