"""Typed events: poll_events() reports what poll() does, with reasons and counts."""

import dataclasses
import os
import socket
import struct
from typing import List

import pytest

from channels import (
    ChannelClosed,
    ClientAccepted,
    CloseReason,
    DataReceived,
    FramesReceived,
    LineBuffering,
    PipeChannel,
    Poller,
    PollEvent,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, events_until, posix_only


def closed_events(events: List[PollEvent]) -> List[ChannelClosed]:
    return [event for event in events if isinstance(event, ChannelClosed)]


def test_data_and_peer_closed(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"one\ntwo\n")
    channel.put_eof()
    events = events_until(poller, lambda e: bool(closed_events(e)))
    assert events == [
        DataReceived(channel, b"one\n"),
        DataReceived(channel, b"two\n"),
        ChannelClosed(channel, CloseReason.PEER_CLOSED, 0),
    ]
    channel.close()


def test_client_accepted(poller: Poller) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    poller.add_server(server)
    client = socket.create_connection(server.getsockname())
    (event,) = events_until(poller, bool)
    assert isinstance(event, ClientAccepted)
    assert event.server is server
    assert isinstance(event.channel, SocketChannel)
    assert event.address == client.getsockname()
    assert event.as_tuple() == ((event.address, event.channel), server)
    client.close()
    server.close()


def test_closed_locally(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.close()
    assert poller.poll_events(DEADLINE) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]


def test_line_too_long(poller: Poller) -> None:
    channel = TestChannel(buffering=LineBuffering(max_length=4))
    poller.register(channel)
    channel.put(b"12345")
    assert events_until(poller, bool) == [ChannelClosed(channel, CloseReason.LINE_TOO_LONG, 0)]


def test_reset_by_the_peer(poller: Poller) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    channel = SocketChannel(server_side)
    poller.register(channel)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert events_until(poller, bool) == [ChannelClosed(channel, CloseReason.RESET, 0)]
    channel.close()


def test_a_vanished_peer_with_output_queued_counts_the_undelivered(poller: Poller) -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    while not channel.write_buffer_size:
        channel.write(b"z" * 65536)
    queued = channel.write_buffer_size
    theirs.close()
    (event,) = events_until(poller, bool)
    assert isinstance(event, ChannelClosed)
    assert event.reason in (CloseReason.RESET, CloseReason.PEER_CLOSED)
    channel.abort()
    assert channel.undelivered == queued


@posix_only
def test_fd_lost(poller: Poller) -> None:
    r, w = os.pipe()
    channel = PipeChannel(r)
    poller.register(channel)
    os.close(r)
    assert events_until(poller, bool) == [ChannelClosed(channel, CloseReason.FD_LOST, 0)]
    os.close(w)


def test_poll_and_poll_events_share_one_implementation(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\n")
    assert poller.poll(DEADLINE) == [(b"a\n", channel)]
    channel.put(b"b\n")
    assert poller.poll_events(DEADLINE) == [DataReceived(channel, b"b\n")]
    channel.put_eof()
    assert poller.poll(DEADLINE) == [(b"", channel)]
    assert poller.poll_events(0) == []  # reported once, whichever method asked
    channel.close()


def test_events_are_frozen_and_give_their_0_2_form() -> None:
    channel = TestChannel()
    event = DataReceived(channel, b"x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.data = b"y"  # type: ignore[misc]
    assert event.as_tuple() == (b"x", channel)
    closed = ChannelClosed(channel, CloseReason.RESET, 5)
    assert closed.as_tuple() == (b"", channel)
    assert CloseReason.LINE_TOO_LONG.value == "line too long"
    channel.close()


def test_poll_batches_gives_a_channels_lines_as_one_list(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\nc\npartial")
    assert poller.poll_batches(DEADLINE) == [FramesReceived(channel, [b"a\n", b"b\n", b"c\n"])]
    channel.put(b" line")
    channel.put_eof()
    assert poller.poll_batches(DEADLINE) == [
        FramesReceived(channel, [b"partial line"]),
        ChannelClosed(channel, CloseReason.PEER_CLOSED, 0),
    ]
    assert poller.poll_batches(0) == []
    channel.close()


def test_poll_batches_reports_accepts_like_poll_events(poller: Poller) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    poller.add_server(server)
    client = socket.create_connection(server.getsockname())
    try:
        events = poller.poll_batches(DEADLINE)
        assert len(events) == 1 and isinstance(events[0], ClientAccepted)
        events[0].channel.close()
    finally:
        client.close()
        server.close()


def test_lines_before_a_line_too_long_come_first_in_the_same_poll(poller: Poller) -> None:
    channel = TestChannel(buffering=LineBuffering(max_length=4))
    poller.register(channel)
    channel.put(b"ok\nfine\n123456\nlost\n")
    assert poller.poll_batches(DEADLINE) == [
        FramesReceived(channel, [b"ok\n", b"fine\n"]),
        ChannelClosed(channel, CloseReason.LINE_TOO_LONG, 0),
    ]
