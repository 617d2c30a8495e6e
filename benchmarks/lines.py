"""Line consumers and the line producer of the benchmark suite.

Each run is two processes: ``produce`` writes lines into an fd (or connects
clients to a port), ``consume IMPL`` reads them with one implementation and
prints one JSON object: lines, bytes (delimiters counted), first and last
line, seconds from the first data to the last line. ``suite.py`` starts
them, and checks the counts and contents.

Every consumer runs the same body per line — count it, add its length,
remember it as the last — so the figures differ only by what the
implementation costs per line and per read.

Lines are ``%0Nd`` of their index modulo 1,000, padded with ``x`` to the
line size (delimiter ``\\n`` included), so the first and last lines a
consumer saw tell whether it cut the stream right.
"""

import gc
import json
import os
import selectors
import socket
import sys
import time
from typing import Callable, Dict, List, Optional, Tuple

BLOCK_LINES = 1000


def line(index: int, size: int) -> bytes:
    """The line number ``index`` of ``size`` bytes, delimiter included."""
    head = b"%06d" % (index % BLOCK_LINES)
    return head + b"x" * (size - len(head) - 1) + b"\n"


def block(size: int) -> bytes:
    return b"".join(line(i, size) for i in range(BLOCK_LINES))


# -- producers ---------------------------------------------------------------


def produce(fd: int, kind: str, count: int, size: int) -> None:
    """Write ``count`` lines to ``fd`` (a socket, or a pipe's write end), then close it."""
    data = block(size)
    blocks, rest = divmod(count, BLOCK_LINES)
    if kind == "pipe":
        view = memoryview(data)

        def send(chunk: memoryview) -> None:
            while chunk:
                chunk = chunk[os.write(fd, chunk) :]

        for _ in range(blocks):
            send(view)
        send(view[: rest * size])
        os.close(fd)
        return
    sock = socket.socket(fileno=fd)
    for _ in range(blocks):
        sock.sendall(data)
    sock.sendall(data[: rest * size])
    sock.close()


