"""The types the public API gives, pinned with assert_type."""

import selectors
import socket
from typing import List, Optional

from typing_extensions import assert_type

import channels.poller
import channels.testing
from channels import (
    AcceptEvent,
    Buffering,
    BytesBuffering,
    ChannelClosed,
    ChannelLike,
    ClientAccepted,
    CloseReason,
    DataEvent,
    DataReceived,
    EndpointClosedException,
    Framer,
    LineBuffering,
    PipeChannel,
    PollEvent,
    PollResult,
    SocketChannel,
    WriteBufferFullError,
)


def reveal(sock: socket.socket) -> None:
    poller = channels.poller.Poller(selector=selectors.SelectSelector)
    assert_type(poller.poll(), List[PollResult])
    assert_type(poller.poll(0.5), List[PollResult])
    assert_type(poller.selector, selectors.BaseSelector)
    assert_type(poller.buffering, str)

    channel = SocketChannel(sock, buffering="line")
    assert_type(channel.read(), bytes)
    assert_type(channel.write(b"x", bytearray(b"y")), None)
    assert_type(channel.get_fd(), int)
    assert_type(channel.buffering, str)
    assert_type(channel.closed, bool)
    assert_type(channel.sock, socket.socket)

    pipe = PipeChannel(0, 1)
    assert_type(pipe.read(), bytes)

    test = channels.testing.TestChannel(buffering=BytesBuffering())
    assert_type(test.get(), bytes)
    assert_type(test.put(b"x"), None)

    framer = LineBuffering(b"\r\n").new_framer()
    assert_type(framer, Framer)
    assert_type(framer.next_frame(), Optional[bytes])
    assert_type(LineBuffering().delimiter, bytes)
    strategy: Buffering = BytesBuffering()
    assert_type(strategy.name, str)

    # mypy narrows the 0.2 tuples by their first element; pyright does not
    # (typed code that wants both uses poll_events()).
    for item in poller.poll():
        if isinstance(item[0], bytes):
            assert_type(item, DataEvent)  # pyright: ignore[reportAssertTypeFailure]
        else:
            assert_type(item, AcceptEvent)  # pyright: ignore[reportAssertTypeFailure]


def reveal_writes(sock: socket.socket) -> None:
    channel = SocketChannel(sock, high_water=1 << 20, linger=2.0)
    assert_type(channel.write_buffer_size, int)
    assert_type(channel.flush(), bool)
    assert_type(channel.flush(timeout=0.5), bool)
    assert_type(channel.undelivered, int)
    assert_type(channel.high_water, int)
    assert_type(channel.linger, float)
    assert_type(channel.abort(), None)
    try:
        channel.write(b"x")
    except WriteBufferFullError as full:
        assert_type(full.size, int)
        assert_type(full.queued, int)
        assert_type(full.high_water, int)
    except EndpointClosedException as gone:
        assert_type(gone.undelivered, int)


def reveal_context_managers() -> None:
    with channels.poller.Poller() as poller:
        assert_type(poller, channels.poller.Poller)
        assert_type(poller.wakeup(), None)
        assert_type(poller.closed, bool)
        assert_type(poller.read_budget, int)
    with channels.testing.TestChannel() as test:
        assert_type(test, channels.testing.TestChannel)
    assert_type(LineBuffering(max_length=None).max_length, Optional[int])


def reveal_events(poller: channels.poller.Poller) -> None:
    events = poller.poll_events(0.5)
    assert_type(events, List[PollEvent])
    for event in events:
        if isinstance(event, DataReceived):
            assert_type(event.data, bytes)
            assert_type(event.channel, ChannelLike)
        elif isinstance(event, ChannelClosed):
            assert_type(event.reason, CloseReason)
            assert_type(event.undelivered, int)
        elif isinstance(event, channels.Writable):
            assert_type(event.channel, ChannelLike)
        else:
            assert_type(event, ClientAccepted)
            assert_type(event.channel, SocketChannel)
            assert_type(event.server, socket.socket)


def reveal_batches(poller: channels.poller.Poller) -> None:
    events = poller.poll_batches(0.5)
    assert_type(events, List[channels.BatchEvent])
    for event in events:
        if isinstance(event, channels.FramesReceived):
            assert_type(event.frames, List[bytes])
            assert_type(event.channel, ChannelLike)
        elif isinstance(event, ChannelClosed):
            assert_type(event.reason, CloseReason)
        elif isinstance(event, channels.Writable):
            assert_type(event.channel, ChannelLike)
        else:
            assert_type(event, ClientAccepted)
