"""Fixtures: channel makers over every transport, and every selector class.

A *maker* returns ``(channel, peer)``: the channel under test and a ``Peer``
that plays the other end (sends to the channel, receives what it wrote,
closes). The channel contract in ``test_channel.py`` runs over all of them.
"""

import contextlib
import gc
import os
import select
import selectors
import shutil
import socket
import struct
import sys
import tempfile
import time
import warnings
from typing import Callable, Iterator, List, Optional, Tuple, Type

import pytest

from channels import Channel, PipeChannel, Poller, PollEvent, SocketChannel
from channels.buffering import BufferingArg
from channels.testing import TestChannel

DEADLINE = 5.0

WINDOWS = sys.platform == "win32"
posix_only = pytest.mark.skipif(WINDOWS, reason="POSIX only: pipes, Unix sockets, signals or fds")


def _selector_classes() -> List[Type[selectors.BaseSelector]]:
    names = ["SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector", "KqueueSelector"]
    return [getattr(selectors, name) for name in names if hasattr(selectors, name)]


SELECTOR_CLASSES = _selector_classes()


@pytest.fixture(params=SELECTOR_CLASSES, ids=lambda cls: cls.__name__)
def selector_cls(request: pytest.FixtureRequest) -> Type[selectors.BaseSelector]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_poller(selector_cls: Type[selectors.BaseSelector]) -> Iterator[Callable[..., Poller]]:
    """Make Pollers on the parametrized selector class; close them afterwards."""
    made: List[Poller] = []

    def make(buffering: BufferingArg = "bytes") -> Poller:
        poller = Poller(buffering=buffering, selector=selector_cls)
        made.append(poller)
        return poller

    yield make
    for poller in made:
        poller.close()


@pytest.fixture
def poller(make_poller: Callable[..., Poller]) -> Poller:
    return make_poller()


def watched_fds(poller: Poller) -> List[int]:
    """The fds the poller's selector holds for channels and servers (not its wakeup)."""
    return [
        key.fd
        for key in poller.selector.get_map().values()
        if type(key.data).__name__ in ("Watched", "Server")
    ]


def data_of(results: list, channel: object) -> List[bytes]:
    return [data for data, source in results if source is channel]


def closed(channel: object) -> Callable[[list], bool]:
    return lambda results: (b"", channel) in [(d, s) for d, s in results if s is channel]


def socketpair_on_fd(fd: int) -> Tuple[socket.socket, socket.socket]:
    """A socketpair whose first socket has the (free) fd number ``fd``."""
    mine, theirs = socket.socketpair()
    if mine.fileno() != fd:
        os.dup2(mine.fileno(), fd)
        mine.close()
        mine = socket.socket(fileno=fd)
    return mine, theirs


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


class Interrupted(BaseException):
    """What a test's signal handler raises: like KeyboardInterrupt, not an Exception."""


