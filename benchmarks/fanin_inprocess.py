"""Fan-in in one process: the consumer's cost alone, configurations alternating.

``suite.py``'s fan-in runs a producer process that connects the clients and
sends while the consumer reads; on a busy machine its spread hides a 20%
change. Here N socketpairs get ``PER`` lines of 32 bytes each, all waiting
in the kernel before the clock starts, and one configuration at a time
reads them all; the configurations alternate round after round and the
medians are printed. A configuration is ``asyncio`` (a Protocol splitting
lines by hand), or ``poll`` / ``batches`` with module constants of
``channels.poller`` (or ``MIN_SHARE`` of ``channels.events``) to set, e.g.
``poll:READS_PER_POLL=1000000000``.

Usage: python benchmarks/fanin_inprocess.py N PER ROUNDS CONFIG...
(it needs about 2 * N * len(CONFIGS) fds: see ``ulimit -n``)
"""

import asyncio
import gc
import os
import socket
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import channels
import channels._turns
import channels.events
import channels.poller

LINE = b"0123456789012345678901234567890\n"

Pairs = List[Tuple[socket.socket, socket.socket]]
Run = Callable[[], float]  # fill the pairs, read them all: lines per second


def make_pairs(count: int) -> Pairs:
    pairs = []
    for _ in range(count):
        mine, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        pairs.append((mine, theirs))
    return pairs


def fill(pairs: Pairs, per: int) -> None:
    data = LINE * per
    for _, theirs in pairs:
        theirs.sendall(data)


def channels_run(pairs: Pairs, per: int, batches: bool, budget: int = 0) -> Run:
    poller = channels.Poller(
        buffering="line", read_budget=budget or channels.poller.DEFAULT_READ_BUDGET
    )
    for mine, _ in pairs:
        poller.register(channels.SocketChannel(mine, buffering="line"))
    total = len(pairs) * per

    def run() -> float:
        fill(pairs, per)
        got = 0
        start = time.perf_counter()
        if batches:
            while got < total:
                for event in poller.poll_batches():
                    got += len(event.frames)  # type: ignore[union-attr]
        else:
            while got < total:
                for data, _ in poller.poll():
                    if data.__class__ is bytes and data:
                        got += 1
        return total / (time.perf_counter() - start)

    return run


def asyncio_run(pairs: Pairs, per: int) -> Run:
    loop = asyncio.new_event_loop()
    total = len(pairs) * per
    state: Dict[str, Any] = {"got": 0, "done": None}

    class Lines(asyncio.Protocol):
        tail = b""

        def data_received(self, data: bytes) -> None:
            lines = (self.tail + data).split(b"\n")
            self.tail = lines.pop()
            got = state["got"]
            for _line in lines:
                got += 1
            state["got"] = got
            if got >= total and not state["done"].done():
                state["done"].set_result(None)

    async def connect() -> None:
        for mine, _ in pairs:
            await loop.connect_accepted_socket(Lines, mine)

    loop.run_until_complete(connect())

    def run() -> float:
        state["got"] = 0
        state["done"] = loop.create_future()
        fill(pairs, per)
        start = time.perf_counter()
        loop.run_until_complete(state["done"])
        return total / (time.perf_counter() - start)

    return run


def _module_of(name: str) -> Any:
    if name == "MIN_SHARE":
        return channels.events
    return channels._turns if name in ("READS_PER_POLL", "PEEK_BUDGET") else channels.poller


def main(argv: List[str]) -> int:
    count, per, rounds = int(argv[0]), int(argv[1]), int(argv[2])
    configs = argv[3:]
    runs: Dict[str, Tuple[Run, Dict[str, int]]] = {}
    for config in configs:
        kind, _, options = config.partition(":")
        pairs = make_pairs(count)
        if kind == "asyncio":
            runs[config] = (asyncio_run(pairs, per), {})
        else:
            settings = dict(option.split("=") for option in options.split(",") if option)
            budget = int(settings.pop("budget", 0))
            runs[config] = (
                channels_run(pairs, per, kind == "batches", budget),
                {name: int(value) for name, value in settings.items()},
            )
    defaults = {
        name: getattr(_module_of(name), name) for _, settings in runs.values() for name in settings
    }
    rates: Dict[str, List[float]] = {config: [] for config in configs}
    for _ in range(rounds):
        for config in configs:
            run, settings = runs[config]
            for name, value in {**defaults, **settings}.items():
                setattr(_module_of(name), name, value)
            gc.collect()
            rates[config].append(run())
    for config in configs:
        median = statistics.median(rates[config]) / 1e6
        low, high = min(rates[config]) / 1e6, max(rates[config]) / 1e6
        print(f"{count:5} x {per:5} {config:34} {median:6.2f} M  (min {low:.2f}, max {high:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
