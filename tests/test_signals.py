"""A signal handler that raises, at random points, while data flows.

A ``SIGALRM`` timer fires every ~0.5 ms; its handler raises (``Tick``, or a
``TimeoutError`` as a timeout with ``SIGALRM`` does) only when it lands in the
library's own code, so every raise tests the library, not this file. Numbered
lines and bulk writes flow over a socket and a pipe; every byte is counted in
and out: none lost, none duplicated, in order, and every raise reaches the
caller. CPython 3.9 runs a handler between almost any two bytecodes, which no
pure-Python library can fence: the README says what holds there, and these
tests run on 3.10 and later.
"""

import contextlib
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from types import FrameType
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type, TypeVar

import pytest

import channels
import channels._outbox
import channels._selecting
from channels import Channel, EndpointClosedException, PipeChannel, Poller, SocketChannel
from channels.events import ChannelClosed, ClientAccepted, DataReceived, FramesReceived

from .conftest import posix_only

pytestmark = [
    posix_only,
    pytest.mark.skipif(
        sys.version_info < (3, 10),
        reason="CPython 3.9 runs signal handlers between any two bytecodes (README: Signals)",
    ),
]

LIBRARY = os.path.dirname(channels.__file__) + os.sep
OURS = (LIBRARY, selectors.__file__, socket.__file__)
ACCEPTING = os.path.join(LIBRARY, "_accept.py")
INTERVAL = 0.001
RAISES = 300
BLOCK = 500
MAX_LINES = 4_000_000
RUN_FOR = 20.0  # seconds at most per test (the deadline of every loop)
DEBUG = bool(os.environ.get("DEBUG_RAISES"))  # print the stacks of swallowed raises


_T = TypeVar("_T")


class Tick(Exception):
    """What the handler raises, unless it raises a ``TimeoutError``."""


class Interrupter:
    """A ``SIGALRM`` handler raising in library code; counts its raises."""

    def __init__(self) -> None:
        self.raised = 0
        self.in_accepting = 0  # (raises while a client was being accepted)
        self.stacks: List[Tuple[BaseException, traceback.StackSummary]] = []
        self.caught = 0
        self.armed = False
        self._counted: Dict[int, BaseException] = {}  # (kept alive: ids stay unique)

    def handler(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self.armed or frame is None or not frame.f_code.co_filename.startswith(OURS):
            return  # (not in a finalizer or weakref callback either: it would be unraisable)
        while frame is not None:
            if frame.f_code.co_filename.startswith(LIBRARY):
                self.raised += 1
                self.in_accepting += _accepting(frame)
                exc: Exception = TimeoutError("alarm") if self.raised % 3 == 0 else Tick()
                if DEBUG:
                    self.stacks.append((exc, traceback.extract_stack(frame)))
                raise exc
            frame = frame.f_back

    def catch(self, call: Callable[[], object]) -> object:
        """``call()``; a raise from the handler is counted and gives None."""
        try:
            return call()
        except (Tick, TimeoutError) as exc:
            self.count(exc)
            return None

    def returns(self, call: Callable[[], object]) -> bool:
        """True if ``call()`` returned; False if the handler's raise came out."""
        try:
            call()
        except (Tick, TimeoutError) as exc:
            self.count(exc)
            return False
        return True

    def value(self, get: Callable[[], _T]) -> _T:
        """``get()``, tried again while the handler raises in it (a property)."""
        while True:
            try:
                return get()
            except (Tick, TimeoutError) as exc:
                self.count(exc)

    def count(self, exc: BaseException) -> None:
        """Count a raise, and those it replaced (raised while one was handled,
        even if some other exception came between), each once."""
        seen: Optional[BaseException] = exc
        while seen is not None:
            if isinstance(seen, (Tick, TimeoutError)) and id(seen) not in self._counted:
                assert isinstance(seen, Tick) or seen.errno is None, seen
                self._counted[id(seen)] = seen
                self.caught += 1
            seen = seen.__context__

    def check(self) -> None:
        if DEBUG and self.caught != self.raised:  # (which raise was swallowed, and where)
            for exc, stack in self.stacks:
                if id(exc) not in self._counted:
                    print("".join(traceback.format_list(stack[-8:])))
        assert self.raised >= RAISES, "the handler hardly ever landed in the library"
        assert self.caught == self.raised, "a raise was swallowed by the library"


def _accepting(frame: Optional[FrameType]) -> bool:
    while frame is not None:
        if frame.f_code.co_filename == ACCEPTING:
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def interrupter() -> Iterator[Interrupter]:
    interrupter = Interrupter()
    old = signal.signal(signal.SIGALRM, interrupter.handler)
    signal.setitimer(signal.ITIMER_REAL, INTERVAL, INTERVAL)
    try:
        yield interrupter
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def numbered(count: int, start: int = 0) -> bytes:
    return b"".join(b"line %08d ..........\n" % number for number in range(start, start + count))


class Feeder:
    """Sends numbered lines from a thread (signal handlers run in the main
    thread only) until the handler raised ``RAISES`` times in the library
    (or ``MAX_LINES`` went), then closes; ``sent`` is how many."""

    def __init__(
        self,
        interrupter: Interrupter,
        write: Callable[[bytes], object],
        close: Callable[[], object],
    ) -> None:
        self.sent = 0
        self._interrupter = interrupter
        self._write = write
        self._close = close
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while self.sent < MAX_LINES and self._interrupter.raised < RAISES:
                self._write(numbered(BLOCK, self.sent))
                self.sent += BLOCK
        finally:
            self._close()


def reading_pair(kind: str) -> Tuple[Channel, Callable[[bytes], object], Callable[[], object]]:
    """A line channel, and how to send to it and close its peer."""
    if kind == "socket":
        mine, theirs = socket.socketpair()
        theirs.setblocking(True)
        return SocketChannel(mine, buffering="line"), theirs.sendall, theirs.close
    faucet, sink = os.pipe()

    def write_all(data: bytes) -> None:
        view = memoryview(data)
        while view:  # (the signal may land in this thread: a write may stop short)
            view = view[os.write(sink, view) :]

    return PipeChannel(faucet=faucet, buffering="line"), write_all, lambda: os.close(sink)


def check_lines(got: List[bytes], count: int) -> None:
    expected = numbered(count).splitlines(keepends=True)
    assert len(got) == len(set(got)), "lines duplicated"
    assert len(got) == count, f"{count - len(got)} lines lost"
    assert got == expected, "lines out of order or changed"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["socket", "pipe"])
