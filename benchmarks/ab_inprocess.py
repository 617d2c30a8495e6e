"""A/B in one process: this checkout's consumer cost against another's.

``ab.py`` measures whole runs (a producer process, a consumer process); on a
busy machine their spread hides a 5% change. This loads both checkouts'
``channels`` into one process (as ``channels_base`` and ``channels_this``)
and times only the consumer: a socketpair is filled with 4,000 lines of 32
bytes, then ``poll()`` (or ``poll_batches()``) is timed until it returned
them all; and one ``poll()`` returning one line. The two alternate, round
after round, with a ``gc.collect()`` before each, and the medians are
compared (>1: this checkout is faster).

Usage: python benchmarks/ab_inprocess.py BASE_CHECKOUT [--rounds N]
"""

import argparse
import gc
import importlib.util
import os
import socket
import statistics
import sys
import time
from types import ModuleType
from typing import Any, Callable, Dict, List, Tuple

LINE = b"0123456789012345678901234567890\n"
LINES_PER_FILL = 4000
IDLE_POLLS = 3000


def load(name: str, tree: str) -> ModuleType:
    """Import ``tree``/channels as a package called ``name``."""
    package = os.path.join(tree, "channels")
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(package, "__init__.py"), submodule_search_locations=[package]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def setup(channels: Any) -> Tuple[Any, socket.socket]:
    """A Poller with one line channel, and the socket that feeds it."""
    mine, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    poller = channels.Poller(buffering="line")
    poller.register(channels.SocketChannel(mine, buffering="line"))
    return poller, theirs


def lines_per_second(poller: Any, feed: socket.socket, batches: bool, fills: int) -> float:
    poll = poller.poll_batches if batches else poller.poll
    chunk = LINE * LINES_PER_FILL
    spent = 0.0
    for _ in range(fills):
        feed.sendall(chunk)
        got = 0
        start = time.perf_counter()
        while got < LINES_PER_FILL:
            items = poll(1)
            got += sum(len(item.frames) for item in items) if batches else len(items)
        spent += time.perf_counter() - start
    return fills * LINES_PER_FILL / spent


def one_line_poll_us(poller: Any, feed: socket.socket) -> float:
    times: List[float] = []
    for _ in range(IDLE_POLLS):
        feed.send(LINE)
        start = time.perf_counter()
        got = poller.poll()
        times.append(time.perf_counter() - start)
        assert len(got) == 1, got
    return statistics.median(times) * 1e6


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the other checkout (its channels/ is loaded)")
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--fills", type=int, default=40, help="socket fills per measurement")
    args = parser.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    setups = {
        "base": setup(load("channels_base", os.path.abspath(args.base))),
        "this": setup(load("channels_this", here)),
    }
    figures: Dict[str, Tuple[bool, Callable[[Any, socket.socket], float]]] = {
        "poll() lines/s": (True, lambda p, f: lines_per_second(p, f, False, args.fills)),
        "poll_batches() lines/s": (True, lambda p, f: lines_per_second(p, f, True, args.fills)),
        "poll() of one line, us": (False, one_line_poll_us),
    }
    results: Dict[Tuple[str, str], List[float]] = {}
    for round_ in range(args.rounds):
        for which in ("base", "this") if round_ % 2 == 0 else ("this", "base"):
            for name, (_, measure) in figures.items():
                gc.collect()
                results.setdefault((name, which), []).append(measure(*setups[which]))
    print(f"{'figure':<24} {'base':>12} {'this':>12} {'this/base':>9}  spread base / this")
    for name, (higher_better, _) in figures.items():
        base, this = results[(name, "base")], results[(name, "this")]
        ratio = statistics.median(this) / statistics.median(base)
        print(
            f"{name:<24} {statistics.median(base):>12.1f} {statistics.median(this):>12.1f}"
            f" {ratio if higher_better else 1 / ratio:>9.3f}"
            f"  {max(base) / min(base):.2f} / {max(this) / min(this):.2f}"
        )
    print("(this/base > 1: this checkout is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
