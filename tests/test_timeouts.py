"""Timeouts of any size: accepted where a timeout is, clamped inside, as asyncio does.

``None`` and ``inf`` wait forever; zero or less does not wait; a year, 1e9 or
1e300 seconds are just long waits (each OS wait is at most a day); NaN, and a
negative linger, raise ``ValueError`` naming the argument. Every selector.
"""

import math
import socket
import threading
import time
from typing import Callable, List

import pytest

from channels import Poller, SocketChannel
from channels._fds import FdWaiter, fd_ready

from .conftest import DEADLINE, events_until

HUGE = [1e7, 365 * 24 * 3600.0, 1e9, 1e300, math.inf, None]
NO_WAIT = [0, 0.0, -1, -1e300, -math.inf]


@pytest.mark.parametrize("timeout", HUGE)
@pytest.mark.parametrize("view", ["poll", "poll_events", "poll_batches"])
def test_poll_takes_a_timeout_of_any_size(
    make_poller: Callable[..., Poller], timeout: object, view: str, tcp_server: socket.socket
) -> None:
    poller = make_poller()
    poller.add_server(tcp_server)  # (a server made poll(inf) overflow before)
    poller.wakeup()  # returns promptly: the wait must not overflow first
    assert getattr(poller, view)(timeout) == []


@pytest.mark.parametrize("timeout", NO_WAIT)
def test_poll_with_zero_or_less_does_not_wait(
    make_poller: Callable[..., Poller], timeout: float
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    started = time.monotonic()
    for _ in range(20):
        assert poller.poll(timeout) == []
    assert time.monotonic() - started < 1.0  # twenty polls that never wait
    channel.close()
    theirs.close()


@pytest.mark.parametrize("view", ["poll", "poll_events", "poll_batches"])
def test_poll_with_nan_raises_naming_the_timeout(
    make_poller: Callable[..., Poller], view: str
) -> None:
    poller = make_poller()
    with pytest.raises(ValueError, match=r"poll\(\) timeout .*NaN"):
        getattr(poller, view)(math.nan)
    with pytest.raises(TypeError, match=r"poll\(\) timeout .*str"):
        getattr(poller, view)("1")
    assert poller.poll(0) == []  # still usable


def test_a_poll_waiting_long_still_returns_for_data(make_poller: Callable[..., Poller]) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    timer = threading.Timer(0.05, theirs.sendall, (b"late",))
    timer.start()
    assert poller.poll(1e300) == [(b"late", channel)]
    timer.join()
    channel.close()
    theirs.close()


def _queued_pair() -> "tuple[SocketChannel, socket.socket, int]":
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    payload = b"q" * (4 * 1024 * 1024)
    channel.write(payload)
    assert channel.write_buffer_size > 0
    return channel, theirs, len(payload)


def _drain(sock: socket.socket, size: int, got: List[int]) -> None:
    sock.settimeout(DEADLINE)
    total = 0
    while total < size:
        total += len(sock.recv(1 << 20))
    got.append(total)


@pytest.mark.parametrize("timeout", HUGE)
def test_flush_takes_a_timeout_of_any_size(timeout: object) -> None:
    channel, theirs, size = _queued_pair()
    got: List[int] = []
    reader = threading.Thread(target=_drain, args=(theirs, size, got))
    reader.start()
    assert channel.flush(timeout) is True  # type: ignore[arg-type]
    reader.join(DEADLINE)
    assert got == [size]
    channel.close()
    theirs.close()


@pytest.mark.parametrize("timeout", NO_WAIT)
def test_flush_with_zero_or_less_only_sends_what_fits(timeout: float) -> None:
    channel, theirs, _ = _queued_pair()
    assert channel.flush(timeout) is False
    channel.abort()
    theirs.close()


def test_flush_with_nan_raises_naming_the_timeout() -> None:
    channel, theirs, _ = _queued_pair()
    with pytest.raises(ValueError, match=r"flush\(\) timeout .*NaN"):
        channel.flush(math.nan)
    with pytest.raises(TypeError, match=r"flush\(\) timeout"):
        channel.flush("soon")  # type: ignore[arg-type]
    channel.abort()
    theirs.close()


@pytest.mark.parametrize("linger", [1e7, 1e9, 1e300, math.inf])
def test_a_huge_linger_closes_a_registered_channel_in_the_background(
    make_poller: Callable[..., Poller], linger: float
) -> None:
    poller = make_poller()
    channel, theirs, size = _queued_pair()
    channel.linger = linger
    poller.register(channel)
    channel.close()  # returned at once: it did not overflow, nor leave it half-closed
    assert channel.closing
    assert poller.poll(0) == []  # the deadline far away must not overflow select()
    got: List[int] = []
    reader = threading.Thread(target=_drain, args=(theirs, size, got))
    reader.start()
    events = events_until(poller, bool)
    reader.join(DEADLINE)
    assert got == [size] and len(events) == 1 and not channel.closing
    theirs.close()


@pytest.mark.parametrize("linger", [1e9, math.inf])
def test_a_huge_linger_on_a_blocking_close_waits_for_the_reader(linger: float) -> None:
    channel, theirs, size = _queued_pair()
    channel.linger = linger
    got: List[int] = []
    reader = threading.Thread(target=_drain, args=(theirs, size, got))
    reader.start()
    channel.close()
    reader.join(DEADLINE)
    assert got == [size] and channel.undelivered == 0
    theirs.close()


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.nan, ValueError), (-1, ValueError), (-math.inf, ValueError), ("5", TypeError)],
)
def test_a_bad_linger_raises_naming_it(value: object, error: type) -> None:
    mine, theirs = socket.socketpair()
    with pytest.raises(error, match="linger"):
        SocketChannel(mine, linger=value)  # type: ignore[arg-type]
    channel = SocketChannel(mine)
    with pytest.raises(error, match="linger"):
        channel.linger = value  # type: ignore[assignment]
    channel.close()
    theirs.close()


@pytest.mark.parametrize("timeout", [1e9, math.inf])
def test_the_fd_waits_clamp_their_timeout(timeout: float) -> None:
    mine, theirs = socket.socketpair()
    assert fd_ready(mine.fileno(), writing=True, timeout=timeout)
    waiter = FdWaiter()
    waiter.add(mine.fileno())
    assert waiter.wait(timeout) == [(mine.fileno(), False)]
    mine.close()
    theirs.close()
