"""One Poller contract, run over every channel kind and every selector class.

Like CPython's ``BaseSelectorTestCase`` and trio's ``check_half_closeable_stream``:
each behaviour is written once against ``make_channel`` (pipe, socketpair,
TCP, Unix socket, TestChannel) and ``make_poller`` (every selector class this
platform has), so no kind takes a branch the others never take unseen.
"""

import time
from typing import Callable, List

import pytest

from channels import (
    ChannelClosed,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    Poller,
    PollEvent,
    WriteBufferFullError,
)

from ..conftest import DEADLINE, Maker, Peer, events_until

Predicate = Callable[[List[PollEvent]], bool]


def _closed(events: List[PollEvent]) -> List[ChannelClosed]:
    return [event for event in events if isinstance(event, ChannelClosed)]


def _data(events: List[PollEvent]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, DataReceived))


def _deliver(poller: Poller, peer: Peer, size: int) -> bytes:
    """Poll while the peer reads, until it got ``size`` bytes."""
    got = b""
    deadline = time.monotonic() + DEADLINE
    while len(got) < size:
        assert time.monotonic() < deadline, f"the peer got {len(got)} of {size} bytes"
        poller.poll(0.01)
        got += peer.recv_available()
    return got


def test_data_arrives_whole_and_in_order(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    sent = bytes(range(256)) * 400  # more than a pipe holds: poll while sending
    events: List[PollEvent] = []
    for start in range(0, len(sent), 7919):
        peer.send(sent[start : start + 7919])
        events += poller.poll_events(0)
    events += events_until(poller, lambda got: len(_data(events + got)) >= len(sent))
    assert _data(events) == sent
    assert all(event.channel is channel for event in events)


def test_lines_come_one_per_item_however_they_are_cut(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    lines = [b"%d:%s\n" % (n, b"x" * (n % 50)) for n in range(300)]
    stream = b"".join(lines)
    for start in range(0, len(stream), 333):
        peer.send(stream[start : start + 333])
    events = events_until(poller, lambda got: len(got) >= len(lines))
    assert [e.data for e in events if isinstance(e, DataReceived)] == lines


def test_a_peer_close_is_reported_once_after_the_data(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    peer.send(b"one\ntwo\nlast without newline")
    peer.close()
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert [e.data for e in events if isinstance(e, DataReceived)] == [
        b"one\n",
        b"two\n",
        b"last without newline",
    ]
    assert events[-1] == ChannelClosed(channel, CloseReason.PEER_CLOSED, 0)
    assert poller.poll(0.05) == []
    assert channel.get_fd() not in [key.fd for key in poller.selector.get_map().values()]


def test_an_own_close_is_reported_once(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    peer.send(b"kept\n")
    events_until(poller, bool)
    channel.close()
    assert events_until(poller, bool) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]
    assert poller.poll(0.05) == []


def test_a_reset_is_reported_once(make_channel: Maker, make_poller: Callable[..., Poller]) -> None:
    channel, peer = make_channel("bytes")
    if peer.reset is None:
        pytest.skip("this transport cannot reset")
    poller = make_poller()
    poller.register(channel)
    peer.reset()
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert _closed(events) == [ChannelClosed(channel, CloseReason.RESET, 0)]
    assert poller.poll(0.05) == []
    with pytest.raises(EndpointClosedException):
        channel.write(b"gone")


def test_queued_output_is_delivered_by_poll(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    payload = bytes(range(251)) * 16000  # ~4 MB: more than any OS buffer here
    channel.write(payload)
    assert _deliver(poller, peer, len(payload)) == payload
    assert channel.write_buffer_size == 0


def test_pause_stops_reading_and_resume_returns_what_waited(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    poller.pause_reading(channel)
    peer.send(b"held\n")
    assert poller.poll(0.1) == []
    poller.resume_reading(channel)
    assert events_until(poller, bool) == [DataReceived(channel, b"held\n")]


def test_backpressure_refuses_past_the_mark_and_drains_through_poll(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    channel.high_water = 256 * 1024
    poller = make_poller()
    poller.register(channel)
    written = 0
    with pytest.raises(WriteBufferFullError):
        for _ in range(10_000):
            channel.write(b"b" * 65536)
            written += 65536
    assert channel.write_buffer_size <= channel.high_water
    assert _deliver(poller, peer, written) == b"b" * written
    channel.write(b"after")  # room again
    assert _deliver(poller, peer, 5) == b"after"


def test_a_half_closed_peer_still_gets_the_reply(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    peer.send(b"question\n")
    peer.end()
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert events == [
        DataReceived(channel, b"question\n"),
        ChannelClosed(channel, CloseReason.PEER_CLOSED, 0),
    ]
    reply = b"answer\n" * 300_000  # ~2 MB: the Poller delivers what the OS does not take
    channel.write(reply)
    assert _deliver(poller, peer, len(reply)) == reply
