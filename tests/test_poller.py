"""The Poller (SPEC section 1 poll() contract), on every selector class."""

import errno
import logging
import os
import selectors
import signal
import socket
import time
from typing import Callable, Iterator, List, Optional, Tuple, Type

import pytest

import channels
import channels.channel
import channels.poller
import channels.testing
from channels import (
    EndpointClosedException,
    LineBuffering,
    PipeChannel,
    Poller,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, poll_until, posix_only, watched_fds


def data_of(results: list, channel: object) -> List[bytes]:
    return [data for data, source in results if source is channel]


def closed(channel: object) -> Callable[[list], bool]:
    return lambda results: (b"", channel) in [(d, s) for d, s in results if s is channel]


def socketpair_on_fd(fd: int) -> Tuple[socket.socket, socket.socket]:
    """A socketpair whose first socket has the (free) fd number ``fd``."""
    mine, theirs = socket.socketpair()
    if mine.fileno() != fd:
        os.dup2(mine.fileno(), fd)
        mine.close()
        mine = socket.socket(fileno=fd)
    return mine, theirs


@pytest.fixture
def tcp_server() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock
    sock.close()


# -- names ------------------------------------------------------------------


def test_names_import_from_where_0_2_had_them() -> None:
    assert channels.poller.Poller is channels.Poller
    assert channels.testing.TestChannel is TestChannel
    for name in ("Channel", "PipeChannel", "SocketChannel", "EndpointClosedException", "Poller"):
        assert name in channels.__all__
        assert getattr(channels, name) is getattr(channels.channel, name, channels.Poller)


def test_the_selector_class_is_injectable(selector_cls: Type[selectors.BaseSelector]) -> None:
    with Poller(selector=selector_cls) as poller:
        assert type(poller.selector) is selector_cls


def test_the_default_selector_is_the_platforms_default() -> None:
    with Poller() as poller:
        assert type(poller.selector) is selectors.DefaultSelector


# -- poll() results ---------------------------------------------------------


def test_poll_returns_an_empty_list_when_the_timeout_passes(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    assert poller.poll(0) == []
    start = time.monotonic()
    result = poller.poll(0.05)
    assert result == []
    assert type(result) is list
    assert time.monotonic() - start >= 0.04


def test_poll_with_a_negative_timeout_does_not_wait(poller: Poller) -> None:
    poller.register(TestChannel())
    assert poller.poll(-1) == []


def test_poll_reports_data_with_its_channel(poller: Poller) -> None:
    first, second = TestChannel(), TestChannel()
    poller.register(first)
    poller.register(second)
    first.put(b"to first")
    second.put(b"to second")
    results = poll_until(poller, lambda r: len(r) >= 2)
    assert sorted(results, key=lambda r: r[0]) == [(b"to first", first), (b"to second", second)]
    assert type(poller.poll(0)) is list


def test_poll_with_no_timeout_waits_until_something_happens(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.put(b"x")
    assert poller.poll() == [(b"x", channel)]
    assert poller.poll(0) == []


def test_poll_gives_one_pair_per_complete_line(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"one\ntwo\nthree\npart")
    results = poll_until(poller, lambda r: len(r) >= 3)
    assert results == [(b"one\n", channel), (b"two\n", channel), (b"three\n", channel)]
    assert poller.poll(0) == []
    channel.put(b"ial\n")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"partial\n", channel)]


def test_poll_reports_a_peer_close_once_then_forgets_the_channel(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"line\ntail")
    channel.put_eof()
    results = poll_until(poller, closed(channel))
    assert results == [(b"line\n", channel), (b"tail", channel), (b"", channel)]
    assert poller.poll(0) == []
    assert channel.get_fd() not in watched_fds(poller)
    channel.close()
    assert poller.poll(0) == []


def test_poll_does_not_wait_on_a_channel_it_reported_closed(poller: Poller) -> None:
    gone, alive = TestChannel(), TestChannel()
    poller.register(gone)
    poller.register(alive)
    gone.put_eof()
    poll_until(poller, closed(gone))
    assert len(watched_fds(poller)) == 1
    start = time.monotonic()
    assert poller.poll(0.05) == []  # a level-triggered EOF would return at once
    assert time.monotonic() - start >= 0.04
    gone.close()


def test_own_close_while_registered_is_reported_promptly(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.close()
    start = time.monotonic()
    assert poller.poll(DEADLINE) == [(b"", channel)]
    assert time.monotonic() - start < DEADLINE / 2
    assert poller.poll(0) == []


def test_own_close_of_a_line_channel_reports_buffered_lines_first(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\n")
    poll_until(poller, lambda r: len(r) >= 1)
    channel.put(b"b\nc\nlast")
    # Read "b\n" ourselves so the rest sits in the channel's framer.
    deadline = time.monotonic() + DEADLINE
    first = b""
    while not first and time.monotonic() < deadline:
        first = channel.read()
    assert first == b"b\n"
    channel.close()
    assert poller.poll(DEADLINE) == [(b"c\n", channel), (b"last", channel), (b"", channel)]


@posix_only
def test_close_of_a_pipe_channel_while_registered_is_reported(poller: Poller) -> None:
    r, w = os.pipe()
    channel = PipeChannel(r, w)
    poller.register(channel)
    channel.close()
    assert poller.poll(DEADLINE) == [(b"", channel)]


@posix_only
def test_an_fd_number_reused_by_a_new_channel_registers_cleanly(poller: Poller) -> None:
    old_end, old_peer = socket.socketpair()
    old = SocketChannel(old_end)
    fd = old.get_fd()
    poller.register(old)
    old.close()
    new_end, new_peer = socketpair_on_fd(fd)
    new = SocketChannel(new_end)
    assert new.get_fd() == fd
    poller.register(new)
    new_peer.sendall(b"hello")
    results = poll_until(poller, lambda r: closed(old)(r) and data_of(r, new))
    assert (b"", old) in results
    assert data_of(results, new) == [b"hello"]
    assert data_of(results, old) == [b""]
    old_peer.close()
    new_peer.close()


def test_unregister_stops_reports(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    poller.unregister(channel)
    channel.put(b"x")
    assert poller.poll(0.01) == []
    channel.close()
    assert poller.poll(0.01) == []


def test_unregister_of_an_unknown_channel_does_nothing(poller: Poller) -> None:
    channel = TestChannel()
    poller.unregister(channel)
    channel.close()


def test_unregister_of_a_closed_channel_does_nothing(poller: Poller) -> None:
    never = TestChannel()
    never.close()
    poller.unregister(never)
    registered = TestChannel()
    poller.register(registered)
    registered.close()
    poller.unregister(registered)  # its fileno() is -1 by now
    assert poller.poll(0) == []  # and it is not reported either


def test_register_twice_reports_once(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    poller.register(channel)
    channel.put(b"x")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"x", channel)]


# -- servers ----------------------------------------------------------------


def test_add_server_accepts_tcp_clients_with_the_pollers_buffering(
    make_poller: Callable[..., Poller], tcp_server: socket.socket
) -> None:
    poller = make_poller(buffering="line")
    poller.add_server(tcp_server)
    client = socket.create_connection(tcp_server.getsockname())
    results = poll_until(poller, lambda r: len(r) >= 1)
    ((addr, accepted), server) = results[0]
    assert server is tcp_server
    assert isinstance(accepted, SocketChannel)
    assert accepted.buffering == "line"
    assert addr == client.getsockname()
    client.sendall(b"hi\nthere\n")
    assert poll_until(poller, lambda r: len(r) >= 2) == [
        (b"hi\n", accepted),
        (b"there\n", accepted),
    ]
    accepted.write(b"back\n")
    assert client.recv(10) == b"back\n"
    client.close()
    assert poll_until(poller, closed(accepted)) == [(b"", accepted)]
    accepted.close()


@posix_only
def test_add_server_accepts_unix_clients(poller: Poller, short_tmp: str) -> None:
    path = os.path.join(short_tmp, "server")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    poller.add_server(server)
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    (((addr, accepted), source),) = poll_until(poller, lambda r: len(r) >= 1)
    assert source is server
    assert isinstance(addr, (str, bytes))
    client.sendall(b"ping")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"ping", accepted)]
    client.close()
    server.close()


def test_several_waiting_clients_are_accepted(poller: Poller, tcp_server: socket.socket) -> None:
    poller.add_server(tcp_server)
    clients = [socket.create_connection(tcp_server.getsockname()) for _ in range(5)]
    results = poll_until(poller, lambda r: len(r) >= 5)
    assert sorted(addr for (addr, _), _ in results) == sorted(c.getsockname() for c in clients)
    for client in clients:
        client.close()


def test_one_strategy_serves_every_client_without_shared_state(
    make_poller: Callable[..., Poller], tcp_server: socket.socket
) -> None:
    poller = make_poller(buffering=LineBuffering(b"\r\n"))
    poller.add_server(tcp_server)
    a = socket.create_connection(tcp_server.getsockname())
    b = socket.create_connection(tcp_server.getsockname())
    accepted = [client for (_, client), _ in poll_until(poller, lambda r: len(r) >= 2)]
    by_port = {ch.sock.getpeername()[1]: ch for ch in accepted}
    chan_a, chan_b = by_port[a.getsockname()[1]], by_port[b.getsockname()[1]]
    a.sendall(b"from a, ")
    b.sendall(b"from b, ")
    poller.poll(0.05)
    a.sendall(b"still a\r\n")
    b.sendall(b"still b\r\n")
    results = poll_until(poller, lambda r: len(r) >= 2)
    assert data_of(results, chan_a) == [b"from a, still a\r\n"]
    assert data_of(results, chan_b) == [b"from b, still b\r\n"]
    a.close()
    b.close()


def test_close_all_closes_channels_and_servers(poller: Poller, tcp_server: socket.socket) -> None:
    poller.add_server(tcp_server)
    client = socket.create_connection(tcp_server.getsockname())
    (((_, accepted), _),) = poll_until(poller, lambda r: len(r) >= 1)
    plain = TestChannel()
    poller.register(plain)
    poller.close_all()
    assert tcp_server.fileno() == -1
    assert accepted.get_fd() == -1
    assert plain.get_fd() == -1
    results = poller.poll(DEADLINE)
    assert sorted(map(id, (s for _, s in results))) == sorted(map(id, (accepted, plain)))
    assert all(data == b"" for data, _ in results)
    assert poller.poll(0) == []
    client.close()


# -- custom channels --------------------------------------------------------


class BareChannel:
    """A custom channel that inherits nothing: the ChannelLike shape only."""

    def __init__(self) -> None:
        self.sock, self.peer = socket.socketpair()
        self.sock.setblocking(False)

    @property
    def buffering(self) -> str:
        return "bytes"

    def read(self) -> bytes:
        try:
            data = self.sock.recv(4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            raise EndpointClosedException() from exc
        if not data:
            raise EndpointClosedException()
        return data

    def write(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.sock.sendall(chunk)

    def close(self) -> None:
        self.sock.close()
        self.peer.close()

    def get_fd(self) -> int:
        return self.sock.fileno()


def test_a_channel_that_inherits_nothing_can_be_registered(poller: Poller) -> None:
    channel = BareChannel()
    poller.register(channel)
    channel.peer.sendall(b"custom")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"custom", channel)]
    channel.peer.shutdown(socket.SHUT_WR)
    assert poll_until(poller, closed(channel)) == [(b"", channel)]
    channel.close()


def test_close_all_reports_a_custom_channel_closed(poller: Poller) -> None:
    channel = BareChannel()
    poller.register(channel)
    poller.close_all()
    assert poller.poll(DEADLINE) == [(b"", channel)]
    assert poller.poll(0) == []


# -- bad input --------------------------------------------------------------


def check_still_works(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.put(b"still fine")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"still fine", channel)]
    poller.unregister(channel)
    channel.close()


