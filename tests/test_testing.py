"""channels.testing: scripting what real networks do, for applications' tests."""

import errno
from typing import List

import pytest

from channels import EndpointClosedException, Poller
from channels.testing import TestChannel

from .conftest import poll_until


def test_split_at_delivers_the_data_in_separate_reads() -> None:
    channel = TestChannel()
    channel.put(b"hello world", split_at=[3, 8])
    reads: List[bytes] = []
    for _ in range(10):
        data = channel.read()
        if data:
            reads.append(data)
    assert reads == [b"hel", b"lo wo", b"rld"]
    channel.close()


def test_split_at_cuts_a_line_where_asked(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"first\nsec", split_at=[8])
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"first\n", channel)]
    channel.put(b"ond\n")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"second\n", channel)]


def test_split_at_rejects_offsets_outside_the_data() -> None:
    channel = TestChannel()
    for bad in ([0], [5], [-1]):
        with pytest.raises(ValueError, match="split_at"):
            channel.put(b"12345", split_at=bad)
    channel.close()


def test_throttled_writes_are_short_or_fail_with_eagain_and_nothing_is_lost() -> None:
    channel = TestChannel()
    channel.throttle_writes(3, 0, 2)
    channel.write(b"abcdefgh")  # the OS takes 3 bytes, then EAGAIN
    assert channel.write_buffer_size == 5
    assert channel.get() == b"abcdefgh"  # the rest went through after the script
    channel.close()


def test_throttled_writes_through_a_poller(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.throttle_writes(*([1, 0] * 20))
    channel.write(b"0123456789" * 3)
    assert channel.write_buffer_size > 0
    for _ in range(200):  # each poll() flushes once: one scripted step
        if not channel.write_buffer_size:
            break
        poller.poll(0.01)
    assert channel.write_buffer_size == 0
    assert channel.get() == b"0123456789" * 3


def test_throttle_writes_rejects_bad_counts() -> None:
    channel = TestChannel()
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="throttle_writes"):
            channel.throttle_writes(bad)  # type: ignore[arg-type]
    channel.close()


def test_close_peer_ends_reading_and_writing(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.write(b"reply before\n")
    channel.put(b"last line\ntail")
    channel.close_peer()
    results = poll_until(poller, lambda r: (b"", channel) in r)
    assert results == [(b"last line\n", channel), (b"tail", channel), (b"", channel)]
    assert channel.get() == b"reply before\n"
    with pytest.raises(EndpointClosedException):
        channel.write(b"to nobody\n")
    with pytest.raises(ValueError, match="close_peer"):
        channel.put(b"more")
    channel.close()


def test_reset_peer_loses_unread_data_and_fails_reads_and_writes(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.put(b"never read", split_at=[5])
    channel.reset_peer()
    assert poll_until(poller, lambda r: (b"", channel) in r)[-1] == (b"", channel)
    with pytest.raises(EndpointClosedException) as info:
        channel.write(b"x")
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionResetError)
    assert cause.errno == errno.ECONNRESET
    channel.close()


def test_read_after_reset_raises_with_the_reset_as_cause() -> None:
    channel = TestChannel()
    channel.reset_peer()
    with pytest.raises(EndpointClosedException, match="reset") as info:
        channel.read()
    assert isinstance(info.value.__cause__, ConnectionResetError)
    channel.close()
