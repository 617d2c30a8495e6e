"""fork(): a child's close of what it inherited leaves its parent's as it was.

A child shares its parent's open file descriptions (their O_NONBLOCK flag)
and, with epoll, the parent's epoll instance. Closing an inherited channel
or Poller in the child must change neither; its queued output is the
parent's to deliver (never sent twice); using an inherited Poller is a
clear RuntimeError. Every selector class.
"""

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from typing import Callable, Iterator, List

import pytest

from channels import PipeChannel, Poller, SocketChannel
from channels.poller import READS_PER_POLL

from .conftest import DEADLINE, events_until, posix_only

pytestmark = [posix_only, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def _in_child(body: Callable[[], int]) -> int:
    """Run ``body`` in a forked child; return its exit code (the child never
    returns into pytest: it leaves with os._exit)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (threads: 3.12+ warns)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 99
        try:
            code = body()
        finally:
            os._exit(code)
    statuses: List[int] = []  # (a thread waits for the child: the wait has a deadline)
    waiter = threading.Thread(target=lambda: statuses.append(os.waitpid(pid, 0)[1]), daemon=True)
    waiter.start()
    waiter.join(DEADLINE)
    assert statuses, "the child did not exit"
    return os.waitstatus_to_exitcode(statuses[0])


@pytest.fixture
def pipes() -> Iterator["tuple[int, int, int, int]"]:
    faucet, feed = os.pipe()
    drain, sink = os.pipe()
    yield faucet, feed, sink, drain
    for fd in (feed, drain):
        os.close(fd)


def test_a_child_closing_an_inherited_pipe_channel_keeps_the_parents_modes(
    make_poller: Callable[..., Poller], pipes: "tuple[int, int, int, int]"
) -> None:
    faucet, feed, sink, _ = pipes
    channel = PipeChannel(faucet, sink)
    poller = make_poller()
    poller.register(channel)
    assert not os.get_blocking(faucet) and not os.get_blocking(sink)

    def child() -> int:
        channel.close()
        return 0

    assert _in_child(child) == 0
    assert not os.get_blocking(faucet), "the child made the parent's faucet blocking"
    assert not os.get_blocking(sink), "the child made the parent's sink blocking"
    started = time.monotonic()
    assert poller.poll(0.2) == []  # a blocking read here would hang
    assert time.monotonic() - started < DEADLINE
    os.write(feed, b"still mine")
    assert events_until(poller, bool)[0].data == b"still mine"  # type: ignore[union-attr]
    channel.close()


def test_a_child_closing_an_inherited_poller_keeps_the_parents_registrations(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    with socket.create_server(("127.0.0.1", 0)) as server:
        poller.add_server(server)

        def child() -> int:
            poller.close()
            return 0

        assert _in_child(child) == 0
        assert not channel.closed
        theirs.sendall(b"after the child")
        events = events_until(poller, bool)
        assert [getattr(e, "data", None) for e in events] == [b"after the child"]
        client = socket.create_connection(server.getsockname())
        assert len(events_until(poller, bool)) == 1  # the server is still watched
        client.close()
    channel.close()
    theirs.close()


def test_a_child_leaves_the_rest_of_its_parents_ready_list_to_the_parent(
    make_poller: Callable[..., Poller],
) -> None:
    """A fork between a poll() that read only part of select()'s list and the
    next: the child cannot poll (nothing of the rest is read there, nor lost
    here); its close of the Poller leaves the parent's; the parent reads
    every line of the rest, once."""
    poller = make_poller(buffering="line")
    pairs = [socket.socketpair() for _ in range(3 * READS_PER_POLL)]
    channels = []
    for n, (mine, theirs) in enumerate(pairs):
        theirs.sendall(b"line %d\n" % n)
        assert mine.recv(64, socket.MSG_PEEK).endswith(b"\n")
        channels.append(SocketChannel(mine, buffering="line"))
        poller.register(channels[-1])
    got = [data for data, _ in poller.poll(DEADLINE)]
    assert 0 < len(got) <= READS_PER_POLL + 1, "no rest left for the next call"

    def child() -> int:
        try:
            poller.poll(0)
        except RuntimeError:
            poller.close()
            return 0
        return 1

    assert _in_child(child) == 0
    deadline = time.monotonic() + DEADLINE
    while len(got) < len(pairs):
        assert time.monotonic() < deadline, f"{len(got)} of {len(pairs)} lines came"
        got += [data for data, _ in poller.poll(0.01)]
    assert sorted(got) == sorted(b"line %d\n" % n for n in range(len(pairs)))
    assert poller.poll(0) == []
    for channel, (_, theirs) in zip(channels, pairs):
        channel.close()
        theirs.close()


@pytest.mark.parametrize("action", ["poll", "register", "add_server"])
def test_using_an_inherited_poller_is_a_clear_error(
    make_poller: Callable[..., Poller], action: str
) -> None:
    poller = make_poller()

    def child() -> int:
        try:
            if action == "poll":
                poller.poll(0)
            elif action == "register":
                a, _b = socket.socketpair()
                poller.register(SocketChannel(a))
            else:
                poller.add_server(socket.create_server(("127.0.0.1", 0)))
        except RuntimeError as exc:
            return 0 if "forked child" in str(exc) and "make a new one" in str(exc) else 2
        return 1

    assert _in_child(child) == 0


def test_a_child_never_sends_the_parents_queued_output(
    make_poller: Callable[..., Poller],
) -> None:
    poller = make_poller()
    mine, theirs = socket.socketpair()
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    channel = SocketChannel(mine)
    poller.register(channel)
    payload = bytes(range(256)) * 4096  # 1 MiB: mostly queued
    channel.write(payload)
    assert channel.write_buffer_size > 0

    def child() -> int:
        channel.close()  # must drop the (parent's) queue, not deliver it
        poller.close()
        return 0

    assert _in_child(child) == 0
    theirs.setblocking(False)
    got = b""
    deadline = time.monotonic() + DEADLINE
    while len(got) < len(payload):
        assert time.monotonic() < deadline, f"got {len(got)} bytes"
        poller.poll(0.01)
        with contextlib.suppress(BlockingIOError):
            got += theirs.recv(1 << 20)
    assert got == payload  # each byte once: the child sent none
    channel.close()
    theirs.close()


def test_wakeup_in_a_child_does_not_wake_the_parent(make_poller: Callable[..., Poller]) -> None:
    poller = make_poller()

    def child() -> int:
        poller.wakeup()
        return 0

    assert _in_child(child) == 0
    started = time.monotonic()
    assert poller.poll(0.2) == []
    assert time.monotonic() - started >= 0.2 - 0.01, "the child's wakeup() woke the parent"


def test_a_child_exiting_does_not_finish_the_parents_background_closes(
    short_tmp: str,
) -> None:
    """The atexit hook is the parent's: a child that exits normally (its
    atexit handlers run) after fork sends nothing of the parent's queue."""
    script = textwrap.dedent(
        """
        import os, socket, sys
        from channels import Poller, SocketChannel
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(sys.argv[1])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        poller = Poller()
        channel = SocketChannel(sock, linger=30)
        poller.register(channel)
        channel.write(bytes(range(256)) * 8192)
        channel.close()
        assert channel.closing
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # atexit runs here: it must not deliver the parent's queue
        os.waitpid(pid, 0)
        sys.exit(0)  # the parent's atexit delivers it, once
        """
    )
    path = os.path.join(short_tmp, "s")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        process = subprocess.Popen([sys.executable, "-W", "ignore", "-c", script, path])
        try:
            listener.settimeout(DEADLINE)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                got = bytearray()
                while chunk := conn.recv(1 << 20):
                    got += chunk
            assert process.wait(DEADLINE) == 0
        finally:
            process.kill()
            process.wait()
    assert bytes(got) == bytes(range(256)) * 8192