@posix_only
def test_register_of_a_write_only_channel_raises_and_registers_nothing(poller: Poller) -> None:
    r, w = os.pipe()
    os.close(r)
    channel = PipeChannel(sink=w)
    with pytest.raises(NotImplementedError):
        poller.register(channel)
    assert watched_fds(poller) == []
    check_still_works(poller)
    channel.close()


def test_register_of_a_non_channel_is_a_type_error(poller: Poller) -> None:
    with pytest.raises(TypeError, match="not object"):
        poller.register(object())  # type: ignore[arg-type]
    check_still_works(poller)


def test_register_of_a_closed_channel_is_a_value_error(poller: Poller) -> None:
    channel = TestChannel()
    channel.close()
    with pytest.raises(ValueError, match="not an open fd"):
        poller.register(channel)
    check_still_works(poller)


def test_add_server_rejects_a_socket_that_is_not_listening(poller: Poller) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="listening"):
            poller.add_server(sock)
    check_still_works(poller)


def test_add_server_rejects_a_datagram_socket(poller: Poller) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(ValueError, match="stream socket"),
    ):
        poller.add_server(sock)
    check_still_works(poller)


def test_add_server_rejects_what_is_not_a_socket(poller: Poller) -> None:
    with pytest.raises(TypeError, match=r"socket\.socket"):
        poller.add_server(5)  # type: ignore[arg-type]
    check_still_works(poller)


