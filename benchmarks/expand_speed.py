"""Expansion time and peak memory against the floor, side by side in one run.

The floor is what any grower must at least do: build the student's graph
(`keras.models.clone_model(student)`) and write its weights. Two floors:
"floor" assigns each weight from the student's variable directly (no extra
copy of the whole model), "floor+copy" goes through
`set_weights(student.get_weights())`, which first materialises every weight
as a NumPy array. Each figure is the best of --repeats runs (time and memory
taken from the same runs, each minimum on its own). Prints expand / floor
ratios.

    python benchmarks/expand_speed.py --models ResNet50,ResNet101,ResNet152 --widen 2.0

keras_hub backbones (`--hub`): a GPT-2-small-sized GPT2Backbone (124 M
parameters, random weights) grown x2 wide into a GPT2Backbone, against two
floors (time only: tracemalloc would slow the NumPy rewrite it watches):
building the student's class from its config and assigning its weights
("eager floor"), and the same build with its variables deferred, each given
its weight as first value ("deferred floor": what `expand_model` itself does
since `keras_net2net.lazy`, so the like-for-like ratio).

    python benchmarks/expand_speed.py --hub --repeats 1
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
    """Graph rebuilt, each weight assigned from its variable: no model-sized
    NumPy copy."""
    clone = keras.models.clone_model(student)
    for new, old in zip(clone.weights, student.weights):
        new.assign(old)
    return clone


def floor_with_copy(student):
    clone = keras.models.clone_model(student)
    clone.set_weights(student.get_weights())
    return clone


def best(fn, repeats):
    """(result of the last run, min seconds, min peak MiB) over `repeats` runs."""
    runs = [measure(fn) for _ in range(repeats)]
    return runs[-1][0], min(r[1] for r in runs), min(r[2] for r in runs)


def hub_floor(student):
    """The student's class built from its config, each weight assigned."""
    clone = type(student).from_config(student.get_config())
    for new, old in zip(clone.weights, student.weights):
        new.assign(old)
    return clone


def hub_floor_deferred(student):
    """The student's class built with deferred variables, each given its
    weight as its first value: no initial value drawn and overwritten."""
    from keras_net2net import lazy

    clone, made = lazy.build(type(student).from_config, student.get_config())
    for new, old in zip(clone.weights, student.weights):
        lazy.set_value(new, old)
    lazy.initialize_rest(clone.variables + made)
    return clone


def hub_main(args):
    import keras_hub

    teacher = keras_hub.models.GPT2Backbone(
        vocabulary_size=50257, num_layers=12, num_heads=12, hidden_dim=768,
        intermediate_dim=3072, max_sequence_length=1024)
    print(f"{'keras_hub model':<16} {'params':>12} {'student':>12} {'expand s':>9} "
          f"{'eager floor s':>13} {'ratio':>6} {'deferred floor s':>16} {'ratio':>6}")
    floors = {"eager": hub_floor, "deferred": hub_floor_deferred}
    timings = {"expand": [], **{name: [] for name in floors}}
    student = None
    for _ in range(args.repeats):  # interleaved: machine load hits all alike
        gc.collect()
        t0 = time.perf_counter()
        student = n2n.expand_model(teacher, widen=args.widen, seed=0, verify=False)
        timings["expand"].append(time.perf_counter() - t0)
        for name, fn in floors.items():
            gc.collect()
            t0 = time.perf_counter()
            fn(student)
            timings[name].append(time.perf_counter() - t0)
    best_of = {name: min(values) for name, values in timings.items()}
    t_expand = best_of["expand"]
    print(f"{'GPT2Backbone':<16} {teacher.count_params():>12,} {student.count_params():>12,} "
          f"{t_expand:>9.2f} {best_of['eager']:>13.2f} {t_expand / best_of['eager']:>6.2f} "
          f"{best_of['deferred']:>16.2f} {t_expand / best_of['deferred']:>6.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="ResNet50,ResNet101,ResNet152")
    parser.add_argument("--widen", type=float, default=2.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="samples per figure (best kept)")
    parser.add_argument("--hub", action="store_true",
                        help="keras_hub GPT-2-small x widen instead of --models")
    args = parser.parse_args()
    if args.hub:
        return hub_main(args)
    print(f"{'model':<12} {'params':>12} {'expand s':>9} {'floor s':>8} {'ratio':>6} "
          f"{'+copy s':>8} {'expand MiB':>10} {'floor MiB':>9} {'mem ratio':>9} {'+copy MiB':>9}")
    # One untimed round first: the first clone/expand in a process pays one-off
    # costs (imports, tracing) that belong to neither side.
    warm = keras.applications.MobileNetV3Small(weights=None, input_shape=(32, 32, 3))
    floor_with_copy(floor(n2n.expand_model(warm, widen=args.widen, seed=0, verify=False)))
    for name in args.models.split(","):
        teacher = getattr(keras.applications, name)(weights=None, input_shape=(args.size, args.size, 3))
        student, t_expand, m_expand = best(functools.partial(
            n2n.expand_model, teacher, widen=args.widen, seed=0, verify=False), args.repeats)
        _, t_floor, m_floor = best(functools.partial(floor, student), args.repeats)
        _, t_copy, m_copy = best(functools.partial(floor_with_copy, student), args.repeats)
        print(f"{name:<12} {student.count_params():>12,} {t_expand:>9.2f} {t_floor:>8.2f} "
              f"{t_expand / t_floor:>6.2f} {t_copy:>8.2f} {m_expand:>10.1f} {m_floor:>9.1f} "
              f"{m_expand / m_floor:>9.2f} {m_copy:>9.1f}", flush=True)
        del teacher, student
        keras.backend.clear_session()


if __name__ == "__main__":
    main()
