"""The benchmark suite: channels against its peers and the floor, in one run.

Every figure is the median of several repetitions, and every line figure is
also given as a ratio to the floor measured in the same run (a raw
``selectors`` + ``recv(256 KiB)`` + ``bytes.split`` loop with the same Python
body per line as every other consumer). ``floor-tuples`` is the floor of
``poll()``'s shape: the same loop handing out ``(line, token)`` tuples, at
most 1,024 at a time, with no fairness or bookkeeping; the ratios table
gives issue #14's targets in this run. The producer runs in its own
process, each implementation in another; each run's counts and first/last
lines are checked, so a fast wrong answer fails the suite. A peer that is not
installed is reported as missing and skipped.

Usage: python benchmarks/suite.py [--quick] [--out DIR] [--only memory]
Writes DIR/results.json, DIR/results.rst (the README table) and, when
matplotlib is there, DIR/performance.png. ``--only memory`` measures that
section again into DIR's results (the tables say when).
"""

import argparse
import datetime
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
LINES = os.path.join(HERE, "lines.py")
COSTS = os.path.join(HERE, "costs.py")
BULK = os.path.join(HERE, "bulk_write.py")
CLI_RELAY = os.path.join(HERE, "cli_relay.py")

sys.path.insert(0, HERE)
from lines import CONSUMERS, NEEDS, SERVERS, line  # noqa: E402

Table = List[Tuple[str, ...]]


def available(impl: str) -> bool:
    module = NEEDS.get(impl)
    return module is None or importlib.util.find_spec(module) is not None


def run_json(args: List[str], pass_fds: Tuple[int, ...] = (), timeout: float = 300) -> Dict:
    out = subprocess.run(
        [sys.executable, *args],
        pass_fds=pass_fds,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stderr.decode()[-2000:]}")
    return json.loads(out.stdout.decode().strip().splitlines()[-1])


def check(what: str, got: Dict, count: int, size: int, last_index: Optional[int] = None) -> None:
    """A run counts only if it saw every line, every byte, and the right ends.

    ``last_index``: the index of the last line each sender sent, when there
    are many senders (then the first line is not checked: any sender's first
    line may come first)."""
    first = last_index is None
    want_last = line(count - 1 if last_index is None else last_index, size).decode()
    problems = []
    if got["lines"] != count:
        problems.append(f"{got['lines']} lines, not {count}")
    if got["bytes"] != count * size:
        problems.append(f"{got['bytes']} bytes, not {count * size}")
    if got["last"] != want_last:
        problems.append(f"last line {got['last']!r}, not {want_last!r}")
    if first and got["first"] != line(0, size).decode():
        problems.append(f"first line {got['first']!r}")
    if problems:
        raise SystemExit(f"WRONG RESULT from {what}: {'; '.join(problems)}")


def fd_pair(kind: str) -> Tuple[int, int]:
    """(consumer end, producer end) of a fresh connection of this kind."""
    if kind == "unix":
        a, b = socket.socketpair()
    elif kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as server:
            b = socket.create_connection(server.getsockname())
            a, _ = server.accept()
    else:
        return os.pipe()
    return a.detach(), b.detach()


Measure = Tuple[float, List[int]]  # lines/s, and collections per GC generation


def one_stream(impl: str, kind: str, size: int, count: int) -> Measure:
    mine, theirs = fd_pair(kind)
    producer = subprocess.Popen(
        [sys.executable, LINES, "produce", str(theirs), kind, str(count), str(size)],
        pass_fds=(theirs,),
    )
    os.close(theirs)
    try:
        got = run_json([LINES, "consume", impl, str(mine), kind, str(count)], pass_fds=(mine,))
    finally:
        os.close(mine)
        producer.wait(60)
    check(f"{impl} over {kind}, {size}-byte lines", got, count, size)
    return count / got["seconds"], got["gc"]