def wait_readable(fd: int, timeout: float = DEADLINE) -> None:
    """Wait until fd is readable; fail the test after timeout."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, f"fd {fd} did not become readable within {timeout}s"


def poll_until(
    poller: Poller, predicate: Callable[[list], bool], timeout: float = DEADLINE
) -> list:
    """Poll, collecting results, until predicate(results) holds; fail at the deadline."""
    results: list = []
    deadline = time.monotonic() + timeout
    while not predicate(results):
        left = deadline - time.monotonic()
        assert left > 0, f"condition not met within {timeout}s; got {results!r}"
        results.extend(poller.poll(min(left, 0.05)))
    return results


def events_until(
    poller: Poller, predicate: Callable[[List[PollEvent]], bool], timeout: float = DEADLINE
) -> List[PollEvent]:
    """poll_events(), collecting, until predicate(events) holds; fail at the deadline."""
    got: List[PollEvent] = []
    deadline = time.monotonic() + timeout
    while not predicate(got):
        left = deadline - time.monotonic()
        assert left > 0, f"condition not met within {timeout}s; got {got!r}"
        got += poller.poll_events(min(left, 0.05))
    return got


def read_until(channel: Channel, predicate: Callable[[List[bytes]], bool]) -> List[bytes]:
    """read() the channel (waiting on its fd) until predicate(frames) holds."""
    frames: List[bytes] = []
    deadline = time.monotonic() + DEADLINE
    while not predicate(frames):
        frame = channel.read()
        if frame:
            frames.append(frame)
            continue
        left = deadline - time.monotonic()
        assert left > 0, f"condition not met within {DEADLINE}s; got {frames!r}"
        select.select([channel.get_fd()], [], [], min(left, 0.2))
    return frames


class Peer:
    """The other end of a channel under test.

    ``close()`` ends the stream the channel reads; ``end()`` does that and
    nothing more (a half-close: the peer still reads), where the transport
    has it; ``reset()`` breaks the connection (None: the transport cannot).
    """

    def __init__(
        self,
        send: Callable[[bytes], None],
        recv: Callable[[], bytes],
        close: Callable[[], None],
        readable_fd: int,
        *,
        end: Optional[Callable[[], None]] = None,
        reset: Optional[Callable[[], None]] = None,
        take: Optional[Callable[[], Tuple[bytes, bool]]] = None,
    ) -> None:
        self._send = send
        self._recv = recv
        self._close = close
        self.end = end or close
        self.reset = reset
        self.take = take or (lambda: (self._recv(), False))
        """What the channel wrote and the OS holds now, and whether its stream
        ended there (never blocks)."""
        self.readable_fd = readable_fd

    def send(self, data: bytes) -> None:
        self._send(data)

    def close(self) -> None:
        self._close()

    def recv_once(self) -> bytes:
        """One read of what the channel wrote (at most 64 KiB; ``b''`` if none)."""
        return self._recv()

    def recv_available(self) -> bytes:
        """What the channel wrote and the OS holds now (``b''`` if nothing)."""
        data = b""
        while True:
            chunk = self._recv()
            if not chunk:
                return data
            data += chunk

    def recv_exactly(self, size: int) -> bytes:
        """What the channel wrote: exactly size bytes, within the deadline."""
        data = b""
        deadline = time.monotonic() + DEADLINE
        while len(data) < size:
            chunk = self._recv()
            if chunk:
                data += chunk
                continue
            late = time.monotonic() >= deadline
            assert not late, f"got {len(data)} of {size} bytes within {DEADLINE}s"
            self.wait_for_output(deadline)
        assert len(data) == size, f"got {len(data)} bytes, expected {size}"
        return data

    def wait_for_output(self, deadline: float) -> None:
        """Wait until what the channel wrote (or its end) can be read, but
        not past ``deadline`` (``time.monotonic()``), nor 0.2 s at a time."""
        left = deadline - time.monotonic()
        if left > 0:
            select.select([self.readable_fd], [], [], min(left, 0.2))


Maker = Callable[[BufferingArg], Tuple[Channel, Peer]]


def _socket_peer(sock: socket.socket) -> Peer:
    sock.settimeout(DEADLINE)

    def recv() -> bytes:
        if not select.select([sock], [], [], 0)[0]:
            return b""
        return sock.recv(65536)

    def close() -> None:
        sock.close()

    def end() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)

    def reset() -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    def take() -> Tuple[bytes, bool]:
        data = b""
        while select.select([sock], [], [], 0)[0]:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
        return data, False

    # Only TCP resets: a Unix socket closed with SO_LINGER 0 just closes.
    tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
    return Peer(
        sock.sendall,
        recv,
        close,
        sock.fileno(),
        end=end,
        reset=reset if tcp else None,
        take=take,
    )


def make_pipe(buffering: BufferingArg, cleanup: List[Callable[[], None]]) -> Tuple[Channel, Peer]:
    to_channel_r, to_channel_w = os.pipe()
    from_channel_r, from_channel_w = os.pipe()
    # A non-blocking sink, like a socket's: write() queues what the OS does
    # not take. Blocking sinks have tests of their own in test_channel.py.
    os.set_blocking(from_channel_w, False)
    channel = PipeChannel(to_channel_r, from_channel_w, buffering=buffering)
    os.set_blocking(from_channel_r, False)
    closed = []

    def send(data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(to_channel_w, view) :]

    def recv() -> bytes:
        try:
            return os.read(from_channel_r, 65536)
        except BlockingIOError:
            return b""

    def close() -> None:
        if not closed:
            closed.append(True)
            os.close(to_channel_w)

    def take() -> Tuple[bytes, bool]:
        data = b""
        while True:
            try:
                chunk = os.read(from_channel_r, 65536)
            except BlockingIOError:
                return data, False
            if not chunk:
                return data, True
            data += chunk

    def release() -> None:
        close()
        os.close(from_channel_r)

    cleanup.append(release)
    return channel, Peer(send, recv, close, from_channel_r, take=take)


def make_socketpair(
    buffering: BufferingArg, cleanup: List[Callable[[], None]]
) -> Tuple[Channel, Peer]:
    mine, theirs = socket.socketpair()
    cleanup.append(theirs.close)
    return SocketChannel(mine, buffering=buffering), _socket_peer(theirs)


def _connected_pair(family: int, address: object) -> Tuple[socket.socket, socket.socket]:
    with socket.socket(family, socket.SOCK_STREAM) as listener:
        listener.bind(address)
        listener.listen(1)
        client = socket.socket(family, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        server_side, _ = listener.accept()
    return server_side, client


def make_tcp(buffering: BufferingArg, cleanup: List[Callable[[], None]]) -> Tuple[Channel, Peer]:
    mine, theirs = _connected_pair(socket.AF_INET, ("127.0.0.1", 0))
    cleanup.append(theirs.close)
    return SocketChannel(mine, buffering=buffering), _socket_peer(theirs)


def make_unix(
    buffering: BufferingArg, cleanup: List[Callable[[], None]], directory: str
) -> Tuple[Channel, Peer]:
    mine, theirs = _connected_pair(socket.AF_UNIX, os.path.join(directory, "sock"))
    cleanup.append(theirs.close)
    return SocketChannel(mine, buffering=buffering), _socket_peer(theirs)


def make_test_channel(
    buffering: BufferingArg, cleanup: List[Callable[[], None]]
) -> Tuple[Channel, Peer]:
    channel = TestChannel(buffering=buffering)
    # get() reads the test's end of the socketpair: wait on that fd.
    test_end = channel._test_end
    assert test_end is not None

    def take() -> Tuple[bytes, bool]:
        return channel.get(), channel.write_ended

    return channel, Peer(
        channel.put,
        channel.get,
        channel.put_eof,
        test_end.fileno(),
        reset=channel.reset_peer,
        take=take,
    )


MAKERS = [
    pytest.param("pipe", marks=posix_only),
    "socketpair",
    "tcp",
    pytest.param("unix", marks=posix_only),
    "testchannel",
]


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A directory with a short path: Unix socket paths are limited to ~100 bytes."""
    path = tempfile.mkdtemp(prefix="ch-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=MAKERS)
def make_channel(request: pytest.FixtureRequest, short_tmp: str) -> Iterator[Maker]:
    """A maker of (channel, peer) over each transport; everything is closed afterwards."""
    cleanup: List[Callable[[], None]] = []
    channels: List[Channel] = []

    def make(buffering: BufferingArg = "bytes") -> Tuple[Channel, Peer]:
        kind = request.param
        if kind == "pipe":
            made = make_pipe(buffering, cleanup)
        elif kind == "socketpair":
            made = make_socketpair(buffering, cleanup)
        elif kind == "tcp":
            made = make_tcp(buffering, cleanup)
        elif kind == "unix":
            made = make_unix(buffering, cleanup, short_tmp)
        else:
            made = make_test_channel(buffering, cleanup)
        channels.append(made[0])
        return made

    yield make
    for channel in channels:
        channel.close()
    for release in cleanup:
        release()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test closes what it opens: what it left to the garbage collector is
    reported at the test that leaked it (before its fixtures tear down), not
    at whichever later test the collector happens to run in."""
    yield
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    if leaks:
        pytest.fail(f"{item.nodeid} left these to the garbage collector: {leaks}")