@pytest.mark.parametrize("view", ["poll", "poll_events", "poll_batches"])
def test_a_raising_handler_loses_no_line_and_repeats_none(
    interrupter: Interrupter, kind: str, view: str, selector_cls: Type[selectors.BaseSelector]
) -> None:
    channel, send, close_peer = reading_pair(kind)
    feeder = Feeder(interrupter, send, close_peer)
    got: List[bytes] = []
    ended = False
    deadline = time.monotonic() + RUN_FOR
    with Poller(buffering="line", selector=selector_cls) as poller:
        poller.register(channel)
        poll = getattr(poller, view)
        interrupter.armed = True
        while not ended and time.monotonic() < deadline:
            results = interrupter.catch(lambda: poll(0.5))
            for item in results or ():
                if isinstance(item, tuple):
                    if item[0]:
                        got.append(item[0])
                    else:
                        ended = True
                elif isinstance(item, DataReceived):
                    got.append(item.data)
                elif isinstance(item, FramesReceived):
                    got.extend(item.frames)
                elif isinstance(item, ChannelClosed):
                    ended = True
        interrupter.armed = False
    channel.close()
    assert ended, "the end of the stream was never reported"
    check_lines(got, feeder.sent)
    interrupter.check()


def _lines_of(item: object) -> Optional[List[bytes]]:
    """The lines of one item of any view; ``[]`` for a close; None otherwise."""
    if isinstance(item, tuple):
        return [item[0]] if item[0] else []
    if isinstance(item, DataReceived):
        return [item.data]
    if isinstance(item, FramesReceived):
        return list(item.frames)
    if isinstance(item, ChannelClosed):
        return []
    return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("view", ["poll", "poll_events", "poll_batches"])
