"""fds that go bad under the Poller, signals, and wakeup()."""

import contextlib
import os
import socket
import time
from typing import List

import pytest

from channels import PipeChannel, Poller, SocketChannel
from channels.poller import HAND_OUT
from channels.testing import TestChannel

from ..conftest import DEADLINE, Interrupted, poll_until, watched_fds

pytestmark = pytest.mark.fault


def test_an_fd_closed_under_the_poller_is_reported_once(poller: Poller) -> None:
    r, w = os.pipe()
    channel = PipeChannel(r, buffering="line")
    other = TestChannel()
    poller.register(channel)
    poller.register(other)
    os.write(w, b"read before\npartial")
    assert poll_until(poller, lambda res: len(res) >= 1) == [(b"read before\n", channel)]
    os.close(r)  # behind the channel's back; epoll forgets it silently
    results = poll_until(poller, lambda res: (b"", channel) in res)
    assert results == [(b"partial", channel), (b"", channel)]
    assert r not in watched_fds(poller)
    other.put(b"unaffected")
    assert poll_until(poller, lambda res: len(res) >= 1) == [(b"unaffected", other)]
    assert poller.poll(0.3) == []  # not reported again
    os.close(w)


def test_an_fd_number_reused_by_another_file_is_never_read_again(poller: Poller) -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    fd = channel.get_fd()
    poller.register(channel)
    os.close(fd)  # behind its back ...
    mine.detach()  # (so that the socket object does not close the new file later)
    r, w = os.pipe()  # ... and the number goes to an unrelated pipe
    if r != fd:
        os.dup2(r, fd)
        os.close(r)
    os.write(w, b"not the channel's data")
    results = poll_until(poller, lambda res: (b"", channel) in res)
    assert results == [(b"", channel)]
    assert os.read(fd, 100) == b"not the channel's data"  # nothing was stolen
    channel.close()
    os.close(fd)
    os.close(w)
    theirs.close()


def test_a_busy_channels_fd_reused_while_its_lines_wait_is_never_read_again(
    poller: Poller,
) -> None:
    # A busy channel is read in turn without select() while its lines wait
    # to be handed out: its number going to another socket meanwhile must be
    # noticed before it is read again (fails without the fstat check: the
    # periodic fd audit would notice it only a quarter second later).
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, buffering="line")
    poller.register(channel)
    data = b"".join(b"line %05d\n" % index for index in range(3 * HAND_OUT))
    theirs.sendall(data)  # (three calls' worth: read whole, then handed out)
    got = [data for data, _ in poller.poll(DEADLINE)]
    assert len(got) == HAND_OUT  # more waits: the channel is busy, held back
    fd = channel.get_fd()
    os.close(fd)  # behind its back (its socket object still has the number) ...
    other, other_peer = socket.socketpair()  # ... and goes to another socket
    if other.fileno() == fd:
        other.detach()
    else:
        os.dup2(other.fileno(), fd)
        other.close()
    other_peer.sendall(b"not the channel's data\n")
    results = poll_until(poller, lambda res: (b"", channel) in res)
    got += [line for line, _ in results if line]
    assert data.startswith(b"".join(got))  # its own lines, in order, then its end
    assert len(got) > HAND_OUT
    assert os.read(fd, 100) == b"not the channel's data\n"  # nothing was stolen
    mine.detach()  # (the number is the other socket's: not closed by this one)
    channel.close()
    os.close(fd)
    other_peer.close()
    theirs.close()


def test_poll_never_raises_for_a_channel_whose_read_fails(
    poller: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(TestChannel):
        def read(self) -> bytes:
            raise OSError(5, "Input/output error")

    broken, fine = Broken(), TestChannel()
    poller.register(broken)
    poller.register(fine)
    broken.put(b"x")
    fine.put(b"y")
    results = poll_until(poller, lambda res: len(res) >= 2)
    assert sorted(results, key=lambda r: r[0]) == [(b"", broken), (b"y", fine)]
    assert "read() of <Broken" in caplog.text
    broken.close()


# A signal handler raising during a blocking poll(): see
# tests/test_poller.py::test_an_exception_from_a_signal_handler_propagates_and_the_poller_survives
# (a SPEC section 1 behaviour, so it runs in the fast suite too).


def test_what_was_read_before_an_exception_is_returned_by_the_next_poll(poller: Poller) -> None:
    raising = [True]

    class Interrupting(TestChannel):
        def read(self) -> bytes:
            if raising[0]:
                raising[0] = False
                raise Interrupted()  # as a signal handler would, mid-poll
            return super().read()

    channels = [TestChannel(buffering="line") for _ in range(3)]
    interrupting = Interrupting()
    for channel in channels:
        poller.register(channel)
    poller.register(interrupting)
    for index, channel in enumerate(channels):
        channel.put(b"line %d\n" % index)
    interrupting.put(b"mine")
    got: List[object] = []
    deadline = time.monotonic() + DEADLINE
    while len(got) < 4:
        assert time.monotonic() < deadline
        with contextlib.suppress(Interrupted):
            got += poller.poll(0.1)
    assert sorted(got, key=lambda r: r[0]) == sorted(  # type: ignore[index]
        [(b"line %d\n" % i, channels[i]) for i in range(3)] + [(b"mine", interrupting)],
        key=lambda r: r[0],
    )
