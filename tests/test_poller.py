"""The Poller (SPEC section 1 poll() contract), on every selector class."""

import os
import selectors
import signal
import socket
import time
from typing import Callable, Optional, Type

import pytest

import channels
import channels.channel
import channels.poller
import channels.testing
from channels import (
    EndpointClosedException,
    PipeChannel,
    Poller,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import (
    DEADLINE,
    Interrupted,
    closed,
    data_of,
    poll_until,
    posix_only,
    socketpair_on_fd,
    watched_fds,
)

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


def test_close_releases_the_pollers_fds_then_raises_a_channels_error(
    make_poller: Callable[..., Poller],
) -> None:
    """A channel's close() fails (not a signal handler's raise): the Poller
    closes the others and its own fds all the same, then raises the error;
    it is closed, and closing it again does nothing."""
    poller = make_poller()
    refusing, fine = RefusingChannel(), TestChannel()
    poller.register(refusing)
    poller.register(fine)
    with pytest.raises(RuntimeError, match="close failed"):
        poller.close()
    assert poller.closed and fine.closed and refusing.sock.fileno() == -1
    assert poller._wake_w.fileno() == -1
    poller.close()


def test_a_keyboard_interrupt_in_close_leaves_the_poller_to_the_next_call(
    make_poller: Callable[..., Poller], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C lands in ``Poller.close()`` (Python's own SIGINT handler, in C,
    raises ``KeyboardInterrupt``): the Poller is not closed yet, and the next
    call closes every channel and the Poller's own fds."""
    poller = make_poller()
    first, second = TestChannel(), TestChannel()
    poller.register(first)
    poller.register(second)
    close = TestChannel.close

    def interrupted(self: TestChannel) -> None:
        monkeypatch.setattr(TestChannel, "close", close)
        raise KeyboardInterrupt

    monkeypatch.setattr(TestChannel, "close", interrupted)
    with pytest.raises(KeyboardInterrupt):
        poller.close()
    assert not poller.closed, "closed with channels left open"
    poller.close()
    assert poller.closed and first.closed and second.closed
    assert poller._wake_w.fileno() == -1


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


class _TimesOut(TestChannel):
    """A channel whose next read is interrupted by a handler raising
    ``TimeoutError()`` (no errno: the application's, not the OS's)."""

    armed = False

    def _receive(self, size: int) -> bytes:
        if self.armed:
            self.armed = False
            raise TimeoutError("the application's own timeout")
        return super()._receive(size)


def test_an_oserror_without_errno_propagates_and_never_closes_the_channel(
    poller: Poller,
) -> None:
    channel = _TimesOut()
    poller.register(channel)
    channel.put(b"kept")
    channel.armed = True
    with pytest.raises(TimeoutError):
        poll_until(poller, bool)
    assert poll_until(poller, bool) == [(b"kept", channel)]  # not closed
    channel.close()


def test_results_survive_a_raise_while_they_are_handed_out(
    poller: Poller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler raising while poll() builds its list (the 0.2 tuples, the
    events) loses nothing: the next call returns them."""
    channel = TestChannel(buffering="line")
    poller.register(channel)
    channel.put(b"one\ntwo\n")

    def interrupted_view(collected: list) -> list:
        raise Interrupted()

    deadline = time.monotonic() + DEADLINE
    with monkeypatch.context() as patch:
        patch.setattr(channels.poller, "as_tuples", interrupted_view)
        while not poller._registry.results:  # (read, not yet handed out)
            assert time.monotonic() < deadline
            with pytest.raises(Interrupted):
                poller.poll(0.01)
    assert poller.poll(0) == [(b"one\n", channel), (b"two\n", channel)]
    channel.close()


class _SignalledChannel(BareChannel):
    """A custom channel in whose ``read()`` a signal arrives: its handler's
    exception is the application's, whatever its type."""

    signalled = False

    def read(self) -> bytes:
        if self.signalled:
            self.signalled = False
            signal.raise_signal(signal.SIGUSR1)  # (the handler runs in here)
        return super().read()


@posix_only
@pytest.mark.parametrize(
    "error",
    [ValueError("the handler's"), KeyError("the handler's"), ConnectionResetError(104, "fake")],
    ids=["ValueError", "KeyError", "OSError-with-errno"],
)
def test_what_a_signal_handler_raises_in_a_custom_read_propagates(
    poller: Poller, error: Exception
) -> None:
    """Those errors from a custom channel's read() mean it is broken (it is
    reported closed); raised by a signal handler, they are the application's:
    they propagate and the channel stays registered, its data kept."""

    def handler(signum: int, frame: object) -> None:
        raise error

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        channel = _SignalledChannel()
        poller.register(channel)
        channel.peer.sendall(b"kept")
        channel.signalled = True
        with pytest.raises(type(error)):
            poll_until(poller, bool)
        assert poll_until(poller, bool) == [(b"kept", channel)]  # not closed
    finally:
        signal.signal(signal.SIGUSR1, previous)
    poller.unregister(channel)
    channel.close()
