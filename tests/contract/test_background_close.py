"""close() of a registered channel never stalls the loop: the Poller finishes it.

Over every channel kind and selector class: ``close()`` returns at once with
output still queued, the Poller delivers it in the background within the
channel's ``linger`` in all, then releases the fds and reports the channel
once, with what it could not deliver. Every byte is counted: what the peer
got plus ``undelivered`` is what was written, and the peer got a prefix.
"""

import threading
import time
from typing import Callable, List, Tuple

import pytest

from channels import (
    Channel,
    ChannelClosed,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    Poller,
    PollEvent,
)

from ..conftest import DEADLINE, Maker, Peer, events_until

PAYLOAD = bytes(range(251)) * 16_000  # ~4 MB: more than any OS buffer here


def _closed(events: List[PollEvent]) -> List[ChannelClosed]:
    return [event for event in events if isinstance(event, ChannelClosed)]


def _poll_and_take(
    poller: Poller, peer: Peer, until: Callable[[bytes, bool], bool]
) -> Tuple[List[PollEvent], bytes]:
    """Poll while the peer reads, until ``until(received, ended)``."""
    events: List[PollEvent] = []
    got = b""
    ended = False
    deadline = time.monotonic() + DEADLINE
    while not until(got, ended):
        assert time.monotonic() < deadline, f"peer got {len(got)} bytes; events {events!r}"
        events += poller.poll_events(0.01)
        data, ended_now = peer.take()
        got += data
        ended = ended or ended_now
    return events, got


def _close_with_output(channel: Channel) -> int:
    """Write the payload, close; return what was still queued after close()."""
    channel.write(PAYLOAD)
    channel.close()
    assert channel.closed
    queued = channel.write_buffer_size
    # In the background exactly when something is left (a TestChannel's peer
    # is in-process: it takes everything at once).
    assert channel.closing == (queued > 0)
    with pytest.raises(EndpointClosedException):
        channel.write(b"after close")
    return queued


def test_close_returns_at_once_and_the_poller_delivers_everything(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    _close_with_output(channel)
    events, got = _poll_and_take(poller, peer, lambda got, ended: ended)
    assert got == PAYLOAD
    assert _closed(events) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]
    assert not channel.closing and channel.undelivered == 0
    assert poller.poll(0.05) == []
    assert channel.get_fd() == -1


def test_a_reader_that_stalls_costs_the_linger_and_poll_none_returns(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    channel.linger = 0.2
    poller = make_poller()
    poller.register(channel)
    queued = _close_with_output(channel)
    started = time.monotonic()
    events = poller.poll_events(None)  # the deadline wakes it: no busy loop needed
    while not _closed(events):
        events += poller.poll_events(None)
    if queued:
        assert time.monotonic() - started >= 0.2 - 0.01
    assert _closed(events) == [
        ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, channel.undelivered)
    ]
    assert not [event for event in events if isinstance(event, DataReceived)]
    _, got = _poll_and_take(poller, peer, lambda got, ended: ended)
    assert got == PAYLOAD[: len(got)]  # in order, nothing twice
    assert len(got) + channel.undelivered == len(PAYLOAD)
    assert (channel.undelivered > 0) == (queued > 0)
    assert poller.poll(0.05) == []


def test_a_slow_reader_is_cut_at_the_linger_in_all(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    """The linger bounds the whole background delivery, not only a stall."""
    channel, peer = make_channel("bytes")
    channel.linger = 0.3
    poller = make_poller()
    poller.register(channel)
    queued = _close_with_output(channel)
    started = time.monotonic()
    events: List[PollEvent] = []
    got = b""
    while not _closed(events):
        assert time.monotonic() - started < DEADLINE
        # (the poll waits for the close, or 30 ms: the reader's pace)
        events += poller.poll_events(0.03)
        got += peer.recv_once()  # a little at a time: always progressing
    took = time.monotonic() - started
    got += _poll_and_take(poller, peer, lambda got, ended: ended)[1]
    assert got == PAYLOAD[: len(got)]
    assert len(got) + channel.undelivered == len(PAYLOAD)
    if queued:
        assert 0.3 - 0.01 <= took < 0.3 + 1.0
    assert _closed(events) == [
        ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, channel.undelivered)
    ]