def test_a_raising_handler_loses_no_line_of_many_senders(
    interrupter: Interrupter, view: str, selector_cls: Type[selectors.BaseSelector]
) -> None:
    """40 busy channels: more than a call reads (READS_PER_POLL) and more
    than a round serves in one call, so rounds span calls and ready lists
    are finished by the next call, all while the handler raises. Every
    channel's lines come once, in order, and its end once."""
    pairs = [socket.socketpair() for _ in range(40)]
    for mine, theirs in pairs:  # (little waits in the kernel: the drain at the end is short)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sent = [0] * len(pairs)

    def feed() -> None:  # (one thread, round robin, until enough raises)
        try:
            while interrupter.raised < RAISES and sum(sent) < MAX_LINES:
                for index, (_, theirs) in enumerate(pairs):
                    theirs.sendall(numbered(BLOCK, sent[index]))
                    sent[index] += BLOCK
        finally:
            for _, theirs in pairs:
                theirs.close()

    channels_ = [SocketChannel(mine, buffering="line") for mine, _ in pairs]
    got: Dict[int, List[bytes]] = {id(channel): [] for channel in channels_}
    ended: Dict[int, int] = {}
    feeder = threading.Thread(target=feed, daemon=True)
    deadline = time.monotonic() + RUN_FOR
    with Poller(buffering="line", selector=selector_cls) as poller:
        for channel in channels_:
            poller.register(channel)
        poll = getattr(poller, view)
        feeder.start()
        interrupter.armed = True
        while len(ended) < len(channels_) and time.monotonic() < deadline:
            for item in interrupter.catch(lambda: poll(0.5)) or ():
                lines = _lines_of(item)
                source = id(item[1] if isinstance(item, tuple) else item.channel)  # type: ignore[union-attr]
                if lines:
                    got[source] += lines
                elif lines == []:
                    ended[source] = ended.get(source, 0) + 1
        interrupter.armed = False
    feeder.join(RUN_FOR)
    assert not feeder.is_alive()
    for channel in channels_:
        channel.close()
    assert ended == {id(channel): 1 for channel in channels_}, (
        f"an end lost or repeated: {len(ended)} ends, lines {sum(map(len, got.values()))}"
        f" of {sum(sent)}, {interrupter.raised} raises"
    )
    for index, channel in enumerate(channels_):
        check_lines(got[id(channel)], sent[index])
    interrupter.check()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["socket", "pipe"])
def test_read_under_a_raising_handler(interrupter: Interrupter, kind: str) -> None:
    channel, send, close_peer = reading_pair(kind)
    feeder = Feeder(interrupter, send, close_peer)
    got: List[bytes] = []
    deadline = time.monotonic() + RUN_FOR
    interrupter.armed = True
    while time.monotonic() < deadline:
        try:
            line = interrupter.catch(channel.read)
        except EndpointClosedException:
            break
        if line:
            assert isinstance(line, bytes)
            got.append(line)
    interrupter.armed = False
    channel.close()
    check_lines(got, feeder.sent)
    interrupter.check()


WIDTH = len(numbered(1))  # (every numbered line is as long)


def expected_at(position: int, size: int) -> bytes:
    """The ``size`` bytes of the numbered stream from ``position`` on."""
    first = position // WIDTH
    text = numbered((position + size) // WIDTH - first + 1, first)
    return text[position - first * WIDTH :][:size]


def writing_pair(kind: str) -> Tuple[Channel, Callable[[], Tuple[int, Optional[int]]]]:
    """A channel to write to, and what its peer read: checked as it comes
    (a thread), so any amount can flow; the result is how many bytes came
    and where the first one that is not the numbered stream's was."""
    got = [0, -1]
    if kind == "socket":
        mine, theirs = socket.socketpair()
        theirs.setblocking(True)
        channel: Channel = SocketChannel(mine)
        recv: Callable[[], bytes] = lambda: theirs.recv(65536)  # noqa: E731
        done = theirs.close
    else:
        faucet, sink = os.pipe()
        quiet, unused = os.pipe()  # (a faucet that never speaks: a Poller watches it)
        os.close(unused)
        os.set_blocking(sink, False)
        channel = PipeChannel(faucet=quiet, sink=sink)
        recv = lambda: os.read(faucet, 65536)  # noqa: E731
        done = lambda: os.close(faucet)  # noqa: E731

    def run() -> None:
        while True:
            data = recv()
            if not data:
                break
            if got[1] < 0 and data != expected_at(got[0], len(data)):
                got[1] = got[0]
            got[0] += len(data)
            time.sleep(0.0001)  # (slower than the writer: output queues up)
        done()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def result() -> Tuple[int, Optional[int]]:
        thread.join(RUN_FOR)
        assert not thread.is_alive(), "the reader never saw the end"
        return got[0], None if got[1] < 0 else got[1]

    return channel, result


def write_all(interrupter: Interrupter, channel: Channel) -> int:
    """Write numbered lines ``BLOCK`` at a time (in two chunks) until the
    handler raised ``RAISES`` times; return how many lines. A write that
    raised is retried only if it was not taken: ``channel.accepted`` tells."""
    deadline = time.monotonic() + RUN_FOR
    count = 0
    while interrupter.raised < RAISES:
        block = numbered(BLOCK, count)
        while True:
            assert time.monotonic() < deadline, "the writes made no progress"
            before = interrupter.value(lambda: channel.accepted)
            try:
                channel.write(block[:1000], block[1000:])
            except (Tick, TimeoutError) as exc:
                interrupter.count(exc)
                after = interrupter.value(lambda: channel.accepted)
                if after == before:
                    continue
                assert after == before + len(block), "a write was taken in part"
            except channels.WriteBufferFullError:
                interrupter.catch(lambda: channel.flush(1.0))
                continue
            break
        count += BLOCK
    return count


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["socket", "pipe"])
@pytest.mark.parametrize("ending", ["flush", "close"])
def test_a_raising_handler_sends_nothing_twice(
    interrupter: Interrupter, kind: str, ending: str
) -> None:
    sends_nothing_twice(interrupter, kind, ending, None)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["socket", "pipe"])
