"""The lifecycle of a registered channel: each report once, nothing left behind.

Each test here attacks one promise of the state table in
``channels._registry``: closing everything when the process is out of fds or
an fd was closed behind the Poller's back, letting go of what was reported,
counting what a reset dropped, and closing a channel with a line too long
only after the lines before it, and the replies to them, went through.
"""

import contextlib
import gc
import os
import resource
import select
import socket
import struct
import threading
import time
import warnings
import weakref
from typing import Callable, Iterator, List, Optional

import pytest

import channels.channel
from channels import (
    Channel,
    ChannelClosed,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    LineBuffering,
    LineTooLong,
    PipeChannel,
    Poller,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, events_until, posix_only


def _queue_output(channel: SocketChannel) -> int:
    """Write until the OS takes no more, so output stays queued; return how much."""
    while not channel.write_buffer_size:
        channel.write(b"q" * 65536)
    return channel.write_buffer_size


def _tcp_pair() -> "tuple[socket.socket, socket.socket]":
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    return server_side, client


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextlib.contextmanager
def _out_of_fds() -> Iterator[None]:
    """Make every new fd fail with EMFILE, until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: List[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 4096), hard))
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- close() and close_all() leave nothing open ---------------------------


@posix_only
def test_close_all_closes_everything_when_the_process_is_out_of_fds(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    pairs = [socket.socketpair() for _ in range(3)]
    channels = [SocketChannel(mine, linger=0.2) for mine, _ in pairs]
    for channel in channels:
        poller.register(channel)
    queued = _queue_output(channels[0])  # its reader never reads: it needs the linger
    with _out_of_fds():  # (no server here: closing one would free an fd)
        poller.close_all()
    assert all(channel.closed and channel.get_fd() == -1 for channel in channels)
    events = events_until(poller, lambda got: len(got) >= 3)
    closed = {(e.channel, e.reason) for e in events if isinstance(e, ChannelClosed)}
    assert closed == {(channel, CloseReason.CLOSED_LOCALLY) for channel in channels}
    (stalled,) = [e for e in events if isinstance(e, ChannelClosed) and e.channel is channels[0]]
    assert stalled.undelivered == queued
    for _, theirs in pairs:
        theirs.close()


@posix_only
def test_poller_close_out_of_fds_releases_every_fd(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, linger=0.1)
    poller.register(channel)
    _queue_output(channel)
    selector_fd = poller.selector.fileno() if hasattr(poller.selector, "fileno") else -1
    with _out_of_fds():
        poller.close()
    assert channel.closed
    assert poller.closed
    if selector_fd >= 0:
        with pytest.raises(OSError):
            os.fstat(selector_fd)
    theirs.close()


@posix_only
def test_close_all_with_an_fd_closed_behind_its_back_closes_the_others(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    lost_mine, lost_theirs = socket.socketpair()
    fine_mine, fine_theirs = socket.socketpair()
    lost = SocketChannel(lost_mine, linger=0.2)
    fine = SocketChannel(fine_mine, linger=0.2)
    poller.register(lost)
    poller.register(fine)
    queued = _queue_output(lost)
    os.close(lost_mine.fileno())  # behind the channel's back
    poller.close_all()
    assert lost.closed and fine.closed
    events = events_until(poller, lambda got: len(got) >= 2)
    undelivered = {e.channel: e.undelivered for e in events if isinstance(e, ChannelClosed)}
    assert undelivered == {lost: queued, fine: 0}
    with contextlib.suppress(OSError):
        lost_mine.detach()
    lost_theirs.close()
    fine_theirs.close()


# -- what is reported is let go --------------------------------------------


# An application that drops an unclosed channel gets the socket's own warning.
_GC_CLOSES_SOCKETS = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


def _collected(ref: "weakref.ref[object]") -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the socket closes unclosed
        gc.collect()
    return ref() is None


def _pipe_channel() -> "tuple[Channel, Callable[[], None]]":
    faucet, writer = os.pipe()
    os.write(writer, b"last\n")
    return PipeChannel(faucet, buffering="line"), lambda: os.close(writer)


def _socket_channel() -> "tuple[Channel, Callable[[], None]]":
    mine, theirs = socket.socketpair()
    theirs.sendall(b"last\n")
    return SocketChannel(mine, buffering="line"), theirs.close


def _test_channel() -> "tuple[Channel, Callable[[], None]]":
    channel = TestChannel(buffering="line")
    channel.put(b"last\n")
    return channel, channel.close_peer


@_GC_CLOSES_SOCKETS
@pytest.mark.parametrize(
    "make",
    [pytest.param(_pipe_channel, marks=posix_only), _socket_channel, _test_channel],
    ids=["pipe", "socket", "testchannel"],
)
def test_a_channel_reported_closed_is_no_longer_referenced(
    make: Callable[[], "tuple[Channel, Callable[[], None]]"], poller: Poller
) -> None:
    channel, close_peer = make()
    poller.register(channel)
    close_peer()
    events = events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert events[-1] == ChannelClosed(channel, CloseReason.PEER_CLOSED, 0)
    ref = weakref.ref(channel)
    del channel, events, close_peer
    assert _collected(ref)


@_GC_CLOSES_SOCKETS
def test_a_half_closed_channel_is_let_go_once_its_reply_is_delivered(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    theirs.shutdown(socket.SHUT_WR)  # a half-close: it still reads
    events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    reply = b"r" * (4 * 1024 * 1024)
    channel.write(reply)  # more than the socket takes: the Poller delivers the rest
    got = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(got) < len(reply):
        assert time.monotonic() < deadline, f"{len(got)} of {len(reply)} bytes came"
        poller.poll(0.01)
        with contextlib.suppress(BlockingIOError):
            got += theirs.recv(1 << 20, socket.MSG_DONTWAIT)
    assert got == reply
    ref = weakref.ref(channel)
    del channel
    assert _collected(ref)
    theirs.close()


@_GC_CLOSES_SOCKETS
def test_a_half_closed_channel_dropped_with_output_queued_is_still_delivered(
    make_poller: Callable[..., Poller],
) -> None:
    """Held while it has output: the Poller delivers it, as asyncio does."""
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    theirs.shutdown(socket.SHUT_WR)
    events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    reply = b"s" * (2 * 1024 * 1024)
    channel.write(reply)
    ref = weakref.ref(channel)
    del channel
    got = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(got) < len(reply):
        assert time.monotonic() < deadline, f"{len(got)} of {len(reply)} bytes came"
        gc.collect()
        poller.poll(0.01)
        with contextlib.suppress(BlockingIOError):
            got += theirs.recv(1 << 20, socket.MSG_DONTWAIT)
    assert got == reply
    assert _collected(ref)  # delivered: now it is let go
    theirs.close()


# -- a reset counts what it dropped ----------------------------------------


def test_a_reset_with_output_queued_counts_the_dropped_queue(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = _tcp_pair()
    channel = SocketChannel(mine)
    poller.register(channel)
    queued = _queue_output(channel)
    _reset(theirs)
    (event,) = events_until(poller, bool)
    assert event == ChannelClosed(channel, CloseReason.RESET, queued)
    assert channel.undelivered == queued
    with pytest.raises(EndpointClosedException) as raised:
        channel.write(b"more")
    assert raised.value.undelivered == queued
    channel.close()


def test_a_peer_that_vanishes_with_output_queued_is_a_reset_with_the_count(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    queued = _queue_output(channel)
    theirs.close()
    (event,) = events_until(poller, bool)
    assert event == ChannelClosed(channel, CloseReason.RESET, queued)
    channel.close()


def test_test_channel_reset_peer_with_output_queued_is_reported_as_a_reset(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    channel = TestChannel()
    poller.register(channel)
    channel.write(b"delivered")
    channel.throttle_writes(0, 0, 0)
    channel.write(b"queued")  # the scripted EAGAIN keeps it queued
    assert channel.write_buffer_size == len(b"queued")
    channel.reset_peer()  # no exception here: a reset happens to the channel
    assert channel.get() == b"delivered"
    (event,) = events_until(poller, bool)
    assert event == ChannelClosed(channel, CloseReason.RESET, len(b"queued"))
    channel.close()


# -- a line too long closes the channel after the lines before it ----------


def test_lines_before_a_line_too_long_come_first_and_their_replies_are_delivered(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller(LineBuffering(max_length=10))
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, buffering=LineBuffering(max_length=10))
    poller.register(channel)
    theirs.sendall(b"one\ntwo\n" + b"x" * 11 + b"\nthree\n")
    got: List[bytes] = []
    reply = b"R" * (3 * 1024 * 1024)  # more than the socket takes at once
    for item in events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got)):
        if isinstance(item, DataReceived):
            got.append(item.data)
            channel.write(item.data.upper())
        else:
            assert item == ChannelClosed(channel, CloseReason.LINE_TOO_LONG, 0)
    assert got == [b"one\n", b"two\n"]
    channel.write(reply)  # still writable: the Poller closes it after delivering
    received = _read_until_eof(theirs, lambda: poller.poll(0.01))
    assert received == b"ONE\nTWO\n" + reply
    assert channel.closed
    theirs.close()


def _reported_too_long(poller: Poller, linger: float) -> "tuple[SocketChannel, socket.socket]":
    """A registered line channel whose peer sent a line too long, reported."""
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, buffering=LineBuffering(max_length=4), linger=linger)
    poller.register(channel)
    theirs.sendall(b"ok\n" + b"y" * 10)
    events = events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert events[-1] == ChannelClosed(channel, CloseReason.LINE_TOO_LONG, 0)
    return channel, theirs


def test_a_reply_to_a_reader_that_stalls_is_dropped_after_the_linger(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    channel, theirs = _reported_too_long(poller, linger=0.1)
    queued = _queue_output(channel)
    assert poller.poll(0.5) == []  # the Poller closes it meanwhile: no second report
    assert channel.closed
    assert channel.undelivered == queued
    theirs.close()


def test_a_channel_the_poller_closes_never_blocks_a_poll(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    channel, theirs = _reported_too_long(poller, linger=30)
    _queue_output(channel)  # its reader never reads: closing it would take the linger
    for _ in range(5):
        started = time.monotonic()
        assert poller.poll(0) == []
        assert time.monotonic() - started < 0.5
    assert channel.closed and channel.closing  # still delivering, in the background
    theirs.close()  # the reader goes: the next polls find the write failing, and close it
    deadline = time.monotonic() + DEADLINE
    while channel.closing:
        assert time.monotonic() < deadline
        poller.poll(0.05)


def _read_until_eof(sock: socket.socket, step: Callable[[], object]) -> bytes:
    sock.setblocking(False)
    data = bytearray()
    deadline = time.monotonic() + DEADLINE
    while True:
        assert time.monotonic() < deadline, f"no EOF; {len(data)} bytes came"
        step()
        try:
            chunk = sock.recv(1 << 20)
        except BlockingIOError:
            select.select([sock], [], [], 0.01)
            continue
        if not chunk:
            return bytes(data)
        data += chunk


# -- one read path ---------------------------------------------------------


class _ThreeThenTooLongFramer:
    """next_frame() only: three frames, then LineTooLong."""

    def __init__(self) -> None:
        self._frames = [b"a", b"b", b"c"]
        self._failed = False
        self._fed = False

    def feed(self, data: bytes) -> None:
        self._fed = True

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        if not self._fed:
            return None
        if self._frames:
            return self._frames.pop(0)
        if not self._failed:
            self._failed = True
            raise LineTooLong(5, 6)
        return None


class _ThreeThenTooLong:
    name = "three"

    def new_framer(self) -> _ThreeThenTooLongFramer:
        return _ThreeThenTooLongFramer()


def test_a_framer_error_held_by_read_frames_is_raised_by_read() -> None:
    channel = TestChannel(buffering=_ThreeThenTooLong())
    channel.put(b"x")
    deadline = time.monotonic() + DEADLINE
    frames: List[bytes] = []
    while not frames:
        assert time.monotonic() < deadline
        frames, state = channel.read_frames(1024)
    assert (frames, state) == ([b"a", b"b", b"c"], channels.channel.AGAIN)
    with pytest.raises(LineTooLong):
        channel.read()
    with pytest.raises(EndpointClosedException):
        channel.read()
    channel.close()


def test_read_and_read_frames_take_from_the_same_framer() -> None:
    channel = TestChannel(buffering="line")
    channel.put(b"1\n2\n3\n")
    assert read_one(channel) == b"1\n"
    frames, _ = channel.read_frames(1024)
    assert frames == [b"2\n", b"3\n"]
    channel.close()


def read_one(channel: TestChannel) -> bytes:
    deadline = time.monotonic() + DEADLINE
    while True:
        frame = channel.read()
        if frame:
            return frame
        assert time.monotonic() < deadline
        select.select([channel.get_fd()], [], [], 0.05)


# -- close_all() delivers, then reports once --------------------------------


def test_close_all_delivers_to_a_reading_peer_then_reports_once(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, linger=0.3)
    poller.register(channel)
    _queue_output(channel)
    reader = threading.Thread(target=lambda: _read_until_eof(theirs, lambda: None))
    reader.start()
    poller.close_all()
    reader.join(DEADLINE)
    events = events_until(poller, bool)
    assert events == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]
    assert poller.poll(0) == []
    theirs.close()