def test_a_peer_that_resets_during_the_close_ends_it_at_once(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    if peer.reset is None:
        pytest.skip("this transport cannot reset")
    channel.linger = 30
    poller = make_poller()
    poller.register(channel)
    _close_with_output(channel)
    peer.reset()
    events = events_until(poller, lambda got: bool(_closed(got)))
    (report,) = _closed(events)
    assert report.reason is CloseReason.CLOSED_LOCALLY
    assert report.undelivered == channel.undelivered
    assert not channel.closing


def test_close_all_finishes_a_close_in_progress(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    _close_with_output(channel)
    events: List[PollEvent] = []
    got = b""
    reader_done = threading.Event()

    def read_all() -> None:
        nonlocal got
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            data, ended = peer.take()
            got += data
            if ended:
                break
            peer.wait_for_output(deadline)
        reader_done.set()

    if channel.closing:
        reader = threading.Thread(target=read_all)
        reader.start()
        poller.close_all()
        reader_done.wait(DEADLINE)
        reader.join(DEADLINE)
    else:
        poller.close_all()
        got = peer.take()[0]
    assert not channel.closing
    assert got == PAYLOAD
    events += poller.poll_events(0)
    assert _closed(events) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]


def test_unregister_during_the_close_delivers_first(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    """Whoever stops watching a closing channel gets the close a channel
    makes on its own: everything delivered (blocking), then the fds go."""
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    _close_with_output(channel)
    got = b""

    def read_all() -> None:
        nonlocal got
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            data, ended = peer.take()
            got += data
            if ended:
                return
            peer.wait_for_output(deadline)

    reader = threading.Thread(target=read_all)
    reader.start()
    poller.unregister(channel)
    assert not channel.closing and channel.get_fd() == -1
    reader.join(DEADLINE)
    assert got == PAYLOAD
    assert poller.poll(0.05) == []  # unregistered: never reported


def test_a_half_closed_peer_gets_the_reply_of_a_close(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    """Request, half-close, reply, close: the reply arrives whole and the
    channel, reported once when the peer ended, is not reported again."""
    channel, peer = make_channel("line")
    poller = make_poller()
    poller.register(channel)
    peer.send(b"question\n")
    peer.end()
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert _closed(events) == [ChannelClosed(channel, CloseReason.PEER_CLOSED, 0)]
    _close_with_output(channel)
    more, got = _poll_and_take(poller, peer, lambda got, ended: ended)
    assert got == PAYLOAD
    assert _closed(more) == []
    assert not channel.closing


def test_flush_after_close_waits_for_the_background_delivery(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    _close_with_output(channel)
    if not channel.closing:  # all went at once: the close is over, flush() refuses
        with pytest.raises(EndpointClosedException):
            channel.flush(0)
        return
    got = bytearray()

    def read_all() -> None:
        deadline = time.monotonic() + DEADLINE
        while len(got) < len(PAYLOAD) and time.monotonic() < deadline:
            got.extend(peer.take()[0])
            peer.wait_for_output(deadline)

    reader = threading.Thread(target=read_all)
    reader.start()
    assert channel.flush(DEADLINE) is True  # no poll() meanwhile: flush() delivered it
    reader.join(DEADLINE)
    assert bytes(got) == PAYLOAD
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert _closed(events) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, 0)]


def test_abort_cuts_a_background_close_short(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, _ = make_channel("bytes")
    poller = make_poller()
    poller.register(channel)
    queued = _close_with_output(channel)
    channel.abort()
    assert not channel.closing and channel.undelivered == queued
    events = events_until(poller, lambda got: bool(_closed(got)))
    assert _closed(events) == [ChannelClosed(channel, CloseReason.CLOSED_LOCALLY, queued)]
    assert poller.poll(0.05) == []