@pytest.mark.parametrize("ending", ["poller", "close_all"])
def test_a_raising_handler_sends_nothing_twice_through_a_poller(
    interrupter: Interrupter, kind: str, ending: str, selector_cls: Type[selectors.BaseSelector]
) -> None:
    sends_nothing_twice(interrupter, kind, ending, selector_cls)


def sends_nothing_twice(
    interrupter: Interrupter,
    kind: str,
    ending: str,
    selector_cls: Optional[Type[selectors.BaseSelector]],
) -> None:
    """Bulk writes, then the ending: every byte arrives once, in order."""
    channel, received = writing_pair(kind)
    channel.high_water = 256 * 1024
    poller = Poller(selector=selector_cls)
    if selector_cls is not None:
        poller.register(channel)
    interrupter.armed = True
    count = write_all(interrupter, channel)
    deadline = time.monotonic() + RUN_FOR
    if ending == "flush":
        while not interrupter.catch(channel.flush) and time.monotonic() < deadline:
            pass
    if ending == "poller":  # its background close, after it delivered
        while interrupter.value(lambda: channel.write_buffer_size):
            interrupter.catch(lambda: poller.poll(0.1))
            assert time.monotonic() < deadline
        while not interrupter.returns(channel.close):
            pass
        while not interrupter.value(lambda: channel.closed) or interrupter.value(
            lambda: channel.closing
        ):
            interrupter.catch(lambda: poller.poll(0.1))
            assert time.monotonic() < deadline
    if ending == "close_all":
        while not interrupter.returns(poller.close_all):  # (interrupted: called again)
            assert time.monotonic() < deadline
        assert interrupter.value(lambda: channel.closed)  # (still armed: a property too)
    while not interrupter.returns(channel.close):  # (interrupted: it is called again)
        assert time.monotonic() < deadline
    interrupter.armed = False
    poller.close()
    assert channel.undelivered == 0
    size, wrong_at = received()
    assert size == count * WIDTH, f"{size - count * WIDTH} bytes more than written"
    assert wrong_at is None, f"the stream differs from what was written at byte {wrong_at}"
    interrupter.check()


MAX_CLIENTS = 20_000
IN_FLIGHT = 32  # (clients connected but not yet accepted: well inside the backlog)


