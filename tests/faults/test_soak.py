"""Churn soak: clients connect, send random lines, close or reset, for a while.

CHANNELS_SOAK_SECONDS (default 20) is the whole soak, shared among the
selector classes. Every line a client completed is accounted for, and the
server's memory stays bounded.
"""

import json
import os
import socket
import subprocess
import sys
import time
import zlib
from typing import Callable, Dict, List, Tuple

import pytest

from channels import Poller, SocketChannel

from ..conftest import SELECTOR_CLASSES

pytestmark = pytest.mark.fault

SOAK_SECONDS = float(os.environ.get("CHANNELS_SOAK_SECONDS", "20")) / len(SELECTOR_CLASSES)

CLIENTS_SCRIPT = r"""
import json, random, socket, struct, sys, time, zlib
port, seconds, report = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
rng = random.Random(7)
summary = {}
live = []
cid = 0
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    if len(live) < 8:
        sock = socket.create_connection(("127.0.0.1", port))
        live.append((cid, sock, 0))
        summary[cid] = {"sent": 0, "reset": False}
        cid += 1
    index = rng.randrange(len(live))
    number, sock, seq = live[index]
    action = rng.random()
    if action < 0.8:  # send a few complete lines, in pieces
        data = b""
        for _ in range(rng.randint(1, 20)):
            payload = bytes(rng.getrandbits(8) % 26 + 97 for _ in range(rng.randint(0, 300)))
            body = b"%d %d %s" % (number, seq, payload)
            data += b"%s %08x\n" % (body, zlib.crc32(body))
            seq += 1
        cut = rng.randint(0, len(data))
        sock.sendall(data[:cut]); sock.sendall(data[cut:])
        summary[number]["sent"] = seq
        live[index] = (number, sock, seq)
    elif action < 0.9:  # close normally
        sock.close(); live.pop(index)
    else:  # a partial line, then a reset
        sock.sendall(b"%d %d partial" % (number, seq))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close(); live.pop(index)
        summary[number]["reset"] = True
for number, sock, seq in live:
    sock.close()
with open(report, "w") as out:  # a file: a pipe could fill up and block us
    json.dump(summary, out)
"""


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def check_line(frame: bytes) -> Tuple[int, int]:
    """The connection and sequence numbers of a complete line; fails if corrupt."""
    body, _, crc = frame[:-1].rpartition(b" ")
    assert int(crc, 16) == zlib.crc32(body), f"corrupt line {frame[:60]!r}"
    number, seq, _ = body.split(b" ", 2)
    return int(number), int(seq)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
@pytest.mark.timeout(SOAK_SECONDS + 60)
def test_churn_soak_accounts_for_every_line_with_bounded_memory(
    make_poller: Callable[..., Poller], short_tmp: str
) -> None:
    poller = make_poller(buffering="line")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    poller.add_server(server)
    report = os.path.join(short_tmp, "summary.json")
    clients = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENTS_SCRIPT,
            str(server.getsockname()[1]),
            str(SOAK_SECONDS),
            report,
        ]
    )
    received: Dict[int, List[int]] = {}
    open_channels: List[SocketChannel] = []
    samples: List[int] = []
    started = time.monotonic()
    deadline = started + SOAK_SECONDS + 30
    next_sample = started + 1
    try:
        while clients.poll() is None or open_channels:
            assert time.monotonic() < deadline, "the soak did not finish"
            for data, source in poller.poll(0.1):
                if not isinstance(data, bytes):
                    open_channels.append(data[1])
                elif not data:
                    assert isinstance(source, SocketChannel)
                    source.close()
                    open_channels.remove(source)
                elif data.endswith(b"\n"):  # (a tail without one was cut off by a reset)
                    number, seq = check_line(data)
                    received.setdefault(number, []).append(seq)
            if time.monotonic() >= next_sample:
                samples.append(rss_bytes())
                next_sample += 1
    finally:
        if clients.poll() is None:
            clients.kill()
        clients.wait(10)
    assert clients.returncode == 0
    with open(report) as summary_file:
        out = summary_file.read()
    summary = {int(k): v for k, v in json.loads(out).items()}
    assert summary, "no client connected"
    for number, sent in summary.items():
        got = received.get(number, [])
        assert got == list(range(len(got))), f"connection {number}: lines out of order"
        if sent["reset"]:
            assert len(got) <= sent["sent"]  # a reset may drop what was in flight
        else:
            assert len(got) == sent["sent"], f"connection {number}: lines lost"
    total = sum(len(seqs) for seqs in received.values())
    assert total > 1000, f"only {total} lines in the soak"
    if len(samples) > 3:
        steady = samples[2:]
        assert max(steady) - min(steady) < 32 * 1024 * 1024, f"RSS grew: {samples}"
    server.close()
