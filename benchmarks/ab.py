"""A/B: this checkout's hot paths against another checkout's, interleaved.

The full suite's figures move by 10% from one run to the next on a busy
2-core machine, too much to tell a 5% change. This runs only the figures a
change to the poll loop can move — ``poll()`` and ``poll_batches()`` lines
per second over a Unix socketpair, TCP and a pipe (32-byte lines), fan-in of
100 clients, and the idle ``poll()`` cost — alternating the two checkouts
round after round, so both see the same machine, and reports the median of
each and their ratio (>1: this checkout is faster).

Usage: python benchmarks/ab.py BASE_CHECKOUT [--rounds N]
(run it with the bench venv's Python: ``.venv-bench/bin/python``).
"""

import argparse
import os
import statistics
import sys
from typing import Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from suite import COSTS, one_fanin, one_stream, run_json  # noqa: E402

Measure = Callable[[], float]

STREAM_LINES = 1_000_000
FANIN_PER_CLIENT = 5_000


def measures() -> List[Tuple[str, bool, Measure]]:
    """(name, higher is better, measure) for every figure compared."""
    found: List[Tuple[str, bool, Measure]] = []
    for impl in ("channels", "channels-batches"):
        for kind in ("unix", "tcp", "pipe"):
            found.append(
                (
                    f"{impl} {kind}/32 lines/s",
                    True,
                    lambda impl=impl, kind=kind: one_stream(impl, kind, 32, STREAM_LINES),
                )
            )
        found.append(
            (
                f"{impl} fan-in 100 lines/s",
                True,
                lambda impl=impl: one_fanin(impl, 100, FANIN_PER_CLIENT),
            )
        )
    found.append(
        (
            "idle poll() us (1000 idle)",
            False,
            lambda: run_json([COSTS, "idle", "channels", "1000", "2000"])["seconds"] * 1e6,
        )
    )
    return found


def run(tree: str, measure: Measure) -> float:
    """One measurement with ``channels`` imported from ``tree``."""
    previous = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree
    try:
        return measure()
    finally:
        if previous is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = previous


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the other checkout (its channels/ is imported)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    here = os.path.dirname(HERE)
    trees = {"base": os.path.abspath(args.base), "this": here}
    results: Dict[Tuple[str, str], List[float]] = {}
    for round_ in range(args.rounds):
        for name, _, measure in measures():
            order = ("base", "this") if round_ % 2 == 0 else ("this", "base")
            for which in order:
                results.setdefault((name, which), []).append(run(trees[which], measure))
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"{'figure':<34} {'base':>10} {'this':>10} {'this/base':>10}  (spread of this)")
    for name, higher_better, _ in measures():
        base = statistics.median(results[(name, "base")])
        this = statistics.median(results[(name, "this")])
        spread = max(results[(name, "this")]) / min(results[(name, "this")]) - 1
        ratio = this / base if higher_better else base / this
        scale = 1e-6 if higher_better else 1.0
        print(
            f"{name:<34} {base * scale:>10.2f} {this * scale:>10.2f} {ratio:>10.3f}"
            f"  (±{spread * 50:.0f}%)"
        )
    print("(this/base > 1: this checkout is faster; lines/s in millions)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