class Connector:
    """Connects clients from a thread, each sending one numbered line and
    closing, until the handler raised ``RAISES`` times; ``connected`` counts
    them. It keeps at most ``IN_FLIGHT`` ahead of those accepted, so the
    listen backlog never overflows (a refused connect is no test of ours)."""

    def __init__(self, interrupter: Interrupter, address: object, family: int) -> None:
        self.connected = 0
        self.accepted = 0  # (counted by the test, through accept())
        self.progress = threading.Condition()
        self._interrupter = interrupter
        self._address = address
        self._family = family
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + RUN_FOR
        while (
            self.connected < MAX_CLIENTS
            and self._interrupter.raised < RAISES
            and time.monotonic() < deadline
        ):
            with self.progress:  # (until enough were accepted, or the deadline)
                self.progress.wait_for(
                    lambda: self.connected - self.accepted < IN_FLIGHT,
                    deadline - time.monotonic(),
                )
            if self.connected - self.accepted >= IN_FLIGHT:
                continue
            with socket.socket(self._family, socket.SOCK_STREAM) as client:
                client.connect(self._address)
                client.sendall(b"client %08d\n" % self.connected)
            self.connected += 1

    def accept(self, count: int) -> None:
        """The test saw ``count`` clients accepted."""
        with self.progress:
            self.accepted = count
            self.progress.notify()

    def join(self) -> None:
        self._thread.join(RUN_FOR)
        assert not self._thread.is_alive()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_a_raising_handler_leaks_no_client_and_reports_each_once(
    interrupter: Interrupter,
    family: str,
    selector_cls: Type[selectors.BaseSelector],
    tmp_path: "os.PathLike[str]",
) -> None:
    """Clients connect while the handler raises, in accepting too: each is
    reported accepted once, before its data; its line comes once; no fd is
    left open."""
    if family == "tcp":
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
    else:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(os.path.join(os.fspath(tmp_path), "server"))
    server.listen(128)
    fds_before = open_fds()
    accepted: Dict[int, SocketChannel] = {}  # (by identity)
    lines: List[bytes] = []
    ended = 0
    with server, Poller(buffering="line", selector=selector_cls) as poller:
        poller.add_server(server)
        connector = Connector(interrupter, server.getsockname(), server.family)
        interrupter.armed = True
        deadline = time.monotonic() + RUN_FOR
        while time.monotonic() < deadline and (
            connector._thread.is_alive() or ended < connector.connected
        ):
            if not connector._thread.is_alive():
                interrupter.armed = False  # (the rest is drained quietly)
            for event in interrupter.catch(lambda: poller.poll_events(0.1)) or ():
                if isinstance(event, ClientAccepted):
                    assert id(event.channel) not in accepted, "a client reported twice"
                    accepted[id(event.channel)] = event.channel
                    connector.accept(len(accepted))
                elif isinstance(event, DataReceived):
                    assert id(event.channel) in accepted, "data of a client never reported"
                    lines.append(event.data)
                elif isinstance(event, ChannelClosed):
                    assert id(event.channel) in accepted, "the end of a client never reported"
                    ended += 1
                    while not interrupter.returns(event.channel.close):
                        pass
        interrupter.armed = False
        connector.join()
    assert len(accepted) == connector.connected, "clients lost in accepting"
    assert ended == connector.connected
    assert sorted(lines) == [b"client %08d\n" % number for number in range(connector.connected)]
    assert open_fds() == fds_before - 1, "fds leaked"  # (the server is closed)
    interrupter.check()
    assert interrupter.in_accepting >= 10, "the handler hardly ever landed in accepting"


class Cut(Exception):
    """Raised by a real signal handler at one chosen point."""


def _cut(signum: int, frame: Optional[FrameType]) -> None:
    raise Cut


@pytest.fixture
def cutter() -> Iterator[Callable[[], None]]:
    """``cut()``: a signal handler (installed for the test) raises ``Cut`` there."""
    old = signal.signal(signal.SIGUSR1, _cut)
    try:
        yield lambda: signal.raise_signal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)