def test_add_server_makes_the_socket_non_blocking(
    poller: Poller, tcp_server: socket.socket
) -> None:
    poller.add_server(tcp_server)
    assert tcp_server.getblocking() is False
    poller.add_server(tcp_server)  # again: nothing happens
    assert len(watched_fds(poller)) == 1


@posix_only
def test_a_bad_channel_fd_closed_behind_its_back_is_reported(poller: Poller) -> None:
    r, w = os.pipe()
    channel = PipeChannel(r)
    poller.register(channel)
    other = TestChannel()
    poller.register(other)
    os.close(r)
    other.put(b"unaffected")
    results = poll_until(poller, lambda res: closed(channel)(res) and data_of(res, other))
    assert data_of(results, other) == [b"unaffected"]
    os.close(w)


# -- signals ----------------------------------------------------------------


class Interrupted(Exception):
    pass


@posix_only
def test_an_exception_from_a_signal_handler_propagates_and_the_poller_survives(
    poller: Poller,
) -> None:
    def handler(signum: int, frame: Optional[object]) -> None:
        raise Interrupted()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        channel = TestChannel()
        poller.register(channel)
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            poller.poll(DEADLINE)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    channel.put(b"after")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"after", channel)]


# -- cost and error paths ---------------------------------------------------


class CountingChannel(BareChannel):
    """Counts every call the Poller makes on it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def read(self) -> bytes:
        self.calls += 1
        return super().read()

    def get_fd(self) -> int:
        self.calls += 1
        return super().get_fd()


def test_poll_does_not_touch_idle_channels(poller: Poller) -> None:
    idle = [CountingChannel() for _ in range(100)]
    for channel in idle:
        poller.register(channel)
    active = TestChannel()
    poller.register(active)
    for channel in idle:
        channel.calls = 0
    active.put(b"x")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"x", active)]
    active.close()
    assert poller.poll(DEADLINE) == [(b"", active)]
    assert sum(channel.calls for channel in idle) == 0
    for channel in idle:
        poller.unregister(channel)
        channel.close()


def test_register_again_after_the_fd_changed_watches_the_new_fd(poller: Poller) -> None:
    channel = BareChannel()
    poller.register(channel)
    old_sock, old_peer = channel.sock, channel.peer
    channel.sock, channel.peer = socket.socketpair()
    channel.sock.setblocking(False)
    poller.register(channel)
    old_peer.sendall(b"old")
    channel.peer.sendall(b"new")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"new", channel)]
    old_sock.close()
    old_peer.close()


class RefusingChannel(BareChannel):
    def close(self) -> None:
        super().close()
        raise RuntimeError("close failed")


def test_close_all_closes_every_channel_then_raises_the_first_error(poller: Poller) -> None:
    refusing, fine = RefusingChannel(), TestChannel()
    poller.register(refusing)
    poller.register(fine)
    with pytest.raises(RuntimeError, match="close failed"):
        poller.close_all()
    assert fine.closed
    assert refusing.sock.fileno() == -1


class FlakyServer(socket.socket):
    """A listening socket whose next accept() fails with a chosen error."""

    failure: Optional[OSError] = None

    def accept(self):  # type: ignore[no-untyped-def]
        failure, self.failure = self.failure, None
        if failure is not None:
            raise failure
        return super().accept()


@pytest.fixture
def flaky_server() -> Iterator[FlakyServer]:
    sock = FlakyServer()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock
    sock.close()


def test_accept_skips_an_error_of_one_connection(poller: Poller, flaky_server: FlakyServer) -> None:
    poller.add_server(flaky_server)
    flaky_server.failure = ConnectionAbortedError(errno.ECONNABORTED, "aborted")
    client = socket.create_connection(flaky_server.getsockname())
    (((addr, accepted), _),) = poll_until(poller, lambda r: len(r) >= 1)
    assert addr == client.getsockname()
    assert isinstance(accepted, SocketChannel)
    client.close()


@pytest.mark.parametrize(
    ("code", "level"),
    [(errno.EMFILE, logging.WARNING), (errno.ENOBUFS, logging.WARNING), (errno.EIO, logging.ERROR)],
)
def test_accept_failing_backs_off_and_keeps_everything_registered(
    poller: Poller,
    flaky_server: FlakyServer,
    caplog: pytest.LogCaptureFixture,
    code: int,
    level: int,
) -> None:
    poller.add_server(flaky_server)
    channel = TestChannel()
    poller.register(channel)
    flaky_server.failure = OSError(code, os.strerror(code))
    client = socket.create_connection(flaky_server.getsockname())
    (((addr, _), _),) = poll_until(poller, lambda r: len(r) >= 1)
    (record,) = [r for r in caplog.records if "not accepting for 0.25 s" in r.getMessage()]
    assert record.levelno == level
    assert addr == client.getsockname()
    channel.put(b"still here")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"still here", channel)]
    client.close()


def test_a_server_whose_socket_died_is_dropped(
    poller: Poller, flaky_server: FlakyServer, caplog: pytest.LogCaptureFixture
) -> None:
    poller.add_server(flaky_server)
    flaky_server.failure = OSError(errno.EINVAL, "Invalid argument")
    client = socket.create_connection(flaky_server.getsockname())
    assert poll_until(poller, lambda r: "dropping server" in caplog.text) == []
    assert watched_fds(poller) == []
    client.close()


@posix_only
def test_a_new_channel_on_the_fd_of_a_server_closed_behind_our_back(
    poller: Poller, tcp_server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    poller.add_server(tcp_server)
    fd = tcp_server.fileno()
    tcp_server.close()
    mine, theirs = socketpair_on_fd(fd)
    channel = SocketChannel(mine)
    poller.register(channel)
    assert "dropping server" in caplog.text
    theirs.sendall(b"mine now")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"mine now", channel)]
    theirs.close()


@posix_only
def test_a_server_fd_closed_behind_our_back_is_dropped(
    poller: Poller, tcp_server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    poller.add_server(tcp_server)
    channel = TestChannel()
    poller.register(channel)
    os.close(tcp_server.detach())
    assert poll_until(poller, lambda r: "dropping server" in caplog.text) == []
    channel.put(b"still served")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"still served", channel)]


def test_pause_reading_stops_reports_until_resumed(poller: Poller) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    poller.pause_reading(channel)
    poller.pause_reading(channel)  # again: nothing happens
    channel.put(b"held\n")
    assert poller.poll(0.05) == []
    poller.resume_reading(channel)
    poller.resume_reading(channel)  # again: nothing happens
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"held\n", channel)]


def test_a_paused_channel_still_gets_its_output_delivered(poller: Poller) -> None:
    channel = TestChannel()
    poller.register(channel)
    channel.throttle_writes(0)  # the first send fails: the output is queued
    channel.write(b"queued while paused")
    poller.pause_reading(channel)
    assert channel.write_buffer_size > 0
    for _ in range(50):
        if not channel.write_buffer_size:
            break
        poller.poll(0.01)
    assert channel.write_buffer_size == 0
    assert channel.get() == b"queued while paused"


def test_resume_reading_returns_frames_already_buffered_without_waiting(
    poller: Poller,
) -> None:
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\n")
    assert channel.read() == b"a\n"  # b\n now sits in the framer, not in the socket
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    assert poller.poll(DEADLINE) == [(b"b\n", channel)]


def test_pause_of_an_unregistered_channel_does_nothing(poller: Poller) -> None:
    channel = TestChannel()
    poller.pause_reading(channel)
    poller.resume_reading(channel)
    channel.close()


@posix_only
def test_a_regular_file_can_be_registered_and_is_read_to_its_end(
    poller: Poller, short_tmp: str
) -> None:
    """epoll refuses regular files (stdin redirected from a file): read it anyway."""
    path = os.path.join(short_tmp, "input")
    lines = [b"line %d\n" % i for i in range(50_000)]
    with open(path, "wb") as out:
        out.write(b"".join(lines))
    channel = PipeChannel(os.open(path, os.O_RDONLY), buffering="line")
    poller.register(channel)
    results = poll_until(poller, lambda r: (b"", channel) in r)
    assert [data for data, _ in results] == [*lines, b""]
    channel.close()


class _CountingChannel(TestChannel):
    reads = 0

    def _read(self) -> bytes:
        self.reads += 1
        return super()._read()


def test_a_ready_channel_costs_one_read_for_its_data_and_one_to_see_it_drained(
    poller: Poller,
) -> None:
    channel = _CountingChannel(buffering="line")
    poller.register(channel)
    channel.put(b"line\n" * 1000)
    got = poller.poll(DEADLINE)
    assert len(got) == 1000
    assert channel.reads == 2
    channel.close()


class _UpperChannel(TestChannel):
    """A 0.2-style subclass that post-processes read()."""

    def read(self) -> bytes:
        return super().read().upper()


def test_a_channel_that_overrides_read_is_read_through_it(poller: Poller) -> None:
    channel = _UpperChannel(buffering="line")
    poller.register(channel)
    channel.put(b"a\nb\n")
    assert poll_until(poller, lambda got: len(got) >= 2) == [(b"A\n", channel), (b"B\n", channel)]
    channel.close()


class _OneByteFramer:
    """A custom framer with next_frame() only: every byte is a frame."""

    def __init__(self) -> None:
        self._data = bytearray()

    def feed(self, data: bytes) -> None:
        self._data += data

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        if not self._data:
            return None
        frame = bytes(self._data[:1])
        del self._data[:1]
        return frame


class _OneByteBuffering:
    name = "byte"

    def new_framer(self) -> _OneByteFramer:
        return _OneByteFramer()


def test_a_framer_without_take_frames_is_read_frame_by_frame(poller: Poller) -> None:
    channel = TestChannel(buffering=_OneByteBuffering())
    poller.register(channel)
    channel.put(b"xyz")
    assert poll_until(poller, lambda got: len(got) >= 3) == [
        (b"x", channel),
        (b"y", channel),
        (b"z", channel),
    ]
    channel.close()


class _CountingSocket(socket.socket):
    recvs = 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.recvs += 1
        return super().recv(size, flags)


def test_a_ready_socket_channel_costs_one_read_when_it_comes_up_short(poller: Poller) -> None:
    ours, peer = socket.socketpair()
    sock = _CountingSocket(fileno=ours.detach())
    channel = channels.SocketChannel(sock, buffering="line")
    poller.register(channel)
    peer.sendall(b"line\n" * 1000)
    assert len(poll_until(poller, lambda got: len(got) >= 1000)) == 1000
    assert sock.recvs == 1  # a short read: the OS had no more, no EAGAIN read
    peer.close()
    assert poll_until(poller, bool) == [(b"", channel)]  # the end: seen by the next select
    channel.close()


class _SubclassedRead(channels.SocketChannel):
    def _read(self) -> bytes:
        return super()._read()


def test_a_subclass_that_overrides_read_reads_until_the_os_says_no_more(poller: Poller) -> None:
    ours, peer = socket.socketpair()
    sock = _CountingSocket(fileno=ours.detach())
    channel = _SubclassedRead(sock, buffering="line")
    poller.register(channel)
    peer.sendall(b"line\n" * 10)
    assert len(poll_until(poller, lambda got: len(got) >= 10)) == 10
    assert sock.recvs == 2  # its _read() is not known to drain on a short read
    peer.close()
    channel.close()


class _ThreeThenTooLongFramer(_OneByteFramer):
    """Gives one-byte frames; the fourth is 'too long'."""

    given = 0

    def next_frame(self) -> Optional[bytes]:
        frame = super().next_frame()
        if frame is not None:
            self.given += 1
            if self.given == 4:
                raise channels.LineTooLong(3, 4)
        return frame


class _ThreeThenTooLong:
    name = "three"

    def new_framer(self) -> _ThreeThenTooLongFramer:
        return _ThreeThenTooLongFramer()


def test_frames_before_a_custom_framers_error_are_delivered_first(poller: Poller) -> None:
    channel = TestChannel(buffering=_ThreeThenTooLong())
    poller.register(channel)
    channel.put(b"abcdef")
    events = []
    deadline = time.monotonic() + DEADLINE
    while not any(isinstance(e, channels.ChannelClosed) for e in events):
        assert time.monotonic() < deadline, events
        events += poller.poll_events(0.05)
    assert events == [
        channels.DataReceived(channel, b"a"),
        channels.DataReceived(channel, b"b"),
        channels.DataReceived(channel, b"c"),
        channels.ChannelClosed(channel, channels.CloseReason.LINE_TOO_LONG, 0),
    ]
