"""``channels connect`` against ``socat`` as a client: the same transfers, timed.

Two transfers, each run by both clients in turn, whole commands timed:

- download: a socat server sends a file; the client writes it to stdout,
  read by a slow consumer (``(sleep 0.2; cmp - FILE)``, which also checks
  every byte);
- echo: stdin from a file, through a socat echo server (``EXEC:cat``), back
  to stdout (a file, compared afterwards).

The target (issue "flow control"): channels within 2x socat's time. Exits 1
if a transfer was not byte-exact, or (with ``--check``) if a ratio passes 2.

Usage: python benchmarks/cli_relay.py [--mib 100] [--repeat 3] [--json FILE] [--check]
"""

import argparse
import filecmp
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int) -> None:
    needle = f":{port:04X} 00000000:0000 0A"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            if needle in table.read():
                return
        time.sleep(0.005)
    raise RuntimeError(f"nothing listens on {port}")


def client(tool: str, port: int) -> List[str]:
    if tool == "socat":
        return ["socat", "-t", "30", "-", f"TCP:127.0.0.1:{port}"]
    return [sys.executable, "-m", "channels", "connect", f"127.0.0.1:{port}"]


def download(tool: str, path: str) -> float:
    port = free_port()
    server = subprocess.Popen(
        ["socat", "-u", f"FILE:{path}", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"]
    )
    try:
        wait_listening(port)
        command = " ".join(client(tool, port))
        start = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", f"{command} </dev/null | (sleep 0.2; cmp - {path})"],
            cwd=ROOT,
            timeout=300,
            check=False,
        )
        took = time.perf_counter() - start
    finally:
        server.kill()
        server.wait()
    if done.returncode:
        raise SystemExit(f"download with {tool}: not byte-exact (exit {done.returncode})")
    return took


def echo(tool: str, path: str, port: int, out: str) -> float:
    with open(path, "rb") as source, open(out, "wb") as sink:
        start = time.perf_counter()
        done = subprocess.run(
            client(tool, port), stdin=source, stdout=sink, cwd=ROOT, timeout=300, check=False
        )
        took = time.perf_counter() - start
    if done.returncode or not filecmp.cmp(path, out, shallow=False):
        raise SystemExit(f"echo with {tool}: not byte-exact (exit {done.returncode})")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    parser.add_argument("--check", action="store_true", help=f"fail past {LIMIT}x socat")
    args = parser.parse_args()
    if shutil.which("socat") is None:
        print("cli_relay: socat is not installed (apt-get install socat): skipped")
        return 0
    times: Dict[str, Dict[str, List[float]]] = {
        case: {"socat": [], "channels": []} for case in ("download", "echo")
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "payload.bin")
        with open(path, "wb") as file:
            for _ in range(args.mib):
                file.write(os.urandom(1 << 20))
        port = free_port()
        echo_server = subprocess.Popen(
            ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", "EXEC:cat"]
        )
        try:
            wait_listening(port)
            for _ in range(args.repeat):
                for tool in ("socat", "channels"):  # interleaved: same machine state
                    times["download"][tool].append(download(tool, path))
                    out = os.path.join(tmp, "out.bin")
                    times["echo"][tool].append(echo(tool, path, port, out))
        finally:
            echo_server.kill()
            echo_server.wait()
    medians = {
        case: {tool: statistics.median(values) for tool, values in row.items()}
        for case, row in times.items()
    }
    print(f"channels connect vs socat, {args.mib} MiB, medians of {args.repeat}:")
    failed = False
    for case, row in medians.items():
        ratio = row["channels"] / row["socat"]
        failed = failed or ratio > LIMIT
        spread = {t: f"{min(v):.2f}-{max(v):.2f}" for t, v in times[case].items()}
        print(
            f"  {case:<9} socat {row['socat']:.2f} s ({spread['socat']})"
            f"  channels {row['channels']:.2f} s ({spread['channels']})  ratio {ratio:.2f}"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"mib": args.mib, "times": times, "medians": medians}, file, indent=1)
    if args.check and failed:
        print(f"cli_relay: channels took more than {LIMIT}x socat's time")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
