"""Pipe sinks never block a registered loop; unwatched, they write as 0.2 did.

A blocking sink (a child's stdin) is made non-blocking while a Poller
watches the channel, so ``write()`` queues what the pipe does not take and
the Poller delivers it; unwatched, ``write()`` returns once the OS took all
of it, as in 0.2. The sink's mode is restored when the Poller lets go.
"""

import contextlib
import os
import subprocess
import sys
import threading
import time
from typing import Callable, List, Tuple

import pytest

from channels import PipeChannel, Poller

from .conftest import DEADLINE, posix_only

pytestmark = posix_only

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB: sixteen times what a pipe holds


def _pipes() -> Tuple[int, int, int, int]:
    """(faucet, the test's write end, sink, the test's read end); the sink blocks."""
    faucet, feed = os.pipe()
    drain, sink = os.pipe()
    assert os.get_blocking(sink)
    return faucet, feed, sink, drain


def _read_all(fd: int, size: int, step: Callable[[], object]) -> bytes:
    os.set_blocking(fd, False)
    got = b""
    deadline = time.monotonic() + DEADLINE
    while len(got) < size:
        assert time.monotonic() < deadline, f"got {len(got)} of {size} bytes"
        step()
        with contextlib.suppress(BlockingIOError):
            got += os.read(fd, 65536)
    return got


def test_a_write_to_a_registered_blocking_sink_queues_and_poll_delivers(
    make_poller: Callable[..., Poller],
) -> None:
    faucet, feed, sink, drain = _pipes()
    channel = PipeChannel(faucet, sink)
    poller = make_poller()
    poller.register(channel)
    assert not os.get_blocking(sink)
    channel.write(PAYLOAD)  # the reader reads nothing yet: this must not block
    assert channel.write_buffer_size > 0
    assert _read_all(drain, len(PAYLOAD), lambda: poller.poll(0.01)) == PAYLOAD
    assert channel.write_buffer_size == 0
    poller.unregister(channel)
    assert os.get_blocking(sink), "the sink's mode was not restored"
    channel.close()
    os.close(feed)
    os.close(drain)


def test_an_unwatched_blocking_sink_takes_every_write_whole_as_in_0_2() -> None:
    faucet, feed, sink, drain = _pipes()
    channel = PipeChannel(faucet, sink)
    got: List[bytes] = []
    reader = threading.Thread(target=lambda: got.append(_read_all(drain, len(PAYLOAD), bool)))
    reader.start()
    channel.write(PAYLOAD)
    assert channel.write_buffer_size == 0  # all of it went before write() returned
    reader.join(DEADLINE)
    assert got == [PAYLOAD]
    channel.close()
    os.close(feed)
    os.close(drain)


def test_a_sink_made_non_blocking_by_the_poller_is_restored_by_close(
    make_poller: Callable[..., Poller],
) -> None:
    faucet, feed, sink, drain = _pipes()
    keep = os.dup(sink)  # the same open file description as the sink
    channel = PipeChannel(faucet, sink)
    poller = make_poller()
    poller.register(channel)
    assert not os.get_blocking(keep)
    channel.close()
    assert os.get_blocking(keep)
    assert poller.poll_events(0)  # reported
    for fd in (feed, drain, keep):
        os.close(fd)


def test_a_shared_sink_is_never_switched(make_poller: Callable[..., Poller]) -> None:
    faucet, feed, sink, drain = _pipes()
    channel = PipeChannel(faucet, sink, shared=True)
    poller = make_poller()
    poller.register(channel)
    assert os.get_blocking(sink)
    channel.write(PAYLOAD)  # written only as the pipe has room: queued, not blocking
    assert channel.write_buffer_size > 0
    assert _read_all(drain, len(PAYLOAD), lambda: poller.poll(0.01)) == PAYLOAD
    assert os.get_blocking(sink)
    channel.close()
    os.close(feed)
    os.close(drain)


@pytest.mark.parametrize("chunks", [1, 64, 1000])
def test_a_child_stdin_fed_through_a_registered_channel_gets_everything(
    make_poller: Callable[..., Poller], chunks: int
) -> None:
    """The process-runner shape: write to a child's stdin, read its stdout."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    channel = PipeChannel(os.dup(child.stdout.fileno()), os.dup(child.stdin.fileno()))
    child.stdin.close()
    child.stdout.close()
    poller = make_poller()
    poller.register(channel)
    size = len(PAYLOAD) // chunks
    for index in range(chunks):
        channel.write(PAYLOAD[index * size : (index + 1) * size])
    channel.write_eof()
    got = b""
    deadline = time.monotonic() + DEADLINE
    while True:
        assert time.monotonic() < deadline, f"got {len(got)} bytes"
        results = poller.poll(0.05)
        got += b"".join(data for data, _ in results)
        if any(data == b"" for data, _ in results):
            break
    assert got == PAYLOAD[: size * chunks]
    assert child.wait(DEADLINE) == 0
    channel.close()


def test_unregistering_a_pipe_closing_in_the_background_never_blocks(
    make_poller: Callable[..., Poller],
) -> None:
    """Its delivery ends after the linger even though the sink was blocking
    before the Poller watched it (the reader never reads)."""
    faucet, feed, sink, drain = _pipes()
    channel = PipeChannel(faucet, sink, linger=0.2)
    poller = make_poller()
    poller.register(channel)
    channel.write(PAYLOAD)
    channel.close()
    assert channel.closing

    def read_a_little() -> None:  # the reader takes some, then stops for good
        os.set_blocking(drain, True)
        for _ in range(8):
            os.read(drain, 16384)

    reader = threading.Thread(target=read_a_little)
    reader.start()
    poller.unregister(channel)  # delivers first, within the linger: must return
    reader.join(DEADLINE)
    assert not channel.closing and channel.undelivered > 0
    for fd in (feed, drain):
        os.close(fd)
