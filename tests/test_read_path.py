"""How the Poller reads: one read_frames() path, what a read costs, custom read()s and framers."""

import selectors
import socket
import time
from typing import List, Optional

import pytest

import channels
import channels.channel
import channels.poller
import channels.testing
from channels import (
    EndpointClosedException,
    Poller,
)
from channels._outbox import _NO_SENDS
from channels._reading import NOTHING_HELD, UNREAD
from channels.buffering import Framer
from channels.testing import TestChannel

from .conftest import DEADLINE, poll_until


class _CountingChannel(TestChannel):
    reads = 0

    def _read(self) -> bytes:
        self.reads += 1
        return super()._read()


def test_a_ready_channel_costs_one_read_for_its_data_and_one_to_see_it_drained(
    poller: Poller,
) -> None:
    channel = _CountingChannel(buffering="line")
    poller.register(channel)
    channel.put(b"line\n" * 1000)
    got = poller.poll(DEADLINE)
    assert len(got) == 1000
    assert channel.reads == 2
    channel.close()


class _UpperChannel(TestChannel):
    """A 0.2-style subclass that post-processes read()."""

    def read(self) -> bytes:
        return super().read().upper()


def test_a_channel_that_overrides_read_is_read_through_it(poller: Poller) -> None:
    channel = _UpperChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\n")
    assert poll_until(poller, lambda got: len(got) >= 2) == [(b"A\n", channel), (b"B\n", channel)]
    channel.close()


