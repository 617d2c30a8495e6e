"""Peers that misbehave: endless lines, floods, resets."""

import logging
import select
import selectors
import socket
import struct
import threading
import tracemalloc
from typing import Callable, List, Optional, Tuple, Type

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
    # (how much the thread sends depends on how it is scheduled: on a loaded
    # machine, little; the topped-up test below counts the flood exactly)
    assert flooded_total > HAND_OUT * len(b"flood flood flood flood flood\n")


def _listing_backwards(
    selector_cls: Type[selectors.BaseSelector],
) -> Callable[[], selectors.BaseSelector]:
    """A selector of ``selector_cls`` whose ``select()`` lists the ready fds
    the other way round (their order is the kernel's: any is possible)."""

    class Backwards(selector_cls):  # type: ignore[valid-type,misc]
        def select(
            self, timeout: Optional[float] = None
        ) -> List[Tuple[selectors.SelectorKey, int]]:
            return list(reversed(super().select(timeout)))

    return Backwards


class _Flood:
    """A peer's end kept full of lines: each ``top_up()`` sends until the
    kernel takes no more (no thread: a flood every poll() finds ready)."""

    LINE = b"flood flood flood flood flood\n"

    def __init__(self, peer: socket.socket) -> None:
        peer.setblocking(False)
        self.peer = peer
        self.sent = 0
        self._unsent = b""

    def top_up(self) -> None:
        while True:
            if not self._unsent:
                self._unsent = self.LINE * 4096
            try:
                count = self.peer.send(self._unsent)
            except BlockingIOError:
                return
            self._unsent = self._unsent[count:]
            self.sent += count


@pytest.mark.parametrize("listed", ["as given", "backwards"])
def test_a_quiet_peers_line_comes_in_the_next_poll_whatever_the_order_of_select(
    selector_cls: Type[selectors.BaseSelector], listed: str
) -> None:
    # A flood kept topped up (no thread: every poll() finds it ready), the
    # quiet peer listed before or after it: the quiet line comes in the very
    # next poll() each time (a call that took the rest of an earlier list
    # without selecting missed it when the quiet one came first).
    selector = selector_cls if listed == "as given" else _listing_backwards(selector_cls)
    flood_end, flood_peer = socket.socketpair()
    quiet_end, quiet_peer = socket.socketpair()
    flood = _Flood(flood_peer)
    received = 0

    try:
        with Poller(buffering="line", selector=selector) as poller:
            flooding = SocketChannel(flood_end, buffering="line")
            quiet = SocketChannel(quiet_end, buffering="line")
            poller.register(flooding)
            poller.register(quiet)
            for index in range(30):
                flood.top_up()
                line = b"quiet %d\n" % index
                quiet_peer.sendall(line)
                select.select([quiet_end], [], [], DEADLINE)
                results = poller.poll(DEADLINE)
                assert (line, quiet) in results, f"poll {index}"
                flooded = [d for d, s in results if s is flooding]
                assert flooded and all(d.endswith(b"\n") for d in flooded)
                received += sum(map(len, flooded))
            # (about a call's worth a poll, less when a read's last lines go)
            assert received > 20 * HAND_OUT * len(_Flood.LINE)
            flood_peer.close()
            results = poll_until(poller, lambda r: (b"", flooding) in r)
            received += sum(len(d) for d, s in results if s is flooding)
    finally:
        flood_peer.close()
        quiet_peer.close()
    assert received == flood.sent  # nothing lost, nothing twice


def test_quiet_peers_that_always_have_a_line_get_their_looks_in_turn(
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    # One look per call while a flood fills the calls: four quiet peers that
    # send their next line as soon as the last one came are all served in
    # turn, each within eight calls (calls with room read some of them out of
    # turn: the last call of each of the flood's reads, which is not read
    # again before its lines are out); the first in select()'s list cannot
    # keep the look.
    flood_end, flood_peer = socket.socketpair()
    flood = _Flood(flood_peer)
    quiet_pairs = [socket.socketpair() for _ in range(4)]
    try:
        with Poller(buffering="line", selector=selector_cls) as poller:
            flooding = SocketChannel(flood_end, buffering="line")
            poller.register(flooding)
            quiet = [SocketChannel(end, buffering="line") for end, _ in quiet_pairs]
            for channel in quiet:
                poller.register(channel)
            sent_at = {}
            for index, (_, peer) in enumerate(quiet_pairs):
                peer.sendall(b"line\n")
                sent_at[index] = 0
            served = [0] * len(quiet)
            full = 0
            for call in range(1, 41):
                flood.top_up()
                results = poller.poll(DEADLINE)
                assert any(source is flooding for _, source in results)  # it floods
                full += len(results) >= HAND_OUT
                for index, channel in enumerate(quiet):
                    if (b"line\n", channel) in results:
                        served[index] += 1
                        sent_at[index] = call
                        quiet_pairs[index][1].sendall(b"line\n")
                    assert call - sent_at[index] <= 2 * len(quiet), f"peer {index} at call {call}"
                # (its next line is there before the next call: wait on it)
                select.select([end for end, _ in quiet_pairs], [], [], DEADLINE)
            assert min(served) >= 40 // len(quiet) - 1
            assert full >= 40 // 2, "the flood left room in most calls: no test of the looks"
    finally:
        flood_peer.close()
        for _, peer in quiet_pairs:
            peer.close()


def test_a_client_is_accepted_by_the_next_poll_while_several_peers_flood(
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    # Busy channels that keep their turn must not keep the next call from
    # selecting: a new client (like a quiet peer) is seen by the next poll().
    # (In the first calls the flooders are not busy yet: ready channels that
    # were not read take their turns, a look a call, before the next select.)
    pairs = [socket.socketpair() for _ in range(6)]
    floods = [_Flood(peer) for _, peer in pairs]
    server = socket.create_server(("127.0.0.1", 0))
    clients: List[socket.socket] = []
    try:
        with Poller(buffering="line", selector=selector_cls) as poller:
            for end, _ in pairs:
                poller.register(SocketChannel(end, buffering="line"))
            poller.add_server(server)
            for index in range(40):
                for flood in floods:
                    flood.top_up()
                if index >= 12 and index % 4 == 3:  # (now and then, into a running flood)
                    clients.append(socket.create_connection(server.getsockname()))
                    select.select([server], [], [], DEADLINE)  # it waits to be accepted
                    results = poller.poll(DEADLINE)
                    accepted = [item for item in results if not isinstance(item[0], bytes)]
                    assert len(accepted) == 1, f"poll {index}: no accept among {len(results)}"
                else:
                    results = poller.poll(DEADLINE)
                assert len(results) >= HAND_OUT // 2  # the flood goes on
    finally:
        server.close()
        for sock in [*clients, *(peer for _, peer in pairs)]:
            sock.close()


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