def one_fanin(impl: str, clients: int, per_client: int) -> Measure:
    server = socket.create_server(("127.0.0.1", 0), backlog=clients)
    port = server.getsockname()[1]
    fd = server.detach()
    consumer = subprocess.Popen(
        [sys.executable, LINES, "serve", impl, str(fd), str(clients), str(per_client)],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
    )
    os.close(fd)
    subprocess.run(
        [sys.executable, LINES, "produce-clients", str(port), str(clients), str(per_client), "32"],
        check=True,
        timeout=300,
    )
    out, _ = consumer.communicate(timeout=300)
    if consumer.returncode:
        raise RuntimeError(f"{impl} fan-in server failed")
    got = json.loads(out.decode().strip().splitlines()[-1])
    check(f"{impl} fan-in, {clients} clients", got, clients * per_client, 32, per_client - 1)
    return clients * per_client / got["seconds"], got["gc"]


def median_of(repeat: int, measure, *args) -> Tuple[float, List[int], float]:  # type: ignore[no-untyped-def]
    """The median rate, the collections of the median run, and the spread
    (max/min) of the rates."""
    runs = sorted((measure(*args) for _ in range(repeat)), key=lambda run: run[0])
    rate, collections = runs[len(runs) // 2]
    return rate, collections, runs[-1][0] / runs[0][0]


def gc_cell(collections: List[int]) -> str:
    return "/".join(str(count) for count in collections)


def throughput(quick: bool, repeat: int, results: Dict) -> None:
    impls = [impl for impl in CONSUMERS if available(impl)]
    results["missing"] = [impl for impl in CONSUMERS if not available(impl)]
    cases = (
        [("unix", 32)] if quick else [(k, s) for k in ("unix", "tcp", "pipe") for s in (32, 200)]
    )
    for kind, size in cases:
        count = (200_000 if quick else 400_000) * 32 // size
        row: Dict[str, float] = {}
        collected: Dict[str, List[int]] = {}
        for impl in impls:
            row[impl], collected[impl], spread = median_of(
                repeat, one_stream, impl, kind, size, count
            )
            print(
                f"  {kind:<4} {size:>3}B {impl:<17} {row[impl] / 1e6:7.2f} M lines/s"
                f"  (spread {spread:.2f}, gc {gc_cell(collected[impl])})",
                flush=True,
            )
        results["throughput"][f"{kind}/{size}"] = row
        results["gc"][f"{kind}/{size}"] = collected


def fanin(quick: bool, repeat: int, results: Dict) -> None:
    for clients in (100, 1000):
        per_client = (100_000 if quick else 400_000) // clients
        row: Dict[str, float] = {}
        collected: Dict[str, List[int]] = {}
        for impl in SERVERS:
            if available(impl):
                row[impl], collected[impl], spread = median_of(
                    repeat, one_fanin, impl, clients, per_client
                )
                print(
                    f"  fan-in {clients:>4} {impl:<17} {row[impl] / 1e6:7.2f} M lines/s"
                    f"  (spread {spread:.2f}, gc {gc_cell(collected[impl])})",
                    flush=True,
                )
        results["fanin"][str(clients)] = row
        results["gc"][f"fan-in {clients}"] = collected


def idle(quick: bool, repeat: int, results: Dict) -> None:
    reps = 300 if quick else 2000
    for k in (10, 100, 1000, 10000):
        row = {}
        for impl in ("channels", "floor"):
            row[impl] = statistics.median(
                run_json([COSTS, "idle", impl, str(k), str(reps)])["seconds"] for _ in range(repeat)
            )
        print(
            f"  idle {k:>5}: channels {row['channels'] * 1e6:6.1f} us,"
            f" floor {row['floor'] * 1e6:6.1f} us",
            flush=True,
        )
        results["idle"][str(k)] = row


def readsize(results: Dict, repeat: int) -> None:
    for size in (4096, 16384, 65536, 262144, 1048576):
        runs = [run_json([COSTS, "readsize", str(size)]) for _ in range(repeat)]
        row = {name: statistics.median(run[name] for run in runs) for name in ("channels", "floor")}
        print(
            f"  read {size:>7}: channels {row['channels'] * 1e9:5.0f} ns/line,"
            f" floor {row['floor'] * 1e9:5.0f}",
            flush=True,
        )
        results["readsize"][str(size)] = row


MEMORY_COUNTS = (4000, 6000, 8000, 10000, 12000)
MEMORY_REPEAT = 3
"""Registrations per memory measurement, and runs of each: RSS grows in
steps (a dict's table doubles, glibc keeps or returns a freed one, pymalloc
takes a new arena), so one run can read 100 B high or low per channel; the
median over all of them is what is reported."""


def memory(results: Dict, quick: bool) -> None:
    counts = (2000, 4000) if quick else MEMORY_COUNTS * MEMORY_REPEAT
    results["memory_range"] = {}
    for impl in ("channels", "asyncio-protocol", "asyncio-streams", "selector"):
        got = [
            run_json([COSTS, "memory", impl, str(count)])["bytes_per_channel"] for count in counts
        ]
        middle = statistics.median(got)
        print(
            f"  memory {impl:<17} {middle:7.0f} bytes per idle channel"
            f" ({min(got):.0f}-{max(got):.0f} over {len(counts)} runs)",
            flush=True,
        )
        results["memory"][impl] = middle
        results["memory_range"][impl] = [min(got), max(got)]


def bulk(results: Dict, quick: bool, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bulk.json")
        subprocess.run(
            [
                sys.executable,
                BULK,
                "--mib",
                "64" if quick else "256",
                "--repeat",
                str(repeat),
                "--json",
                path,
            ],
            check=True,
            timeout=600,
        )
        with open(path) as file:
            results["bulk_write"] = json.load(file)


def cli_relay(results: Dict, quick: bool) -> None:
    """``channels connect`` against socat (skipped, with a note, without socat);
    it fails the run on a wrong byte, and (full runs: 100 MiB, 3 reps) past 2x
    socat's time; a quick run's 32 MiB is too short to judge a ratio (Python's
    start-up alone is a tenth of socat's time)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cli.json")
        subprocess.run(
            [
                sys.executable,
                CLI_RELAY,
                "--mib",
                "32" if quick else "100",
                "--repeat",
                "1" if quick else "3",
                "--json",
                path,
                *([] if quick else ["--check"]),
            ],
            check=True,
            timeout=900,
        )
        if os.path.exists(path):
            with open(path) as file:
                results["cli_relay"] = json.load(file)


# -- report ------------------------------------------------------------------


def ratio(value: float, floor: Optional[float]) -> str:
    return f"{value / floor:.2f}" if floor else "-"


def memory_table(results: Dict) -> List[str]:
    rows: Table = [("implementation", "bytes per idle channel", "range")]
    spans = results.get("memory_range", {})
    for impl, value in results["memory"].items():
        span = spans.get(impl)
        rows.append((impl, f"{value:.0f}", f"{span[0]:.0f}-{span[1]:.0f}" if span else "-"))
    title = [
        "Memory (RSS growth) per idle registered connection, over the second half of",
        "the registrations (what is paid once left out); the median of",
        f"{MEMORY_REPEAT} runs each of {', '.join(f'{count:,}' for count in MEMORY_COUNTS)}"
        " registrations, and the range:",
    ]
    again = results.get("again", {}).get("memory")
    if again:
        title.append(f"(measured again {again['date']}, Python {again['python']})")
    return [*title, "", rst_table(rows)]


def tables(results: Dict) -> str:
    out: List[str] = []
    add = out.append
    add(f"Measured {results['date']} on {results['machine']}, Python {results['python']}")
    add(f"({results['mode']} run, medians of {results['repeat']}).")
    if results["missing"]:
        add(f"Missing peers (not installed, skipped): {', '.join(results['missing'])}.")
    add("")
    rows: Table = [("implementation", *(case for case in results["throughput"]))]
    impls = list(next(iter(results["throughput"].values())))
    for impl in impls:
        cells = []
        for row in results["throughput"].values():
            cells.append(f"{row[impl] / 1e6:.2f} ({ratio(row[impl], row.get('floor'))})")
        rows.append((impl, *cells))
    add("Line throughput, M lines/s (ratio to the floor), one connection, transport/line size:")
    add("")
    add(rst_table(rows))
    rows = [("implementation", *(f"{c} clients" for c in results["fanin"]))]
    fan_impls = list(next(iter(results["fanin"].values())))
    for impl in fan_impls:
        rows.append(
            (
                impl,
                *(
                    f"{r[impl] / 1e6:.2f} ({ratio(r[impl], r.get('floor'))})"
                    for r in results["fanin"].values()
                ),
            )
        )
    add("Fan-in over loopback TCP, 32-byte lines, M lines/s (ratio to the floor):")
    add("")
    add(rst_table(rows))
    out += ratio_table(results)
    if results.get("gc"):
        out += gc_table(results["gc"])
    rows = [("idle channels", "channels poll()", "floor", "ratio")]
    for k, row in results["idle"].items():
        rows.append(
            (
                k,
                f"{row['channels'] * 1e6:.1f} us",
                f"{row['floor'] * 1e6:.1f} us",
                ratio(row["channels"], row["floor"]),
            )
        )
    add("Cost of one poll() returning one line, against idle registered channels:")
    add("")
    add(rst_table(rows))
    rows = [("read size", "channels ns/line", "floor ns/line")]
    for size, row in results["readsize"].items():
        rows.append(
            (
                f"{int(size) // 1024} KiB",
                f"{row['channels'] * 1e9:.0f}",
                f"{row['floor'] * 1e9:.0f}",
            )
        )
    add("Line framing cost per line against the size of a read:")
    add("")
    add(rst_table(rows))
    out += memory_table(results)
    if results.get("bulk_write"):
        rows = [("writer", "MiB/s", "vs raw send loop")]
        bulk_results = results["bulk_write"]["medians"]
        raw = bulk_results.get("raw")
        for impl, value in bulk_results.items():
            if isinstance(value, (int, float)):
                rows.append((impl, f"{value:.0f}", ratio(value, raw)))
        add("Bulk write through a socketpair:")
        add("")
        add(rst_table(rows))
    if results.get("cli_relay"):
        out += cli_table(results["cli_relay"])
    return "\n".join(out)


RATIOS = (
    ("poll() / twisted", "channels", "twisted"),
    ("floor-tuples / twisted", "floor-tuples", "twisted"),
    ("poll() / floor-tuples", "channels", "floor-tuples"),
    ("poll() / asyncio", "channels", "asyncio-protocol"),
    ("batches / asyncio", "channels-batches", "asyncio-protocol"),
)
"""The ratios issue #14 sets targets for, and the floor of poll()'s shape."""


def ratio_table(results: Dict) -> List[str]:
    """Each case's ratios of ``RATIOS`` (one implementation's median over
    another's, this run; '-' where one was not measured)."""
    cases = {**results["throughput"], **{f"fan-in {c}": r for c, r in results["fanin"].items()}}
    rows: Table = [("case", *(name for name, _, _ in RATIOS))]
    for case, row in cases.items():
        rows.append((case, *(ratio(row[a], row.get(b)) if a in row else "-" for _, a, b in RATIOS)))
    return [
        "Ratios in this run (``batches``: poll_batches(); ``twisted``: LineOnlyReceiver):",
        "",
        rst_table(rows),
    ]


def gc_table(collected: Dict[str, Dict[str, List[int]]]) -> List[str]:
    cases = list(collected)
    rows: Table = [("implementation", *cases)]
    for impl in dict.fromkeys(impl for row in collected.values() for impl in row):
        rows.append((impl, *(gc_cell(collected[case].get(impl, [])) or "-" for case in cases)))
    return [
        "Garbage collections during the median run, generation 0/1/2 (gc.callbacks):",
        "",
        rst_table(rows),
    ]


def cli_table(relay: Dict) -> List[str]:
    rows: Table = [("transfer", "socat client", "channels connect", "ratio")]
    for case, row in relay["medians"].items():
        rows.append(
            (
                f"{case}, {relay['mib']} MiB",
                f"{row['socat']:.2f} s",
                f"{row['channels']:.2f} s",
                ratio(row["channels"], row["socat"]),
            )
        )
    return [
        "channels connect against socat as the client (target: ratio <= 2):",
        "",
        rst_table(rows),
    ]


def rst_table(rows: Table) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    rule = "  ".join("=" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(rows[0], widths)).rstrip(), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows[1:]]
    return "\n".join([*lines, rule, ""])


def plot(results: Dict, path: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return False
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    row = results["throughput"].get("unix/32") or next(iter(results["throughput"].values()))
    names = list(row)
    left.barh(
        names,
        [row[n] / 1e6 for n in names],
        color=["#c44" if n.startswith("channels") else "#48a" for n in names],
    )
    left.set_xlabel("M lines/s (32-byte lines, Unix socketpair)")
    left.invert_yaxis()
    left.set_title("Line throughput")
    ks = [int(k) for k in results["idle"]]
    for impl, style in (("channels", "o-"), ("floor", "s--")):
        right.plot(ks, [results["idle"][str(k)][impl] * 1e6 for k in ks], style, label=impl)
    right.set_xscale("log")
    right.set_xlabel("idle registered channels")
    right.set_ylabel("us per poll() returning one line")
    right.set_ylim(bottom=0)
    right.set_title("poll() cost against idle channels")
    right.legend()
    fig.suptitle(f"channels benchmarks — Python {results['python']}, {results['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def again(section: str, out: str, quick: bool) -> int:
    """Measure one section again and rewrite the results and their tables
    (the other sections keep their run's figures; the section's own date is
    recorded)."""
    path = os.path.join(out, "results.json")
    with open(path) as file:
        results = json.load(file)
    print(f"{section}:", flush=True)
    results[section] = {}
    memory(results, quick)
    results.setdefault("again", {})[section] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
    }
    with open(path, "w") as file:
        json.dump(results, file, indent=1)
    text = tables(results)
    with open(os.path.join(out, "results.rst"), "w") as file:
        file.write(text + "\n")
    print(text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer cases and lines: under a minute"
    )
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="where results go")
    parser.add_argument(
        "--only",
        choices=["memory"],
        help="measure this section again, into the results already in --out",
    )
    args = parser.parse_args()
    if args.only:
        return again(args.only, args.out, args.quick)
    repeat = 3
    started = time.monotonic()
    results: Dict = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "throughput": {},
        "fanin": {},
        "idle": {},
        "readsize": {},
        "memory": {},
        "gc": {},
    }
    print("line throughput:", flush=True)
    throughput(args.quick, repeat, results)
    print("fan-in:", flush=True)
    fanin(args.quick, 1 if args.quick else 3, results)
    print("idle scaling:", flush=True)
    idle(args.quick, 1 if args.quick else repeat, results)
    print("per-line cost against read size:", flush=True)
    readsize(results, 1 if args.quick else 3)
    print("memory:", flush=True)
    memory(results, args.quick)
    if not args.quick:
        print("bulk write:", flush=True)
        bulk(results, args.quick, 3)
    print("channels connect against socat:", flush=True)
    cli_relay(results, args.quick)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as file:
        json.dump(results, file, indent=1)
    text = tables(results)
    with open(os.path.join(args.out, "results.rst"), "w") as file:
        file.write(text + "\n")
    print()
    print(text)
    if plot(results, os.path.join(args.out, "performance.png")):
        print(f"plot: {os.path.join(args.out, 'performance.png')}")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
