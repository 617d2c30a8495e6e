"""Per-poll, per-line and per-channel costs, each printed as one JSON object.

- ``idle IMPL K REPS``: median seconds of one poll that returns one line,
  with K idle registered channels besides the active one (IMPL: ``channels``,
  the ``floor`` = a raw ``selectors`` loop).
- ``readsize SIZE``: seconds per line of line framing fed SIZE-byte reads,
  for this library's framer and for the floor's ``split``.
- ``memory IMPL N``: RSS growth, in bytes per channel, of registering N idle
  connections, measured over the second half (IMPL: ``channels``,
  ``asyncio-protocol``, ``asyncio-streams``, ``selector``).

The idle ends of the connections live in a helper process, so that one
process holds one fd per connection (10,000 socketpairs would need 20,000).
"""

import json
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

HOLDER = """
import socket, sys, resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
sock = socket.socket(fileno=int(sys.argv[1]))
held = []
while True:
    msg, fds, _, _ = socket.recv_fds(sock, 16, 64)
    if not msg:
        break
    held += fds
"""


def raise_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def connections(count: int) -> Tuple[List[socket.socket], Callable[[], None]]:
    """``count`` connected Unix sockets whose peers another process holds open."""
    ours, theirs = socket.socketpair()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(theirs.fileno())], pass_fds=[theirs.fileno()]
    )
    theirs.close()
    socks = []
    for start in range(0, count, 64):
        batch = [socket.socketpair() for _ in range(min(64, count - start))]
        socket.send_fds(ours, [b"f"], [peer.fileno() for _, peer in batch])
        for mine, peer in batch:
            peer.close()
            socks.append(mine)

    def stop() -> None:
        ours.close()
        holder.wait(30)

    return socks, stop


def idle(impl: str, k: int, reps: int) -> Dict[str, object]:
    # Free one large block first: glibc then serves 256 KiB buffers from its
    # heap instead of mapping and unmapping each (as a process that has run a
    # while does); otherwise the floor's recv(256 KiB) pays two syscalls.
    warm = bytes(1 << 21)
    del warm
    socks, stop = connections(k)
    active, peer = socket.socketpair()
    payload = b"0123456789abcdef\n"
    if impl == "floor":
        sel = selectors.DefaultSelector()
        for sock in [*socks, active]:
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ)

        def poll() -> list:
            lines: list = []
            for key, _ in sel.select():
                lines += key.fileobj.recv(262144).split(b"\n")[:-1]  # type: ignore[union-attr]
            return lines

    else:
        from channels import Poller, SocketChannel

        poller = Poller(buffering="line")
        for sock in [*socks, active]:
            poller.register(SocketChannel(sock, buffering="line"))
        poll = poller.poll
    times = []
    for _ in range(reps):
        peer.send(payload)
        start = time.perf_counter()
        got = poll()
        times.append(time.perf_counter() - start)
        if len(got) != 1:
            raise SystemExit(f"{impl}: one poll gave {got!r}, not one line")
    stop()
    return {"seconds": statistics.median(times), "idle": k}


def readsize(size: int) -> Dict[str, object]:
    from channels import LineBuffering

    line = b"%031d\n"
    stream = b"".join(line % i for i in range(max(size, 1 << 20) // 32))
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    expected = len(stream) // 32

    def ours() -> int:
        framer = LineBuffering().new_framer()
        n = 0
        for chunk in chunks:
            framer.feed(chunk)
            n += len(framer.take_frames())  # type: ignore[attr-defined]
        return n

    def floor() -> int:
        tail = b""
        n = 0
        for chunk in chunks:
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            n += len(lines)
        return n

    result: Dict[str, object] = {"size": size}
    for name, run in (("channels", ours), ("floor", floor)):
        best = []
        for _ in range(5):
            start = time.perf_counter()
            if run() != expected:
                raise SystemExit(f"{name}: wrong line count at {size}-byte reads")
            best.append(time.perf_counter() - start)
        result[name] = statistics.median(best) / expected
    return result


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def memory(impl: str, count: int) -> Dict[str, object]:
    """RSS growth per channel over the second half of ``count`` registrations:
    the first half pays what is paid once (imports, the selector, the event
    loop, dicts growing from empty), so only what each channel costs is
    counted (it was: the import of the package alone, about 3 MB, made
    up several hundred bytes of the figure at 4,000 channels)."""
    socks, stop = connections(count)
    half = count // 2
    keep: list = []
    marks: List[int] = []
    if impl == "channels":
        from channels import Poller, SocketChannel

        poller = Poller(buffering="line")
        for index, sock in enumerate(socks):
            if index == half:
                poller.poll(0)
                marks.append(rss())
            channel = SocketChannel(sock, buffering="line")
            poller.register(channel)
            keep.append(channel)
        poller.poll(0)
    elif impl == "selector":  # the floor: a bare selector registration
        selector = selectors.DefaultSelector()
        for index, sock in enumerate(socks):
            if index == half:
                marks.append(rss())
            selector.register(sock, selectors.EVENT_READ)
        keep.append(selector)
    else:
        import asyncio

        async def main() -> None:
            loop = asyncio.get_running_loop()
            for index, sock in enumerate(socks):
                if index == half:
                    await asyncio.sleep(0)
                    marks.append(rss())
                if impl == "asyncio-streams":
                    keep.append(await asyncio.open_connection(sock=sock))
                else:
                    keep.append(await loop.create_connection(asyncio.Protocol, sock=sock))
            await asyncio.sleep(0)

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        keep.append(loop)
    after = rss()
    stop()
    return {"bytes_per_channel": (after - marks[0]) / (count - half), "channels": count}


def main(argv: List[str]) -> int:
    raise_fd_limit()
    what = argv[0]
    if what == "idle":
        print(json.dumps(idle(argv[1], int(argv[2]), int(argv[3]))))
    elif what == "readsize":
        print(json.dumps(readsize(int(argv[1]))))
    elif what == "memory":
        print(json.dumps(memory(argv[1], int(argv[2]))))
    else:
        raise SystemExit(f"unknown measure {what!r}: idle, readsize or memory")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