def produce_clients(port: int, clients: int, count: int, size: int) -> None:
    """Connect ``clients`` TCP clients; each sends ``count`` lines, round robin."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(clients)]
    data = block(size)
    step = 100 * size  # 100 lines per client per turn
    payload = (data * (count // BLOCK_LINES + 1))[: count * size]
    for start in range(0, len(payload), step):
        piece = payload[start : start + step]
        for sock in socks:
            sock.sendall(piece)
    for sock in socks:
        sock.close()


# -- consumers over one fd ---------------------------------------------------
#
# Each gets the fd, its kind ('unix', 'tcp', 'pipe') and the number of lines
# to expect, and returns (lines, bytes, first, last, seconds).

Result = Dict[str, object]


COLLECTIONS = [0, 0, 0]
"""Collections of the cyclic garbage collector per generation, counted by
``gc.callbacks`` from the start of the consumer (``main``)."""


def _count_collection(phase: str, info: Dict[str, int]) -> None:
    if phase == "start":
        COLLECTIONS[info["generation"]] += 1


def report(n: int, nbytes: int, first: bytes, last: bytes, t0: float) -> Result:
    return {
        "lines": n,
        "bytes": nbytes,
        "first": first.decode("latin-1"),
        "last": last.decode("latin-1"),
        "seconds": time.perf_counter() - t0,
        "gc": list(COLLECTIONS),
    }


def _bare_reader(
    fd: int, kind: str, size: int
) -> Tuple[selectors.BaseSelector, Callable[[], bytes]]:
    """A selector watching ``fd`` (made non-blocking), and a read of ``size`` bytes at most."""
    sel = selectors.DefaultSelector()
    if kind == "pipe":
        os.set_blocking(fd, False)
        read: Callable[[], bytes] = lambda: os.read(fd, size)  # noqa: E731
    else:
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        read = lambda: sock.recv(size)  # noqa: E731
    sel.register(fd, selectors.EVENT_READ)
    return sel, read


def consume_floor(fd: int, kind: str, count: int) -> Result:
    """The floor: selectors + recv(256 KiB) + bytes.split, a Python loop per line."""
    sel, read = _bare_reader(fd, kind, 262144)
    n = nbytes = 0
    tail = b""
    first = last = b""
    t0 = 0.0
    while n < count:
        sel.select()
        data = read()
        if not t0:
            t0 = time.perf_counter()
            first = data[: data.find(b"\n") + 1]
        if not data:
            break
        lines = (tail + data).split(b"\n")
        tail = lines.pop()
        for item in lines:
            n += 1
            nbytes += len(item)
            last = item
    return report(n, nbytes + n, first, last + b"\n", t0)


def consume_floor_tuples(fd: int, kind: str, count: int) -> Result:
    """The floor of poll()'s shape, the 0.2 API's: selectors + recv(124 KiB) +
    ``readlines()``, handed out as ``(line, token)`` tuples at most 1,024 a
    step (as ``poll()`` does, to stay within CPython's free list of tuples),
    then the same body per line. No fairness, no bookkeeping: what any
    implementation of that shape costs at least."""
    import io
    from itertools import repeat

    sel, read = _bare_reader(fd, kind, 126976)
    token = object()
    n = nbytes = 0
    tail = b""
    first = last = b""
    t0 = 0.0
    pending: List[bytes] = []
    at = 0
    while n < count:
        if at >= len(pending):
            sel.select()
            data = read()
            if not data:
                break
            pending = io.BytesIO(tail + data).readlines()
            tail = b"" if pending[-1].endswith(b"\n") else pending.pop()
            at = 0
        results = list(zip(pending[at : at + 1024], repeat(token)))
        at += 1024
        if not t0 and results:  # (a read shorter than a line gives none)
            t0 = time.perf_counter()
            first = results[0][0]
        for item, _ in results:
            n += 1
            nbytes += len(item)
            last = item
    return report(n, nbytes, first, last, t0)


def _channel(fd: int, kind: str) -> object:
    from channels import PipeChannel, SocketChannel

    if kind == "pipe":
        return PipeChannel(fd, None, buffering="line")
    return SocketChannel(socket.socket(fileno=fd), buffering="line")


def consume_channels(fd: int, kind: str, count: int) -> Result:
    """This library: Poller.poll(), the 0.2 API — one (line, channel) tuple per line."""
    from channels import Poller

    poller = Poller(buffering="line")
    poller.register(_channel(fd, kind))  # type: ignore[arg-type]
    n = nbytes = 0
    first = last = b""
    t0 = 0.0
    while n < count:
        results = poller.poll()
        if not t0:
            t0 = time.perf_counter()
            first = results[0][0]
        for data, _ in results:
            n += 1
            nbytes += len(data)
            last = data
    return report(n, nbytes, first, last, t0)


def consume_channels_batches(fd: int, kind: str, count: int) -> Result:
    """This library: Poller.poll_batches() — one list of lines per channel and read."""
    from channels import FramesReceived, Poller

    poller = Poller(buffering="line")
    poller.register(_channel(fd, kind))  # type: ignore[arg-type]
    n = nbytes = 0
    first = last = b""
    t0 = 0.0
    while n < count:
        events = poller.poll_batches()
        if not t0 and any(isinstance(event, FramesReceived) for event in events):
            t0 = time.perf_counter()  # (the first line, as every server here)
        for event in events:
            if isinstance(event, FramesReceived):
                first = first or event.frames[0]
                for data in event.frames:
                    n += 1
                    nbytes += len(data)
                    last = data
    return report(n, nbytes, first, last, t0)


def _asyncio_loop(uv: bool):  # type: ignore[no-untyped-def]
    import asyncio

    if uv:
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def consume_asyncio_streams(fd: int, kind: str, count: int, uv: bool = False) -> Result:
    """asyncio streams: StreamReader.readline() per line."""
    import asyncio

    state = {"n": 0, "nbytes": 0, "first": b"", "last": b"", "t0": 0.0}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if kind == "pipe":
            reader = asyncio.StreamReader(limit=2**20)
            await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0)
            )
        else:
            reader, _ = await asyncio.open_connection(sock=socket.socket(fileno=fd), limit=2**20)
        n = nbytes = 0
        last = await reader.readline()
        state["t0"] = time.perf_counter()
        state["first"] = last
        n, nbytes = 1, len(last)
        while n < count:
            data = await reader.readline()
            if not data:
                break
            n += 1
            nbytes += len(data)
            last = data
        state.update(n=n, nbytes=nbytes, last=last)

    loop = _asyncio_loop(uv)
    loop.run_until_complete(main())
    return report(state["n"], state["nbytes"], state["first"], state["last"], state["t0"])  # type: ignore[arg-type]


def consume_asyncio_protocol(fd: int, kind: str, count: int, uv: bool = False) -> Result:
    """asyncio Protocol: data_received() splits lines by hand."""
    import asyncio

    loop = _asyncio_loop(uv)
    done = loop.create_future()
    state: Dict[str, object] = {}

    class Lines(asyncio.Protocol):
        def __init__(self) -> None:
            self.tail = b""
            self.n = self.nbytes = 0
            self.first = self.last = b""
            self.t0 = 0.0

        def data_received(self, data: bytes) -> None:
            if not self.t0:
                self.t0 = time.perf_counter()
                self.first = data[: data.find(b"\n") + 1]
            lines = (self.tail + data).split(b"\n")
            self.tail = lines.pop()
            n, nbytes, last = self.n, self.nbytes, self.last
            for item in lines:
                n += 1
                nbytes += len(item)
                last = item
            self.n, self.nbytes, self.last = n, nbytes, last
            if n >= count and not done.done():
                state["result"] = report(n, nbytes + n, self.first, last + b"\n", self.t0)
                done.set_result(None)

        def eof_received(self) -> None:
            if not done.done():
                done.set_result(None)

    async def main() -> None:
        if kind == "pipe":
            await loop.connect_read_pipe(Lines, os.fdopen(fd, "rb", 0))
        else:
            await loop.create_connection(Lines, sock=socket.socket(fileno=fd))
        await done

    loop.run_until_complete(main())
    return state.get("result") or {"lines": 0, "bytes": 0, "first": "", "last": "", "seconds": 1}  # type: ignore[return-value]


def consume_twisted(fd: int, kind: str, count: int, only: bool = True) -> Result:
    """Twisted: lineReceived() per line (the default reactor: epoll), with
    LineOnlyReceiver (one split per read) or, not ``only``, LineReceiver (the
    class most Twisted line protocols use: one split per line, and it can
    switch to raw data)."""
    from twisted.internet import reactor, stdio
    from twisted.internet.protocol import Factory
    from twisted.protocols.basic import LineOnlyReceiver, LineReceiver

    state: Dict[str, object] = {}

    class Lines(LineOnlyReceiver if only else LineReceiver):  # type: ignore[misc]
        delimiter = b"\n"
        MAX_LENGTH = 2**20
        n = nbytes = 0
        first = last = b""
        t0 = 0.0

        def lineReceived(self, item: bytes) -> None:
            if not self.t0:
                self.t0 = time.perf_counter()
                self.first = item
            self.n += 1
            self.nbytes += len(item)
            self.last = item
            if self.n == count:
                state["result"] = report(
                    self.n, self.nbytes + self.n, self.first + b"\n", self.last + b"\n", self.t0
                )
                reactor.stop()  # type: ignore[attr-defined]

        def connectionLost(self, reason: object = None) -> None:
            if "result" not in state and reactor.running:  # type: ignore[attr-defined]
                reactor.stop()  # type: ignore[attr-defined]

    if kind == "pipe":
        stdio.StandardIO(Lines(), stdin=fd, stdout=os.open(os.devnull, os.O_WRONLY))
    else:
        family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
        reactor.adoptStreamConnection(fd, family, Factory.forProtocol(Lines))  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    return state.get("result") or {"lines": 0, "bytes": 0, "first": "", "last": "", "seconds": 1}  # type: ignore[return-value]


def consume_tornado(fd: int, kind: str, count: int) -> Result:
    """tornado: IOStream.read_until(b'\\n') per line."""
    import asyncio

    from tornado.iostream import IOStream, PipeIOStream

    async def main() -> Result:
        if kind == "pipe":
            stream: object = PipeIOStream(fd)
        else:
            stream = IOStream(socket.socket(fileno=fd), max_buffer_size=2**26)
        read_until = stream.read_until  # type: ignore[attr-defined]
        last = await read_until(b"\n")
        t0 = time.perf_counter()
        first = last
        n, nbytes = 1, len(last)
        while n < count:
            data = await read_until(b"\n")
            n += 1
            nbytes += len(data)
            last = data
        return report(n, nbytes, first, last, t0)

    return asyncio.new_event_loop().run_until_complete(main())


CONSUMERS: Dict[str, Callable[[int, str, int], Result]] = {
    "floor": consume_floor,
    "floor-tuples": consume_floor_tuples,
    "channels": consume_channels,
    "channels-batches": consume_channels_batches,
    "asyncio-streams": consume_asyncio_streams,
    "asyncio-protocol": consume_asyncio_protocol,
    "uvloop-streams": lambda fd, kind, count: consume_asyncio_streams(fd, kind, count, uv=True),
    "uvloop-protocol": lambda fd, kind, count: consume_asyncio_protocol(fd, kind, count, uv=True),
    "twisted": consume_twisted,
    "twisted-linereceiver": lambda fd, kind, count: consume_twisted(fd, kind, count, only=False),
    "tornado": consume_tornado,
}

# Which module each implementation needs beyond the standard library.
NEEDS: Dict[str, Optional[str]] = {
    "floor": None,
    "floor-tuples": None,
    "channels": "channels",
    "channels-batches": "channels",
    "asyncio-streams": None,
    "asyncio-protocol": None,
    "uvloop-streams": "uvloop",
    "uvloop-protocol": "uvloop",
    "twisted": "twisted",
    "twisted-linereceiver": "twisted",
    "tornado": "tornado",
}


# -- fan-in: many TCP clients, one server -----------------------------------
#
# The producer connects every client before any sends a line, so each server
# starts its clock at the first line it receives: the connecting is not timed
# (accepts that come later are).


def serve_floor(listener: socket.socket, clients: int, count: int) -> Result:
    """The floor server: selectors, accept, recv + split per connection."""
    sel = selectors.DefaultSelector()
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)
    tails: Dict[int, bytes] = {}
    n = nbytes = 0
    last = b""
    t0 = 0.0
    total = clients * count
    while n < total:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    while True:
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        tails[conn.fileno()] = b""
                        sel.register(conn, selectors.EVENT_READ, conn)
                except BlockingIOError:
                    continue
            conn = key.data
            data = conn.recv(262144)
            if not t0:
                t0 = time.perf_counter()
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            lines = (tails[key.fd] + data).split(b"\n")
            tails[key.fd] = lines.pop()
            for item in lines:
                n += 1
                nbytes += len(item)
                last = item
    return report(n, nbytes + n, b"", last + b"\n", t0)


def serve_channels(listener: socket.socket, clients: int, count: int) -> Result:
    """This library: Poller.add_server() and poll()."""
    from channels import Poller

    poller = Poller(buffering="line")
    poller.add_server(listener)
    n = nbytes = 0
    last = b""
    t0 = 0.0
    total = clients * count
    while n < total:
        results = poller.poll()
        if not t0 and any(data.__class__ is bytes and data for data, _ in results):
            t0 = time.perf_counter()  # (the first line, as every server here)
        for data, _ in results:
            if data.__class__ is bytes and data:  # not an accept, not a close
                n += 1
                nbytes += len(data)
                last = data
    return report(n, nbytes, b"", last, t0)


def serve_channels_batches(listener: socket.socket, clients: int, count: int) -> Result:
    """This library: Poller.add_server() and poll_batches()."""
    from channels import FramesReceived, Poller

    poller = Poller(buffering="line")
    poller.add_server(listener)
    n = nbytes = 0
    last = b""
    t0 = 0.0
    total = clients * count
    while n < total:
        events = poller.poll_batches()
        if not t0 and any(isinstance(event, FramesReceived) for event in events):
            t0 = time.perf_counter()  # (the first line, as every server here)
        for event in events:
            if isinstance(event, FramesReceived):
                for data in event.frames:
                    n += 1
                    nbytes += len(data)
                    last = data
    return report(n, nbytes, b"", last, t0)


def serve_asyncio_protocol(listener: socket.socket, clients: int, count: int) -> Result:
    """asyncio: a server with a Protocol splitting lines by hand."""
    import asyncio

    loop = asyncio.new_event_loop()
    done = loop.create_future()
    totals = {"n": 0, "nbytes": 0, "t0": 0.0, "last": b""}
    total = clients * count

    class Lines(asyncio.Protocol):
        tail = b""

        def data_received(self, data: bytes) -> None:
            if not totals["t0"]:
                totals["t0"] = time.perf_counter()
            lines = (self.tail + data).split(b"\n")
            self.tail = lines.pop()
            n, nbytes, last = totals["n"], totals["nbytes"], totals["last"]
            for item in lines:
                n += 1  # type: ignore[operator]
                nbytes += len(item)  # type: ignore[operator]
                last = item
            totals.update(n=n, nbytes=nbytes, last=last)
            if n >= total and not done.done():  # type: ignore[operator]
                done.set_result(None)

    async def main() -> None:
        server = await loop.create_server(Lines, sock=listener)
        await done
        server.close()

    loop.run_until_complete(main())
    n = int(totals["n"])  # type: ignore[call-overload]
    return report(n, int(totals["nbytes"]) + n, b"", totals["last"] + b"\n", totals["t0"])  # type: ignore[call-overload, operator, arg-type]


SERVERS: Dict[str, Callable[[socket.socket, int, int], Result]] = {
    "floor": serve_floor,
    "channels": serve_channels,
    "channels-batches": serve_channels_batches,
    "asyncio-protocol": serve_asyncio_protocol,
}


def main(argv: List[str]) -> int:
    role = argv[0]
    if role == "produce":
        fd, kind, count, size = argv[1:5]
        produce(int(fd), kind, int(count), int(size))
    elif role == "produce-clients":
        port, clients, count, size = argv[1:5]
        produce_clients(int(port), int(clients), int(count), int(size))
    elif role == "consume":
        impl, fd, kind, count = argv[1:5]
        gc.callbacks.append(_count_collection)
        print(json.dumps(CONSUMERS[impl](int(fd), kind, int(count))))
    elif role == "serve":
        impl, fd, clients, count = argv[1:5]
        listener = socket.socket(fileno=int(fd))
        gc.callbacks.append(_count_collection)
        print(json.dumps(SERVERS[impl](listener, int(clients), int(count))))
    else:
        raise SystemExit(f"unknown role {role!r}: produce, produce-clients, consume or serve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