@pytest.mark.parametrize("ending", ["poll", "close_all"])
@pytest.mark.parametrize("point", ["made", "registered"])
def test_an_accept_cut_short_is_finished_once(
    cutter: Callable[[], None],
    point: str,
    ending: str,
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    """A raise after the client's channel was made, or after it was
    registered: the next poll() (or close_all()) reports it once; its data
    comes after; nothing leaks."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    fds_before = open_fds()
    with server, Poller(buffering="line", selector=selector_cls) as poller:
        poller.add_server(server)
        acceptor = poller._acceptor
        registry = poller._registry
        make, watch = acceptor._make_client, registry.watch
        calls: List[str] = []

        def cut_after(name: str, call: Callable[..., _T]) -> Callable[..., _T]:
            def wrapper(*args: object) -> _T:
                result = call(*args)
                calls.append(name)
                if calls.count(name) == 1:
                    cutter()
                return result

            return wrapper

        if point == "made":
            acceptor._make_client = cut_after("made", make)  # type: ignore[method-assign]
        else:
            registry.watch = cut_after("registered", watch)  # type: ignore[method-assign]
        with socket.create_connection(server.getsockname()) as client:
            client.sendall(b"hello\n")
            deadline = time.monotonic() + 5
            with pytest.raises(Cut):
                while time.monotonic() < deadline:
                    assert poller.poll_events(0.1) == []
            events: List[object] = []
            if ending == "close_all":
                poller.close_all()
                deadline = time.monotonic() + 5
                while not any(isinstance(event, ChannelClosed) for event in events):
                    events += poller.poll_events(0.1)
                    assert time.monotonic() < deadline
            else:
                while not any(isinstance(event, DataReceived) for event in events):
                    events += poller.poll_events(0.1)
                    assert time.monotonic() < deadline
            accepted = [event for event in events if isinstance(event, ClientAccepted)]
            assert len(accepted) == 1
            assert events.index(accepted[0]) == 0
            assert accepted[0].address == client.getsockname()
            if ending == "poll":
                assert DataReceived(accepted[0].channel, b"hello\n") in events
            accepted[0].channel.close()
    assert calls == [point, point], "not cut short once, then finished"
    assert open_fds() == fds_before - 1


@pytest.mark.timeout(60)
def test_a_pollers_close_cut_short_by_a_raising_handler_finishes_when_called_again(
    interrupter: Interrupter, selector_cls: Type[selectors.BaseSelector]
) -> None:
    """``Poller.close()`` with servers and channels registered, the handler
    raising in it: called again until it returns, it leaves no fd open (its
    own, its servers', its channels'), however many times it was cut short."""
    fds_before = open_fds()
    deadline = time.monotonic() + RUN_FOR
    rounds = 0
    while interrupter.raised < RAISES and time.monotonic() < deadline:
        poller = Poller(selector=selector_cls)
        servers = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
        pairs = [socket.socketpair() for _ in range(8)]
        for server in servers:
            poller.add_server(server)
        for mine, _ in pairs:
            poller.register(SocketChannel(mine))
        interrupter.armed = True
        while not interrupter.returns(poller.close):
            assert time.monotonic() < deadline
        interrupter.armed = False
        rounds += 1
        assert [server.fileno() for server in servers] == [-1] * 3, f"round {rounds}"
        assert [mine.fileno() for mine, _ in pairs] == [-1] * 8, f"round {rounds}"
        for _, theirs in pairs:
            theirs.close()
        assert open_fds() == fds_before, f"round {rounds}: the Poller leaked an fd"
    interrupter.check()


@pytest.mark.parametrize("state", ["open", "half-closed"])
def test_output_a_cut_short_write_never_told_of_is_delivered_all_the_same(
    make_poller: Callable[..., Poller], monkeypatch: pytest.MonkeyPatch, state: str
) -> None:
    """A handler's raise in ``write()`` after the output was queued but
    before the Poller was told (every announcement cut short), and no write
    after it: the Poller finds the output by itself (the fd audit's slice)
    and delivers all of it, also for a half-closed channel it was not
    watching at all."""
    poller = make_poller()
    mine, theirs = socket.socketpair()
    theirs.setblocking(False)
    channel = SocketChannel(mine)
    poller.register(channel)
    if state == "half-closed":
        theirs.shutdown(socket.SHUT_WR)
        events: List[object] = []
        deadline = time.monotonic() + 5
        while not any(isinstance(event, ChannelClosed) for event in events):
            events += poller.poll_events(0.05)
            assert time.monotonic() < deadline
    payload = bytes(range(256)) * 8192  # 2 MiB: more than the buffers take
    told = channels._outbox.Outbox.announce

    def cut_short(self: object) -> None:
        raise Tick("a handler's raise")

    monkeypatch.setattr(channels._outbox.Outbox, "announce", cut_short)
    with pytest.raises(Tick):
        channel.write(payload)
    monkeypatch.setattr(channels._outbox.Outbox, "announce", told)
    assert channel.write_buffer_size > 0, "nothing queued: nothing to find"
    got = bytearray()
    deadline = time.monotonic() + 5
    while len(got) < len(payload):
        assert time.monotonic() < deadline, f"{len(got)} of {len(payload)} bytes came"
        poller.poll(0.05)
        with contextlib.suppress(BlockingIOError):
            while chunk := theirs.recv(1 << 20):
                got += chunk
    assert got == payload
    channel.close()
    theirs.close()


def test_a_selector_call_cut_between_the_kernel_and_the_map_is_redone(
    make_poller: Callable[..., Poller],
    monkeypatch: pytest.MonkeyPatch,
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    """A handler's raise lands between the kernel's unregister of a pipe's
    sink (its output all went) and the map's: the map still says the sink is
    watched for writing. Output queued right after (no poll in between)
    must still go: the selector call that map makes look done is redone
    from scratch by the next poll, not skipped."""
    if not hasattr(selector_cls(), "_selector"):
        pytest.skip("select() keeps no kernel set: the map and the sets cannot part")
    poller = make_poller()
    faucet, feed = os.pipe()
    drain, sink = os.pipe()
    os.set_blocking(drain, False)
    channel = PipeChannel(faucet, sink)
    poller.register(channel)
    payload = bytes(range(256)) * 1024  # 256 KiB: more than a pipe takes
    got = bytearray()

    def take() -> None:
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(drain, 1 << 20):
                got.extend(chunk)

    map_only = channels._selecting._MAP_ONLY
    assert map_only is not None

    def cut_short(selector: selectors.BaseSelector, fd: int) -> object:
        monkeypatch.setattr(channels._selecting, "_MAP_ONLY", map_only)
        raise Tick("a handler's raise")

    channel.write(payload)
    monkeypatch.setattr(channels._selecting, "_MAP_ONLY", cut_short)
    deadline = time.monotonic() + 5
    with pytest.raises(Tick):  # (the sink is unwatched once all went: then the raise)
        while True:
            take()
            poller.poll(0.01)
            assert time.monotonic() < deadline, "the output never all went"
    assert channel.write_buffer_size == 0
    channel.write(payload)  # (the map says the sink is watched already)
    while len(got) < 2 * len(payload):
        assert time.monotonic() < deadline, f"{len(got)} of {2 * len(payload)} bytes came"
        take()
        poller.poll(0.01)
    assert bytes(got) == payload * 2
    channel.close()
    for fd in (feed, drain):
        os.close(fd)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("point", ["_hold_back", "_select_again"])
def test_a_hold_back_cut_short_loses_no_line_and_the_channel_is_selected_again(
    cutter: Callable[[], None],
    point: str,
    make_poller: Callable[..., Poller],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A handler's raise lands where ``poll()`` has just marked a busy
    channel held back from ``select()`` (or no longer held back), before the
    selector call: every line still comes once, in order, and a line sent
    after the flood is seen by ``poll(None)``: the channel is selected again,
    not left out of the selector for good."""
    poller = make_poller()
    mine, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)  # (it all fits:
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # macOS's are 8 KiB)
    channel = SocketChannel(mine, buffering="line")
    poller.register(channel)
    registry = poller._registry
    sync = registry.sync
    cuts: List[str] = []

    def cut_in(*args: Any, **kwargs: Any) -> None:
        if sys._getframe(1).f_code.co_name == point and not cuts:
            cuts.append(point)
            cutter()
        sync(*args, **kwargs)

    monkeypatch.setattr(registry, "sync", cut_in)
    count = 3000  # (three calls' worth, all waiting: one read makes it busy, held back)
    with theirs, channel:
        theirs.sendall(numbered(count))
        got: List[bytes] = []
        deadline = time.monotonic() + RUN_FOR
        while len(got) < count:
            assert time.monotonic() < deadline, f"{len(got)} of {count} lines came"
            with contextlib.suppress(Cut):
                got += [data for data, _ in poller.poll(0.1)]
        for _ in range(10):  # (the flood is over: the next calls end its holding back)
            with contextlib.suppress(Cut):
                assert poller.poll(0.01) == []
        assert cuts == [point], "the raise never landed there"
        check_lines(got, count)
        theirs.sendall(b"last\n")
        watchdog = threading.Timer(5, poller.wakeup)  # (a channel left out fails, not hangs)
        watchdog.start()
        try:
            assert [data for data, _ in poller.poll(None)] == [b"last\n"]
        finally:
            watchdog.cancel()
