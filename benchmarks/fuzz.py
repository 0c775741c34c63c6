"""Fuzzes expand_model on random tiny models and prints what happened.

Every example must keep every output of its teacher (inference mode,
max|d|/max|y| <= 1e-5) and grow what its report says, or refuse with a typed
`Net2NetError` naming a layer; the teacher must never change (see
tests/fuzz_models.py). The first pass runs all examples and counts outcomes;
then each distinct failure is found again with the same seed and shrunk by
hypothesis to a minimal repro, printed as runnable source. Exits non-zero on
any failure, or when the share of examples preserved (not refused) is below
its floor (`fuzz_models.FLOORS`).

    python benchmarks/fuzz.py --examples 2000
    python benchmarks/fuzz.py --examples 300 --seed 7 --max_steps 14 --no-shrink
"""

import argparse
import collections
import json
import os
import re
import sys
import time
import traceback
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# channels_first convs on CPU need TF's oneDNN kernels (tests/conftest.py).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import keras  # noqa: E402
from hypothesis import HealthCheck  # noqa: E402
from hypothesis import Phase  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402
from hypothesis import settings  # noqa: E402

from tests import fuzz_models  # noqa: E402


def signature(error):
    """What makes two failures the same bug: the error type and where it was
    raised in the toolkit (or, for a broken property, which property)."""
    if isinstance(error, fuzz_models.FuzzFailure):
        head = re.split(r"['\d]", str(error), maxsplit=1)[0].strip()
        return f"FuzzFailure: {head}"
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "keras_net2net" in f.filename or "tests" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = f"{os.path.basename(where.filename)}:{where.name}" if where else "?"
    return f"{type(error).__name__} at {place}"


def _settings(args, examples, phases):
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    phases=phases, report_multiple_bugs=False, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def _run_case(case, state):
    state["calls"] += 1
    if state["calls"] % 25 == 0:
        keras.backend.clear_session()
    return fuzz_models.check(case)


def count(args):
    """Pass 1: every example, outcomes counted, failures grouped."""
    state = collections.Counter()
    outcomes, kinds, failures = collections.Counter(), collections.Counter(), {}
    by_noise = collections.defaultdict(collections.Counter)
    seconds = []

    @hypothesis_seed(args.seed)
    @_settings(args, args.examples, [Phase.generate])
    @given(fuzz_models.cases(args.max_steps))
    def run(case):
        start = time.perf_counter()
        kinds.update(set(re.findall(r"L\.(\w+)\(", case.code)))
        index = outcomes.total()
        noise = f"{case.noise_mode} {case.noise}" if case.noise else "none"
        try:
            outcome = _run_case(case, state)
            outcomes[outcome] += 1
            by_noise[noise][outcome] += 1
        except Exception as error:  # noqa: BLE001 - every failure is a finding
            outcomes["failure"] += 1
            by_noise[noise]["failure"] += 1
            sig = signature(error)
            entry = failures.setdefault(sig, {"count": 0, "first_index": index, "case": case,
                                              "error": f"{type(error).__name__}: {error}"})
            entry["count"] += 1
            if entry["count"] == 1:
                print(f"  new failure at example {index}: {sig}: {entry['error'][:300]}",
                      flush=True)
        seconds.append(time.perf_counter() - start)
        if args.progress and outcomes.total() % args.progress == 0:
            print(f"  {outcomes.total()} examples, {dict(outcomes)}", flush=True)

    run()
    return outcomes, kinds, failures, seconds, by_noise


def shrink(args, sig, entry):
    """Pass 2: the same seed reaches the failure again; hypothesis shrinks it."""
    state, last = collections.Counter(), {}

    @hypothesis_seed(args.seed)
    @_settings(args, entry["first_index"] + 1, [Phase.generate, Phase.shrink])
    @given(fuzz_models.cases(args.max_steps))
    def run(case):
        try:
            _run_case(case, state)
        except Exception as error:  # noqa: BLE001
            if signature(error) == sig:
                last["case"], last["error"] = case, f"{type(error).__name__}: {error}"
                raise

    try:
        run()
    except Exception:  # noqa: BLE001 - the shrunk failure, expected
        pass
    return last or {"case": entry["case"], "error": entry["error"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max_steps", type=int, default=12,
                        help="most steps (layers, branches, merges) per random teacher")
    parser.add_argument("--shrink", action=argparse.BooleanOptionalAction, default=True,
                        help="shrink each distinct failure to a minimal repro")
    parser.add_argument("--max_failures", type=int, default=5,
                        help="distinct failures to shrink")
    parser.add_argument("--progress", type=int, default=200,
                        help="print counts every N examples (0: never)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    start = time.perf_counter()
    outcomes, kinds, failures, seconds, by_noise = count(args)
    elapsed = time.perf_counter() - start
    n = outcomes.total()
    typed = {k: v for k, v in outcomes.items() if k not in ("preserved", "failure")}
    print(f"\nfuzz: {n} examples (seed {args.seed}, max_steps {args.max_steps}) in "
          f"{elapsed:.0f} s, {elapsed / max(n, 1):.3f} s/example "
          f"(check: mean {sum(seconds) / max(len(seconds), 1):.3f} s, max {max(seconds):.2f} s)")
    print(f"  preserved      {outcomes['preserved']:>6}")
    print(f"  typed errors   {sum(typed.values()):>6}")
    for name, k in sorted(typed.items(), key=lambda kv: -kv[1]):
        print(f"    {name:<20} {k:>6}")
    print(f"  failures       {outcomes['failure']:>6}  ({len(failures)} distinct)")
    for noise, counts in sorted(by_noise.items()):
        print(f"  noise {noise:<16} {dict(counts)}")
    try:
        fuzz_models.assert_floors(outcomes)
        below = None
    except fuzz_models.FuzzFailure as error:
        below = str(error)
        print(f"  BELOW FLOOR: {below}")
    print("  layer kinds (examples using each): " +
          ", ".join(f"{k} {v}" for k, v in kinds.most_common()))

    shrunk = {}
    for sig, entry in list(failures.items())[:args.max_failures]:
        print(f"\nfailure x{entry['count']}: {sig}")
        result = shrink(args, sig, entry) if args.shrink else entry
        shrunk[sig] = result
        print(f"  error: {result['error'][:2000]}")
        print("  minimal repro:" if args.shrink else "  first repro:")
        print("    " + result["case"].repro().replace("\n", "\n    "))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"examples": n, "seconds": elapsed, "outcomes": dict(outcomes),
                       "typed_errors": typed, "kinds": dict(kinds), "below_floor": below,
                       "by_noise": {k: dict(v) for k, v in by_noise.items()},
                       "failures": {s: {"count": failures[s]["count"], "error": r["error"],
                                        "repro": r["case"].repro()}
                                    for s, r in shrunk.items()}}, f, indent=1)
    return 1 if failures or below else 0


if __name__ == "__main__":
    sys.exit(main())
