"""An fd closed behind a channel's back, and its number taken by a new file.

Promised (README "Processes, threads and timeouts"): closed through the
socket object, the channel is never read again — its reads fail (EBADF) and
it is reported ``FD_LOST`` — whatever the selector and even in the middle of
its read budget; closed with a raw ``os.close()``, it is never read as the
new file's data when it is read again without ``select()`` (mid-budget: one
``fstat()`` first), and the periodic audit reports it within its interval
otherwise. Every selector class, in steady state (the audit not just run).
"""

import os
import socket
import time
from typing import Callable, List

import pytest

from channels import ChannelClosed, CloseReason, DataReceived, Poller, PollEvent, SocketChannel
from channels._audit import CHECK_INTERVAL

from .conftest import DEADLINE, events_until, posix_only, socketpair_on_fd

pytestmark = posix_only

STRANGER = b"someone else's data"


def _steady(poller: Poller) -> None:
    """Poll until the fd audit just ran, so it is not due for a while (a
    poll waits no longer than until the audit is due, then runs it)."""
    due = poller._next_chore
    deadline = time.monotonic() + DEADLINE
    while poller._next_chore == due:
        poller.poll(CHECK_INTERVAL)
        assert time.monotonic() < deadline, "the fd audit never came due"


def _stranger_data(events: List[PollEvent]) -> List[bytes]:
    return [e.data for e in events if isinstance(e, DataReceived) and STRANGER in e.data]


@pytest.mark.parametrize("mid_budget", [False, True])
def test_closed_through_the_socket_object_it_is_never_read_again(
    make_poller: Callable[..., Poller], mid_budget: bool
) -> None:
    poller = make_poller()
    poller_small = Poller(read_budget=1024, selector=type(poller.selector))
    target = poller_small if mid_budget else poller
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    target.register(channel)
    _steady(target)
    if mid_budget:
        theirs.sendall(b"m" * 100_000)
        target.poll(0)  # one budget read: more waits, read next time without select()
    fd = mine.fileno()
    mine.close()  # through the object
    new, peer = socketpair_on_fd(fd)
    peer.sendall(STRANGER)
    events = events_until(target, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert _stranger_data(events) == []
    assert events[-1] == ChannelClosed(channel, CloseReason.FD_LOST, 0)
    assert new.recv(100) == STRANGER  # still there for its owner
    for sock in (new, peer, theirs):
        sock.close()
    channel.close()
    poller_small.close()


def test_raw_close_mid_budget_is_not_read_as_the_new_files_data(
    make_poller: Callable[..., Poller],
) -> None:
    poller = Poller(read_budget=1024, selector=type(make_poller().selector))
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    _steady(poller)
    theirs.sendall(b"m" * 100_000)
    poller.poll(0)  # one budget read; the channel is read again without select()
    fd = mine.fileno()
    os.close(fd)  # raw: the socket object still believes it owns the number
    new, peer = socketpair_on_fd(fd)
    peer.sendall(STRANGER)
    events = poller.poll_events(0)
    assert _stranger_data(events) == []
    assert events[-1] == ChannelClosed(channel, CloseReason.FD_LOST, 0)
    assert new.recv(100) == STRANGER
    mine.detach()  # (or its close would close the new socket's number)
    for sock in (new, peer, theirs):
        sock.close()
    poller.close()


def test_a_raw_close_is_reported_by_the_audit_within_its_interval(
    make_poller: Callable[..., Poller],
) -> None:
    """What remains possible after a raw os.close(): until the audit's next
    slice, a selector that keeps the number (poll, select) may report the
    new file's readiness for the channel; the audit reports it within its
    interval (up to 256 channels per slice)."""
    poller = make_poller()
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    poller.register(channel)
    _steady(poller)
    fd = mine.fileno()
    os.close(fd)
    mine.detach()
    new, peer = socketpair_on_fd(fd)
    started = time.monotonic()
    events = events_until(poller, lambda got: any(isinstance(e, ChannelClosed) for e in got))
    assert time.monotonic() - started < CHECK_INTERVAL + 1.0
    assert [e for e in events if isinstance(e, ChannelClosed)] == [
        ChannelClosed(channel, CloseReason.FD_LOST, 0)
    ]
    assert poller.poll(0.05) == []
    for sock in (new, peer, theirs):
        sock.close()
