"""Peers that misbehave: endless lines, floods, resets."""

import logging
import select
import socket
import struct
import threading
import tracemalloc
from typing import Callable, List, Tuple

import pytest

from channels import (
    EndpointClosedException,
    LineBuffering,
    LineTooLong,
    Poller,
    SocketChannel,
)
from channels.poller import DEFAULT_READ_BUDGET, HAND_OUT
from channels.testing import TestChannel

from ..conftest import DEADLINE, poll_until

pytestmark = pytest.mark.fault


def tcp_pair() -> Tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays
    return server_side, client


def test_an_overlong_line_closes_that_channel_only_with_bounded_memory(
    make_poller: Callable[..., Poller], caplog: pytest.LogCaptureFixture
) -> None:
    poller = make_poller()
    limit = 64 * 1024
    bad_end, bad_peer = tcp_pair()
    good_end, good_peer = tcp_pair()
    bad = SocketChannel(bad_end, buffering=LineBuffering(max_length=limit))
    good = SocketChannel(good_end, buffering="line")
    poller.register(bad)
    poller.register(good)
    stop = threading.Event()

    def flood() -> None:  # 10 MiB without a newline, until the server cuts it off
        chunk = b"x" * 65536
        try:
            for _ in range(160):
                if stop.is_set():
                    return
                bad_peer.sendall(chunk)
        except OSError:
            return  # the server closed it: that is the point

    flooder = threading.Thread(target=flood)
    tracemalloc.start()
    try:
        flooder.start()
        bad_peer.sendall(b"")
        reported: List[Tuple[bytes, object]] = []
        for index in range(20):
            good_peer.sendall(b"good %d\n" % index)
            line = b"good %d\n" % index
            reported += poll_until(poller, lambda r, line=line: (line, good) in r)
        reported += poll_until(poller, lambda r: (b"", bad) in r or (b"", bad) in reported)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        stop.set()
    flooder.join(DEADLINE)
    assert [data for data, source in reported if source is bad] == [b""]
    assert [d for d, s in reported if s is good] == [b"good %d\n" % i for i in range(20)]
    poller.poll(0)  # the next poll closes it (after delivering what it queued: nothing)
    assert bad.closed
    assert peak < 4 * 1024 * 1024, f"{peak} bytes traced: the line was buffered unbounded"
    assert "line longer than max_length=65536" in caplog.text
    assert "peer=127.0.0.1:" in caplog.text
    good.write(b"still served\n")
    assert good_peer.recv(100) == b"still served\n"
    bad_peer.close()
    good_peer.close()


def test_read_raises_line_too_long_once_then_endpoint_closed() -> None:
    channel = TestChannel(buffering=LineBuffering(max_length=10))
    channel.put(b"short\n" + b"y" * 11)
    assert channel.read() == b"short\n"
    with pytest.raises(LineTooLong) as info:
        channel.read()
    assert "read from <TestChannel" in str(info.value)
    assert info.value.max_length == 10
    with pytest.raises(EndpointClosedException) as again:
        channel.read()
    assert not isinstance(again.value, LineTooLong)
    assert again.value.__cause__ is info.value
    channel.close()


def test_a_flooding_peer_cannot_starve_a_quiet_one(make_poller: Callable[..., Poller]) -> None:
    poller = make_poller(buffering="line")
    flood_end, flood_peer = tcp_pair()
    quiet_end, quiet_peer = tcp_pair()
    flooding = SocketChannel(flood_end, buffering="line")
    quiet = SocketChannel(quiet_end, buffering="line")
    poller.register(flooding)
    poller.register(quiet)
    stop = threading.Event()

    def flood() -> None:
        lines = b"flood flood flood flood flood\n" * 4096
        try:
            while not stop.is_set():
                flood_peer.sendall(lines)
        except OSError:
            return

    flooder = threading.Thread(target=flood)
    flooder.start()
    flooded_total = 0
    try:
        poll_until(poller, lambda r: any(s is flooding for _, s in r))
        for index in range(30):
            line = b"quiet %d\n" % index
            quiet_peer.sendall(line)
            select.select([quiet_end], [], [], DEADLINE)  # it is there to be read
            results = poller.poll(DEADLINE)  # one poll(), with the flood going on
            assert (line, quiet) in results
            flooded = sum(len(d) for d, s in results if s is flooding)
            assert flooded <= 2 * DEFAULT_READ_BUDGET  # bounded, however much waits
            flooded_total += flooded
            assert all(d.endswith(b"\n") for d, s in results if s is flooding)
    finally:
        stop.set()
        flooding.abort()  # the flooder's sendall() then fails and it ends
        flooder.join(DEADLINE)
        flood_peer.close()
        quiet_peer.close()
    assert not flooder.is_alive()
    # (a flooder thread may miss a poll now and then; across 30 it floods: a
    # poll hands out about HAND_OUT lines, shared with the quiet one)
    assert flooded_total > 10 * HAND_OUT * len(b"flood flood flood flood flood\n")


def test_one_poll_takes_at_most_the_read_budget_from_a_channel(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    channel = TestChannel(buffering="line")
    poller.register(channel)
    lines = [b"%07d\n" % i for i in range(100_000)]  # 800 KB of 8-byte lines
    channel.put(b"".join(lines))
    got: List[bytes] = []
    polls = 0
    while len(got) < len(lines):
        batch = poller.poll(DEADLINE)
        polls += 1
        assert 0 < sum(len(d) for d, _ in batch) <= 16 * 1024 + DEFAULT_READ_BUDGET
        got += [d for d, _ in batch]
    assert got == lines
    assert polls >= 3


def test_a_smaller_read_budget_is_honoured(selector_cls: type) -> None:
    with Poller(selector=selector_cls, read_budget=100) as poller:
        channel = TestChannel(buffering="line")
        poller.register(channel)
        channel.put(b"0123456789\n" * 50)
        first = poller.poll(DEADLINE)
        assert len(first) == 9  # 100 bytes read: 9 lines of 11 and a piece
        assert sum(len(d) for d, _ in poller.poll(0)) > 0  # the rest: no waiting


@pytest.mark.parametrize(("value", "error"), [(0, ValueError), (1.5, TypeError)])
def test_a_bad_read_budget_is_rejected(value: object, error: type) -> None:
    with pytest.raises(error, match="read_budget"):
        Poller(read_budget=value)  # type: ignore[arg-type]


def test_a_reset_from_the_peer_is_reported_once(
    make_poller: Callable[..., Poller], caplog: pytest.LogCaptureFixture
) -> None:
    poller = make_poller(buffering="line")
    server_side, client = tcp_pair()
    channel = SocketChannel(server_side, buffering="line")
    other = TestChannel()
    poller.register(channel)
    poller.register(other)
    client.sendall(b"before the reset\n")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"before the reset\n", channel)]
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    assert poll_until(poller, lambda r: (b"", channel) in r) == [(b"", channel)]
    with pytest.raises(EndpointClosedException) as info:
        channel.write(b"after\n")
    assert isinstance(info.value.__cause__, OSError)
    other.put(b"fine")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"fine", other)]
    channel.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