class _OneByteFramer:
    """A custom framer with next_frame() only: every byte is a frame."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        if not self._data:
            return None
        frame = bytes(self._data[:1])
        del self._data[:1]
        return frame


class _OneByteBuffering:
    name = "byte"

    def new_framer(self) -> _OneByteFramer:
        return _OneByteFramer()


def test_a_framer_without_take_frames_is_read_frame_by_frame(poller: Poller) -> None:
    channel = TestChannel(buffering=_OneByteBuffering())
    poller.register(channel)
    channel.put(b"xyz")
    assert poll_until(poller, lambda got: len(got) >= 3) == [
        (b"x", channel),
        (b"y", channel),
        (b"z", channel),
    ]
    channel.close()


class _CountingSocket(socket.socket):
    recvs = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.recvs += 1
        return super().recv(size, flags)


def test_a_ready_socket_channel_costs_one_read_when_it_comes_up_short(poller: Poller) -> None:
    ours, peer = socket.socketpair()
    sock = _CountingSocket(fileno=ours.detach())
    channel = channels.SocketChannel(sock, buffering="line")
    poller.register(channel)
    peer.sendall(b"line\n" * 1000)
    assert len(poll_until(poller, lambda got: len(got) >= 1000)) == 1000
    assert sock.recvs == 1  # a short read: the OS had no more, no EAGAIN read
    peer.close()
    assert poll_until(poller, bool) == [(b"", channel)]  # the end: seen by the next select
    channel.close()


class _SubclassedRead(channels.SocketChannel):
    def _read(self) -> bytes:
        return super()._read()


def test_a_subclass_that_overrides_read_reads_until_the_os_says_no_more(poller: Poller) -> None:
    ours, peer = socket.socketpair()
    sock = _CountingSocket(fileno=ours.detach())
    channel = _SubclassedRead(sock, buffering="line")
    poller.register(channel)
    peer.sendall(b"line\n" * 10)
    assert len(poll_until(poller, lambda got: len(got) >= 10)) == 10
    assert sock.recvs == 2  # its _read() is not known to drain on a short read
    peer.close()
    channel.close()


class _ThreeThenTooLongFramer(_OneByteFramer):
    """Gives one-byte frames; the fourth is 'too long'."""

    given = 0

    def next_frame(self) -> Optional[bytes]:
        frame = super().next_frame()
        if frame is not None:
            self.given += 1
            if self.given == 4:
                raise channels.LineTooLong(3, 4)
        return frame


class _ThreeThenTooLong:
    name = "three"

    def new_framer(self) -> _ThreeThenTooLongFramer:
        return _ThreeThenTooLongFramer()


def test_frames_before_a_custom_framers_error_are_delivered_first(poller: Poller) -> None:
    channel = TestChannel(buffering=_ThreeThenTooLong())
    poller.register(channel)
    channel.put(b"abcdef")
    events = []
    deadline = time.monotonic() + DEADLINE
    while not any(isinstance(e, channels.ChannelClosed) for e in events):
        assert time.monotonic() < deadline, events
        events += poller.poll_events(0.05)
    assert events == [
        channels.DataReceived(channel, b"a"),
        channels.DataReceived(channel, b"b"),
        channels.DataReceived(channel, b"c"),
        channels.ChannelClosed(channel, channels.CloseReason.LINE_TOO_LONG, 0),
    ]


def test_channels_share_no_read_state(poller: Poller) -> None:
    """Channels start with one shared, empty hold for read(): reading one
    through read() and another through a Poller, with a frame left over in
    each, changes neither the shared hold nor the other channel."""
    first, second = TestChannel(buffering="line"), TestChannel(buffering="line")
    poller.register(second)
    first.put(b"a\nb\n")
    second.put(b"c\nd\n")
    assert first.read() == b"a\n"
    assert poll_until(poller, lambda r: len(r) >= 2) == [(b"c\n", second), (b"d\n", second)]
    assert NOTHING_HELD == []
    third = TestChannel(buffering="line")
    assert third.read() == b""
    assert first.read() == b"b\n"
    assert NOTHING_HELD == []
    for channel in (first, second, third):
        channel.close()


def test_channels_share_the_empty_framer_and_send_log_until_they_use_them(
    poller: Poller,
) -> None:
    """An idle channel holds the shared, empty framer and send log (so it
    costs neither); its first read makes its own framer, its first send its
    own log. Whatever comes — partial lines read through read() and through
    a Poller, an end of stream before any read, writes — the shared ones
    stay empty and each channel keeps its own partial line."""
    idle, direct, polled, ended = (TestChannel(buffering="line") for _ in range(4))
    assert all(channel._framer is UNREAD for channel in (idle, direct, polled, ended))
    poller.register(polled)
    direct.put(b"a\nb")
    polled.put(b"c\nd")
    ended.put_eof()
    assert direct.read() == b"a\n"
    assert poll_until(poller, bool) == [(b"c\n", polled)]
    with pytest.raises(EndpointClosedException):
        ended.read()
    direct.write(b"reply\n")
    assert UNREAD.inbox == [] and _NO_SENDS == []
    assert idle._framer is UNREAD and idle._outbox.sent is _NO_SENDS
    assert direct._outbox.sent is not _NO_SENDS
    assert len({id(channel._framer) for channel in (idle, direct, polled)}) == 3
    direct.put(b"\n")
    polled.put(b"\n")
    assert direct.read() == b"b\n"
    assert poll_until(poller, bool) == [(b"d\n", polled)]
    assert UNREAD.inbox == [] and _NO_SENDS == []
    for channel in (idle, direct, polled, ended):
        channel.close()


def test_a_custom_strategy_makes_its_framer_when_the_channel_is_made() -> None:
    """Only the built-in framers wait for the first read: a user's strategy
    is asked for a framer by the constructor, so its errors come there."""

    class Refusing:
        name = "refusing"

        def new_framer(self) -> Framer:
            raise ValueError("no framer today")

    with pytest.raises(ValueError, match="no framer today"):
        TestChannel(buffering=Refusing())


def test_a_channel_in_two_pollers_is_watched_by_both() -> None:
    """The first Poller takes the channel's one watcher slot, the second
    adds callbacks: both hear of its output and its close, and neither
    leaves anything on the channel once it let it go."""
    with Poller() as first, Poller() as second:
        channel = TestChannel()
        first.register(channel)
        second.register(channel)
        assert channel.watcher is not None
        channel.throttle_writes(0, 0)  # nothing goes: output stays queued
        channel.write(b"queued")
        assert first._registry.find(channel).writing  # type: ignore[union-attr]
        assert second._registry.find(channel).writing  # type: ignore[union-attr]
        first.unregister(channel)
        assert channel.watcher is None
        assert channel._outbox.watched  # (the second still delivers)
        second.unregister(channel)
        assert not channel._outbox.watched
        assert channel._close_callbacks == () and channel._close_agents == ()
        channel.abort()


def test_set_watcher_tells_the_watcher_first() -> None:
    heard: List[str] = []

    class Watcher:
        def closed(self) -> None:
            heard.append("closed")

        def drained(self) -> None:
            heard.append("drained")

        def take_close(self) -> bool:
            heard.append("take_close")
            return False

        def output_changed(self, pending: bool) -> None:
            heard.append(f"output {pending}")

    channel = TestChannel()
    channel.set_watcher(Watcher())
    channel.add_close_callback(lambda: heard.append("callback"))
    channel.throttle_writes(0, 0)
    channel.write(b"x")
    channel.close()
    assert heard == ["output True", "take_close", "output False", "closed", "callback"]


def test_a_closed_fd_left_in_selects_sets_does_not_make_poll_raise() -> None:
    """A raise inside the standard library's SelectSelector.modify() (which
    unregisters and registers again) can leave an fd in select()'s sets that
    the map forgot; once that fd is closed, select() fails with EBADF. The
    Poller drops the stray and goes on."""
    with Poller(selector=selectors.SelectSelector) as poller:
        channel = TestChannel()
        poller.register(channel)
        stray_a, stray_b = socket.socketpair()
        stray = stray_a.fileno()
        poller._registry.selector._readers.add(stray)  # type: ignore[attr-defined]
        stray_a.close()
        stray_b.close()
        assert poller.poll(0) == []
        assert stray not in poller._registry.selector._readers  # type: ignore[attr-defined]
        channel.put(b"still read")
        assert poll_until(poller, bool) == [(b"still read", channel)]
        channel.close()
