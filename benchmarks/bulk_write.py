"""Bulk write throughput: MiB/s through a socketpair, reader in another process.

Each writer runs in its own process, the reader in another; the reader times
from its first byte to EOF and checks the byte count and every byte it
got against the pattern sent, so a fast wrong answer fails the run. Writers:

- raw:      a blocking ``socket.send`` loop over memoryview slices (the floor
            of any Python writer: no queue, no framing, no event loop);
- channels: ``SocketChannel.write()``; on ``WriteBufferFullError`` it waits
            with ``flush()``, and ``close()`` delivers the rest;
- asyncio:  ``StreamWriter.write()`` + ``await drain()``.

Usage: python benchmarks/bulk_write.py [--mib 256] [--repeat 5] [--json FILE]
"""

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, List

CHUNK = 64 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def payload_chunk() -> bytes:
    return bytes(range(256)) * (CHUNK // 256)


def run_reader(fd: int) -> None:
    """Receive until EOF; check every byte against the repeating pattern."""
    sock = socket.socket(fileno=fd)
    size = 1 << 20
    buffer = bytearray(size)
    pattern = payload_chunk() * (size // CHUNK + 1)  # any window of size fits
    received = 0
    intact = True
    start = None
    while True:
        count = sock.recv_into(buffer)
        if not count:
            break
        if start is None:
            start = time.perf_counter()
        offset = received % CHUNK
        intact = intact and buffer[:count] == pattern[offset : offset + count]
        received += count
    elapsed = time.perf_counter() - (start or time.perf_counter())
    print(json.dumps({"bytes": received, "intact": intact, "seconds": elapsed}))


def write_raw(sock: socket.socket, total: int) -> None:
    chunk = payload_chunk()
    for _ in range(total // CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[sock.send(view) :]
    sock.close()


def write_channels(sock: socket.socket, total: int) -> None:
    sys.path.insert(0, ROOT)
    from channels import SocketChannel, WriteBufferFullError

    channel = SocketChannel(sock)
    chunk = payload_chunk()
    for _ in range(total // CHUNK):
        try:
            channel.write(chunk)
        except WriteBufferFullError:
            channel.flush()
            channel.write(chunk)
    channel.close()
    assert channel.undelivered == 0


def write_asyncio(sock: socket.socket, total: int) -> None:
    async def main() -> None:
        _, writer = await asyncio.open_connection(sock=sock)
        chunk = payload_chunk()
        for _ in range(total // CHUNK):
            writer.write(chunk)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    asyncio.run(main())


WRITERS = {"raw": write_raw, "channels": write_channels, "asyncio": write_asyncio}


# -- the orchestration ----------------------------------------------------------


def measure(impl: str, total: int) -> float:
    """One run: MiB/s as the reader saw it; raises if the data is wrong."""
    mine, theirs = socket.socketpair()
    script = os.path.abspath(__file__)
    reader = subprocess.Popen(
        [sys.executable, script, "--role", "reader", "--fd", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdout=subprocess.PIPE,
        text=True,
    )
    writer = subprocess.Popen(
        [sys.executable, script, "--role", impl, "--fd", str(mine.fileno()), "--bytes", str(total)],
        pass_fds=[mine.fileno()],
    )
    mine.close()
    theirs.close()
    out, _ = reader.communicate(timeout=600)
    if writer.wait(timeout=600) != 0 or reader.returncode != 0:
        raise RuntimeError(f"{impl}: writer or reader failed")
    result = json.loads(out)
    if result["bytes"] != total or not result["intact"]:
        raise RuntimeError(f"{impl}: wrong data: {result['bytes']} bytes of {total}")
    return total / result["seconds"] / (1 << 20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=256, help="MiB per run (default 256)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per writer (median)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bytes", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "reader":
        run_reader(args.fd)
        return 0
    if args.role:
        WRITERS[args.role](socket.socket(fileno=args.fd), args.bytes)
        return 0

    total = args.mib * (1 << 20) // CHUNK * CHUNK
    runs: Dict[str, List[float]] = {impl: [] for impl in WRITERS}
    for _ in range(args.repeat):  # interleaved, so drift hits every writer alike
        for impl in WRITERS:
            runs[impl].append(measure(impl, total))
    medians = {impl: statistics.median(values) for impl, values in runs.items()}
    floor = medians["raw"]
    print(f"bulk write, {args.mib} MiB x {args.repeat} runs, Python {sys.version.split()[0]}")
    print(f"{'writer':<10} {'MiB/s':>9} {'vs raw':>7}")
    for impl, value in medians.items():
        print(f"{impl:<10} {value:9.0f} {value / floor:7.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"mib": args.mib, "repeat": args.repeat, "runs": runs, "medians": medians},
                out,
                indent=1,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
