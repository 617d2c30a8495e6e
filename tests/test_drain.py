"""Drain events: after a refused write, a Poller says when the channel drained.

The README's backpressure recipe waits with ``poll(None)``: it must wake up
when the consumer's queue falls to its low-water mark, or it stalls forever.
Over every channel kind and selector class.
"""

import select
import sys
import threading
from typing import Callable, List, Tuple

import pytest

from channels import (
    Channel,
    ChannelClosed,
    Poller,
    SocketChannel,
    Writable,
    WriteBufferFullError,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, Maker, Peer, events_until
from .test_readme import ROOT, block_after

sys.path.insert(0, str(ROOT / "examples"))
from relay import relay

CHUNK = bytes(range(256)) * 256  # 64 KiB


def _fill_until_refused(channel: Channel) -> None:
    """Write until ``write()`` refuses."""
    with pytest.raises(WriteBufferFullError):
        for _ in range(10_000):
            channel.write(CHUNK)


def _drain_and_wait(channel: Channel, peer: Peer, poll: Callable[[], list]) -> List[object]:
    """Let the peer read while ``poll`` (with no timeout) runs; return what it gave."""
    if isinstance(channel, TestChannel):  # not thread-safe: its get() drains it
        peer.take()
        return poll()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            _, eof = peer.take()
            if eof:
                return
            select.select([peer.readable_fd], [], [], 0.01)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        return poll()
    finally:
        stop.set()
        reader.join(DEADLINE)


def _full_channel(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> Tuple[Channel, Peer, Poller]:
    """A registered channel whose last write was refused."""
    channel, peer = make_channel("bytes")
    channel.high_water = 256 * 1024
    poller = make_poller()
    poller.register(channel)
    _fill_until_refused(channel)
    return channel, peer, poller


def test_a_drained_channel_is_reported_writable_and_ends_poll_none(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer, poller = _full_channel(make_channel, make_poller)
    events = _drain_and_wait(channel, peer, lambda: poller.poll_events(None))
    assert Writable(channel) in events
    assert channel.write_buffer_size <= channel.low_water
    channel.write(CHUNK)  # room again, and no second event for the same drain
    assert Writable(channel) not in poller.poll_events(0)


def test_poll_none_returns_when_the_queue_drains(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer, poller = _full_channel(make_channel, make_poller)
    items = _drain_and_wait(channel, peer, lambda: poller.poll(None))
    assert items == []  # poll() has no tuple for it: it returns, as after wakeup()


def test_poll_batches_carries_the_writable_event(
    make_channel: Maker, make_poller: Callable[..., Poller]
) -> None:
    channel, peer, poller = _full_channel(make_channel, make_poller)
    events = _drain_and_wait(channel, peer, lambda: poller.poll_batches(None))
    assert events == [Writable(channel)]


def test_no_writable_event_without_a_refused_write(make_poller: Callable[..., Poller]) -> None:
    channel = TestChannel()
    poller = make_poller()
    poller.register(channel)
    channel.throttle_writes(0)
    channel.write(b"x" * 1000)  # queued, never refused
    assert channel.get() == b"x" * 1000
    assert poller.poll_events(0) == []


def test_a_broken_connection_is_reported_closed_not_writable(
    make_poller: Callable[..., Poller],
) -> None:
    import socket  # noqa: PLC0415

    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, high_water=128 * 1024)
    poller = make_poller()
    poller.register(channel)
    _fill_until_refused(channel)
    theirs.close()
    events = events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert not any(isinstance(event, Writable) for event in events)
    channel.close()


def test_the_readme_recipe_relays_8_mib_through_a_slow_consumer_with_poll_none(
    make_poller: Callable[..., Poller],
) -> None:
    import socket  # noqa: PLC0415

    size = 8 * 1024 * 1024
    payload = bytes(range(251)) * (size // 251)
    producer_end, producer_peer = socket.socketpair()
    consumer_end, consumer_peer = socket.socketpair()
    producer = SocketChannel(producer_end)
    consumer = SocketChannel(consumer_end, high_water=256 * 1024)
    poller = make_poller()
    poller.register(producer)
    poller.register(consumer)
    got = bytearray()

    def produce() -> None:
        producer_peer.sendall(payload)
        producer_peer.close()

    def consume() -> None:  # slow: small reads
        while True:
            chunk = consumer_peer.recv(4096)
            if not chunk:
                return
            got.extend(chunk)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for thread in threads:
        thread.start()
    relay(poller, producer, consumer)
    assert consumer.flush(DEADLINE)
    consumer.close()
    for thread in threads:
        thread.join(DEADLINE)
    assert bytes(got) == payload
    producer.close()
    consumer_peer.close()


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [(-1, ValueError, "low_water"), (1.5, TypeError, "low_water"), (10**9, ValueError, "at most")],
)
def test_a_bad_low_water_is_rejected_with_its_name(value: object, error: type, match: str) -> None:
    channel = TestChannel()
    with pytest.raises(error, match=match):
        channel.low_water = value  # type: ignore[assignment]
    channel.close()


def test_low_water_defaults_to_a_quarter_of_high_water_and_bounds_it() -> None:
    channel = TestChannel(high_water=1000)
    assert channel.low_water == 250
    channel.low_water = 600
    with pytest.raises(ValueError, match="at least low_water"):
        channel.high_water = 500
    channel.high_water = 800
    assert (channel.low_water, channel.high_water) == (600, 800)
    channel.close()


def test_the_readme_recipe_is_the_example_file() -> None:
    example = (ROOT / "examples" / "relay.py").read_text()
    assert example.endswith(block_after("waits for the consumer with ``poll()``"))
