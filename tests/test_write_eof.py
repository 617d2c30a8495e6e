"""write_eof(): everything queued goes out, then the end of the stream; reading goes on.

Over every channel kind (pipe, socketpair, TCP, Unix socket, TestChannel),
with and without a Poller delivering the queue in the background.
"""

import os
import select
import socket
import struct
import time
from typing import Callable, Tuple

import pytest

from channels import (
    ChannelClosed,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    PipeChannel,
    Poller,
    SocketChannel,
)

from .conftest import DEADLINE, Maker, Peer, events_until, posix_only


def _take_to_eof(peer: Peer, step: Callable[[], object] = lambda: None) -> bytes:
    """What the peer reads up to the end of the channel's stream."""
    data = b""
    deadline = time.monotonic() + DEADLINE
    while True:
        assert time.monotonic() < deadline, f"no end of stream after {len(data)} bytes"
        step()
        chunk, eof = peer.take()
        data += chunk
        if eof:
            return data
        if not chunk:
            select.select([peer.readable_fd], [], [], 0.01)


def test_write_eof_with_nothing_queued_ends_the_stream_at_once(make_channel: Maker) -> None:
    channel, peer = make_channel("bytes")
    channel.write(b"all of it")
    channel.write_eof()
    assert _take_to_eof(peer) == b"all of it"


def test_write_eof_sends_what_is_queued_first_through_flush(make_channel: Maker) -> None:
    channel, peer = make_channel("bytes")
    chunk = bytes(range(256)) * 1024
    payload = b""
    while not channel.write_buffer_size:  # until the OS takes no more: queued
        channel.write(chunk)
        payload += chunk
    channel.write_eof()  # never blocks

    def flush() -> None:
        channel.flush(0)

    assert _take_to_eof(peer, flush) == payload


def test_write_eof_through_a_poller_delivers_then_ends_and_reading_goes_on(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    reply = b"reply line\n" * 200_000  # ~2 MiB
    channel.write(reply)
    channel.write_eof()
    assert _take_to_eof(peer, lambda: poller.poll(0.01)) == reply
    peer.send(b"still read\n")  # the peer's side is open: the channel reads on
    peer.end()
    events = events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert events == [
        DataReceived(channel, b"still read\n"),
        ChannelClosed(channel, CloseReason.PEER_CLOSED, 0),
    ]


def test_write_after_write_eof_raises_and_write_eof_again_does_nothing(
    make_channel: Maker,
) -> None:
    channel, peer = make_channel("bytes")
    channel.write_eof()
    channel.write_eof()
    with pytest.raises(EndpointClosedException, match="write_eof"):
        channel.write(b"late")
    assert channel.flush(0) is True
    assert _take_to_eof(peer) == b""


def test_write_eof_after_close_raises(make_channel: Maker) -> None:
    channel, _ = make_channel("bytes")
    channel.close()
    with pytest.raises(EndpointClosedException):
        channel.write_eof()


@posix_only
def test_write_eof_on_a_read_only_pipe_cannot_write() -> None:
    faucet, writer = os.pipe()
    channel = PipeChannel(faucet)
    with pytest.raises(NotImplementedError):
        channel.write_eof()
    channel.close()
    os.close(writer)


@posix_only
def test_write_eof_on_one_fd_for_both_ways_is_refused() -> None:
    mine, theirs = socket.socketpair()
    fd = mine.detach()
    channel = PipeChannel(fd, fd)
    with pytest.raises(NotImplementedError, match="one fd"):
        channel.write_eof()
    channel.close()
    theirs.close()


def test_write_eof_to_a_reset_peer_raises(make_poller: Callable[..., Poller]) -> None:
    mine, theirs = _tcp_pair()
    channel = SocketChannel(mine)
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()
    poller = make_poller()
    poller.register(channel)
    events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    with pytest.raises(EndpointClosedException):
        channel.write_eof()
    channel.close()


def _tcp_pair() -> Tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    return server_side, client
