"""pause_reading() / resume_reading(): backpressure on the reading side; every selector."""

import contextlib
import socket
import struct

from channels import (
    ChannelClosed,
    CloseReason,
    EndpointClosedException,
    Poller,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, events_until, poll_until


def test_pause_reading_stops_reports_until_resumed(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    poller.pause_reading(channel)
    poller.pause_reading(channel)  # again: nothing happens
    channel.put(b"held\n")
    assert poller.poll(0.05) == []
    poller.resume_reading(channel)
    poller.resume_reading(channel)  # again: nothing happens
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"held\n", channel)]


def test_a_paused_channel_still_gets_its_output_delivered(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.throttle_writes(0)  # the first send fails: the output is queued
    channel.write(b"queued while paused")
    poller.pause_reading(channel)
    assert channel.write_buffer_size > 0
    for _ in range(50):
        if not channel.write_buffer_size:
            break
        poller.poll(0.01)
    assert channel.write_buffer_size == 0
    assert channel.get() == b"queued while paused"


def test_resume_reading_returns_frames_already_buffered_without_waiting(
    poller: Poller,
) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\n")
    assert channel.read() == b"a\n"  # b\n now sits in the framer, not in the socket
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    assert poller.poll(DEADLINE) == [(b"b\n", channel)]


def test_pause_of_an_unregistered_channel_does_nothing(poller: Poller) -> None:
    channel = TestChannel()
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    channel.close()


def test_a_paused_channel_that_breaks_is_reported_without_being_read(poller: Poller) -> None:
    """As asyncio's connection_lost() after pause_reading(): the report comes
    at once, and the Poller does not read the channel for it; what it holds
    stays readable with read()."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        peer = socket.create_connection(listener.getsockname())
        mine, _ = listener.accept()
    channel = SocketChannel(mine, buffering="line")
    poller.register(channel)
    poller.pause_reading(channel)
    peer.sendall(b"unread line\n")
    channel.write(b"r" * (8 * 1024 * 1024))  # queued: the peer never reads
    assert channel.write_buffer_size > 0
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # a reset
    events = events_until(poller, bool)
    assert events == [ChannelClosed(channel, CloseReason.RESET, channel.undelivered)]
    assert channel.undelivered > 0
    with contextlib.suppress(EndpointClosedException):
        assert channel.read() in (b"unread line\n", b"")  # (the reset may drop it)
    channel.close()
