"""Zero-loss writes: queueing, flushing, backpressure, close and failures."""

import contextlib
import hashlib
import logging
import os
import random
import select
import selectors
import socket
import sys
import threading
import time
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from channels import (
    ChannelError,
    EndpointClosedException,
    PipeChannel,
    Poller,
    SocketChannel,
    WriteBufferFullError,
)
from channels._base import DEFAULT_HIGH_WATER, DEFAULT_LINGER
from channels.testing import TestChannel

from .conftest import DEADLINE, poll_until, posix_only

SMALL_BUFFER = 4096


def small_socketpair() -> Tuple[socket.socket, socket.socket]:
    """A socketpair whose kernel buffers are as small as the OS allows."""
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    return a, b


@pytest.fixture
def pair() -> Iterator[Tuple[SocketChannel, socket.socket]]:
    """A writer channel and the raw socket of its peer, which nobody reads yet."""
    mine, theirs = small_socketpair()
    channel = SocketChannel(mine, linger=0.2)
    yield channel, theirs
    channel.abort()
    theirs.close()


def fill(channel: SocketChannel, at_least: int = 1) -> int:
    """Write until something is queued (the peer is not reading); return bytes written."""
    written = 0
    while channel.write_buffer_size < at_least:
        channel.write(b"z" * 65536)
        written += 65536
    return written


def drain(sock: socket.socket, size: int) -> bytes:
    """Read exactly size bytes from a blocking socket, within the deadline."""
    sock.settimeout(DEADLINE)
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


# -- queueing ---------------------------------------------------------------


def test_what_the_os_does_not_take_is_queued_in_order(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, peer = pair
    payload = os.urandom(1024 * 1024)
    channel.write(payload[:10], payload[10:500_000], payload[500_000:])
    assert channel.write_buffer_size > 0
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(received) < len(payload):
        assert time.monotonic() < deadline
        channel.flush(0)
        peer.settimeout(0.05)
        with contextlib.suppress(socket.timeout):
            received += peer.recv(65536)
    assert bytes(received) == payload
    assert channel.write_buffer_size == 0


def test_a_mutable_buffer_changed_after_write_does_not_change_what_is_sent(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, peer = pair
    written = fill(channel)
    buffer = bytearray(b"original")
    view_source = bytearray(b"view data")
    channel.write(buffer, memoryview(view_source))
    buffer[:] = b"CHANGED!"
    view_source[:] = b"VIEW DATA"
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(drain(peer, written + 17)))
    reader.start()
    assert channel.flush(DEADLINE)
    reader.join(DEADLINE)
    assert result[0].endswith(b"originalview data")


def test_flush_returns_true_when_all_was_delivered(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, peer = pair
    written = fill(channel)
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(drain(peer, written)))
    reader.start()
    assert channel.flush(DEADLINE) is True
    reader.join(DEADLINE)
    assert result == [b"z" * written]
    assert channel.flush() is True  # nothing queued: at once


def test_flush_with_a_timeout_on_a_stalled_reader_returns_false_in_time(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, _ = pair
    fill(channel)
    start = time.monotonic()
    assert channel.flush(0.2) is False
    assert 0.2 <= time.monotonic() - start < DEADLINE
    assert channel.flush(0) is False
    assert channel.flush(-1) is False
    assert channel.write_buffer_size > 0


# -- backpressure -----------------------------------------------------------


def test_a_write_past_the_high_water_mark_raises_and_queues_nothing(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, peer = pair
    channel.high_water = 256 * 1024
    written = fill(channel)
    queued = channel.write_buffer_size
    room = channel.high_water - queued
    refused = b"r" * (room + 1)
    with pytest.raises(WriteBufferFullError) as info:
        channel.write(b"first part", refused)
    error = info.value
    assert isinstance(error, ChannelError)
    assert isinstance(error, BufferError)
    assert (error.size, error.queued, error.high_water) == (len(refused) + 10, queued, 256 * 1024)
    assert "high-water mark is 262144" in str(error)
    assert channel.write_buffer_size == queued
    channel.write(b"a" * room)  # exactly up to the mark is fine
    assert channel.write_buffer_size == channel.high_water
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(drain(peer, written + room)))
    reader.start()
    assert channel.flush(DEADLINE)
    reader.join(DEADLINE)
    assert result == [b"z" * written + b"a" * room]


def test_the_default_high_water_mark_and_linger() -> None:
    channel = TestChannel()
    assert channel.high_water == DEFAULT_HIGH_WATER == 16 * 1024 * 1024
    assert channel.linger == DEFAULT_LINGER == 5.0
    channel.close()


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("high_water", 0, ValueError),
        ("high_water", -5, ValueError),
        ("high_water", 1.5, TypeError),
        ("high_water", True, TypeError),
        ("linger", -0.1, ValueError),
        ("linger", float("nan"), ValueError),
        ("linger", "5", TypeError),
        ("linger", None, TypeError),
    ],
)
def test_bad_limits_are_rejected_with_their_name(name: str, value: object, error: type) -> None:
    with pytest.raises(error, match=name):
        TestChannel(**{name: value})  # type: ignore[arg-type]
    channel = TestChannel()
    with pytest.raises(error, match=name):
        setattr(channel, name, value)
    channel.close()


@pytest.mark.stress
def test_slow_reader_gets_50_mib_exactly_with_bounded_queue(
    make_poller: Callable[..., Poller],
) -> None:
    """50 MiB in random-sized chunks, 4 KiB socket buffers, drained by a Poller."""
    poller = make_poller()
    mine, theirs = small_socketpair()
    high_water = 256 * 1024
    writer = SocketChannel(mine, high_water=high_water)
    reader = SocketChannel(theirs)
    poller.register(writer)
    poller.register(reader)
    rng = random.Random(1234)
    block = rng.randbytes(1 << 20)
    total = 50 * 1024 * 1024
    sent_hash, received_hash = hashlib.sha256(), hashlib.sha256()
    sent = received = peak = 0
    pending = b""
    deadline = time.monotonic() + 60
    while received < total:
        assert time.monotonic() < deadline, f"received {received} of {total}"
        while sent < total:
            if not pending:
                size = min(rng.randint(1, 100_000), total - sent)
                offset = rng.randrange(len(block) - size)
                pending = block[offset : offset + size]
            try:
                writer.write(pending)
            except WriteBufferFullError:
                break  # backpressure: let the Poller drain it
            sent_hash.update(pending)
            sent += len(pending)
            pending = b""
            peak = max(peak, writer.write_buffer_size)
        for data, source in poller.poll(DEADLINE):
            assert source is reader
            received_hash.update(data)
            received += len(data)
    assert received == total
    assert received_hash.hexdigest() == sent_hash.hexdigest()
    assert 0 < peak <= high_water
    assert writer.write_buffer_size == 0


# -- the Poller drives the flushing -----------------------------------------


def events_of(poller: Poller, fd: int) -> int:
    return poller.selector.get_key(fd).events


def test_poller_watches_for_writing_exactly_while_output_is_queued(
    poller: Poller, pair: Tuple[SocketChannel, socket.socket]
) -> None:
    channel, peer = pair
    poller.register(channel)
    fd = channel.get_fd()
    assert events_of(poller, fd) == selectors.EVENT_READ
    written = fill(channel)
    assert events_of(poller, fd) == selectors.EVENT_READ | selectors.EVENT_WRITE
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(drain(peer, written)))
    reader.start()
    deadline = time.monotonic() + DEADLINE
    while channel.write_buffer_size:
        assert time.monotonic() < deadline
        assert poller.poll(0.1) == []  # flushing adds nothing to poll()'s result
    reader.join(DEADLINE)
    assert result == [b"z" * written]
    assert events_of(poller, fd) == selectors.EVENT_READ
    start = time.monotonic()
    assert poller.poll(0.05) == []  # an idle channel does not make poll() spin
    assert time.monotonic() - start >= 0.04


def test_poller_watches_a_channel_registered_with_queued_output(
    poller: Poller, pair: Tuple[SocketChannel, socket.socket]
) -> None:
    channel, _ = pair
    fill(channel)
    poller.register(channel)
    assert events_of(poller, channel.get_fd()) == selectors.EVENT_READ | selectors.EVENT_WRITE


def test_poll_does_not_return_early_when_it_only_flushed(
    poller: Poller, pair: Tuple[SocketChannel, socket.socket]
) -> None:
    channel, peer = pair
    poller.register(channel)
    written = fill(channel)
    peer.settimeout(DEADLINE)
    assert len(peer.recv(65536)) > 0  # room for a flush: poll() wakes up for it
    start = time.monotonic()
    assert poller.poll(0.2) == []
    assert time.monotonic() - start >= 0.19
    assert written > channel.write_buffer_size


def test_a_peer_that_vanishes_with_output_queued_is_reported_with_the_count(
    poller: Poller, pair: Tuple[SocketChannel, socket.socket]
) -> None:
    channel, peer = pair
    poller.register(channel)
    fill(channel)
    queued = channel.write_buffer_size
    peer.close()
    results = poll_until(poller, lambda r: len(r) >= 1)
    assert results == [(b"", channel)]
    assert poller.poll(0.05) == []
    with pytest.raises(EndpointClosedException) as info:
        channel.write(b"more")
    assert info.value.undelivered == queued
    assert channel.undelivered == queued
    assert f"{queued} bytes" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(EndpointClosedException) as info:
        channel.flush()
    assert info.value.undelivered == queued


@pytest.mark.parametrize(
    ("operation", "lost_of_the_call"),
    [
        (lambda channel: channel.write(b"12345"), 5),  # this call's bytes are lost too
        (lambda channel: channel.flush(DEADLINE), 0),
    ],
    ids=["write", "flush"],
)
def test_write_or_flush_to_a_vanished_peer_counts_what_was_queued(
    pair: Tuple[SocketChannel, socket.socket],
    operation: Callable[[SocketChannel], object],
    lost_of_the_call: int,
) -> None:
    channel, peer = pair
    fill(channel)
    queued = channel.write_buffer_size
    peer.close()
    with pytest.raises(EndpointClosedException) as info:
        operation(channel)
    assert info.value.undelivered == queued + lost_of_the_call
    assert channel.write_buffer_size == 0


def test_output_queued_after_the_peer_half_closed_is_still_delivered(poller: Poller) -> None:
    mine, theirs = small_socketpair()
    channel = SocketChannel(mine, buffering="line")
    poller.register(channel)
    theirs.sendall(b"send me a lot\n")
    theirs.shutdown(socket.SHUT_WR)
    results = poll_until(poller, lambda r: len(r) >= 2)
    assert results == [(b"send me a lot\n", channel), (b"", channel)]
    payload = os.urandom(2 * 1024 * 1024)
    channel.write(payload)
    assert channel.write_buffer_size > 0
    received: List[bytes] = []
    reader = threading.Thread(target=lambda: received.append(drain(theirs, len(payload))))
    reader.start()
    deadline = time.monotonic() + DEADLINE
    while channel.write_buffer_size:
        assert time.monotonic() < deadline
        assert poller.poll(0.1) == []  # drained silently: reported once already
    reader.join(DEADLINE)
    assert received == [payload]
    assert poller.selector.get_map().get(channel.get_fd()) is None
    channel.close()
    assert poller.poll(0) == []  # and its close is not reported twice
    theirs.close()


# -- close ------------------------------------------------------------------


def test_close_delivers_everything_to_a_reader_slower_than_the_linger() -> None:
    mine, theirs = small_socketpair()
    channel = SocketChannel(mine, linger=0.3)
    payload = os.urandom(4 * 1024 * 1024)
    channel.write(payload)
    received = bytearray()
    slow = threading.Event()

    def read_slowly() -> None:
        theirs.settimeout(DEADLINE)
        while True:
            chunk = theirs.recv(32768)
            if not chunk:
                return
            received.extend(chunk)
            slow.wait(0.002)  # pace the reader: the whole read outlasts the linger

    reader = threading.Thread(target=read_slowly)
    reader.start()
    start = time.monotonic()
    channel.close()
    took = time.monotonic() - start
    reader.join(DEADLINE * 2)
    assert bytes(received) == payload
    assert channel.undelivered == 0
    assert took > channel.linger, "the reader was not slower than the linger"
    theirs.close()


def test_close_on_a_stalled_reader_gives_up_after_the_linger_and_reports(
    pair: Tuple[SocketChannel, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    channel, _ = pair
    fill(channel)
    queued = channel.write_buffer_size
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="channels.channel"):
        channel.close()
    assert channel.linger <= time.monotonic() - start < DEADLINE
    assert channel.undelivered == queued
    assert f"{queued} queued bytes dropped" in caplog.text


def test_abort_closes_at_once_and_counts_the_dropped_output(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, _ = pair
    channel.linger = 30
    fill(channel)
    queued = channel.write_buffer_size
    start = time.monotonic()
    channel.abort()
    assert time.monotonic() - start < 1
    assert channel.closed
    assert channel.undelivered == queued
    channel.abort()  # again: nothing happens
    assert channel.undelivered == queued


def test_close_of_a_channel_whose_peer_vanished_does_not_wait(
    pair: Tuple[SocketChannel, socket.socket], caplog: pytest.LogCaptureFixture
) -> None:
    channel, peer = pair
    channel.linger = 30
    fill(channel)
    queued = channel.write_buffer_size
    peer.close()
    start = time.monotonic()
    channel.close()
    assert time.monotonic() - start < 1
    assert channel.undelivered == queued
    assert f"{queued} bytes not delivered" in caplog.text


def test_flush_after_close_raises(pair: Tuple[SocketChannel, socket.socket]) -> None:
    channel, _ = pair
    channel.close()
    with pytest.raises(EndpointClosedException, match="closed"):
        channel.flush()


def test_output_callbacks_tell_when_output_appears_and_drains(
    pair: Tuple[SocketChannel, socket.socket],
) -> None:
    channel, peer = pair
    seen: List[bool] = []
    channel.add_output_callback(seen.append)
    channel.write(b"fits")
    assert seen == []
    written = fill(channel)
    assert seen == [True]
    drain(peer, 4)
    result: List[bytes] = []
    reader = threading.Thread(target=lambda: result.append(drain(peer, written)))
    reader.start()
    assert channel.flush(DEADLINE)
    reader.join(DEADLINE)
    assert seen == [True, False]
    channel.remove_output_callback(seen.append)
    channel.remove_output_callback(seen.append)  # not there: nothing happens
    fill(channel)
    assert seen == [True, False]


# -- pipes ------------------------------------------------------------------


@posix_only
def test_a_blocking_pipe_sink_takes_each_write_whole_and_keeps_its_mode() -> None:
    r, w = os.pipe()
    channel = PipeChannel(sink=w, high_water=1024)
    payload = os.urandom(1024 * 1024)  # far past the pipe buffer and the mark
    received = bytearray()

    def read_all() -> None:
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                return
            received.extend(chunk)

    reader = threading.Thread(target=read_all)
    reader.start()
    channel.write(payload)
    assert channel.write_buffer_size == 0
    assert os.get_blocking(w)
    channel.close()
    reader.join(DEADLINE)
    os.close(r)
    assert bytes(received) == payload


@posix_only
def test_a_non_blocking_pipe_sink_queues_and_keeps_its_mode() -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)
    channel = PipeChannel(sink=w)
    payload = os.urandom(1024 * 1024)
    channel.write(payload)
    assert 0 < channel.write_buffer_size < len(payload)
    assert not os.get_blocking(w)
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(received) < len(payload):
        assert time.monotonic() < deadline
        channel.flush(0)
        received += os.read(r, 65536)
    assert bytes(received) == payload
    channel.close()
    os.close(r)


def test_test_channel_get_delivers_queued_output() -> None:
    channel = TestChannel()
    payload = os.urandom(3 * 1024 * 1024)
    channel.write(payload)
    assert channel.write_buffer_size > 0
    assert channel.get() == payload
    assert channel.write_buffer_size == 0
    channel.write(payload)
    channel.close()  # nothing lost, and no waiting for a linger
    assert channel.undelivered == 0
    assert channel.get() == payload


def test_endpoint_closed_exception_keeps_its_0_2_signature() -> None:
    error = EndpointClosedException("gone")
    assert error.undelivered == 0
    assert str(error) == "gone"
    assert isinstance(EndpointClosedException(), Exception)


def read_round_robin(clients: List[socket.socket], size: int) -> Dict[int, bytearray]:
    """Read slowly: at most 1 KiB from a ready client at a time, until each sent size."""
    received = {client.fileno(): bytearray() for client in clients}
    with selectors.DefaultSelector() as watch:
        for client in clients:
            watch.register(client, selectors.EVENT_READ)
        left = len(clients)
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for key, _ in watch.select(0.5):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                data = received[sock.fileno()]
                data += sock.recv(1024)
                if len(data) >= size:
                    watch.unregister(sock)
                    left -= 1
    return received


@pytest.mark.stress
def test_many_slow_clients_each_get_every_line_in_order(make_poller: Callable[..., Poller]) -> None:
    """100 loopback clients, 2,000 lines each, sent through one Poller."""
    clients_count, lines_count = 100, 2000
    lines = [b"line %05d %s\n" % (i, b"x" * 80) for i in range(lines_count)]
    expected = b"".join(lines)
    poller = make_poller()
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)  # clients inherit it
    server.bind(("127.0.0.1", 0))
    server.listen(clients_count)
    poller.add_server(server)
    clients = []
    for _ in range(clients_count):
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        client.connect(server.getsockname())
        client.setblocking(False)
        clients.append(client)
    results: List[Dict[int, bytearray]] = []
    reader = threading.Thread(
        target=lambda: results.append(read_round_robin(clients, len(expected)))
    )
    reader.start()
    accepted: List[SocketChannel] = []
    queued_at_write: List[int] = []
    deadline = time.monotonic() + 30
    while reader.is_alive():
        assert time.monotonic() < deadline
        for data, _ in poller.poll(0.1):
            if isinstance(data, tuple):
                channel = data[1]
                accepted.append(channel)
                channel.write(*lines)
                queued_at_write.append(channel.write_buffer_size)
    assert len(accepted) == clients_count
    assert max(queued_at_write) > 0, "the clients were not slow enough to make output queue"
    assert all(channel.write_buffer_size == 0 for channel in accepted)
    assert [bytes(data) == expected for data in results[0].values()] == [True] * clients_count
    for client in clients:
        client.close()
    server.close()


# -- pipes in a Poller, and shared fds --------------------------------------


@posix_only
def test_a_poller_flushes_a_pipe_channel_through_its_sink_fd(poller: Poller) -> None:
    """The sink is another fd than the faucet: that is the fd watched for writing."""
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    os.set_blocking(out_w, False)
    channel = PipeChannel(in_r, out_w)
    poller.register(channel)
    payload = os.urandom(1024 * 1024)
    channel.write(payload)
    assert channel.write_buffer_size > 0
    assert channel.get_write_fd() == out_w
    received = bytearray()
    os.set_blocking(out_r, False)
    deadline = time.monotonic() + DEADLINE
    while len(received) < len(payload):
        assert time.monotonic() < deadline
        assert poller.poll(0.01) == []
        with contextlib.suppress(BlockingIOError):
            received += os.read(out_r, 1 << 20)
    assert bytes(received) == payload
    assert channel.write_buffer_size == 0
    os.write(in_w, b"and reading still works")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"and reading still works", channel)]
    os.close(in_w)
    os.close(out_r)


@posix_only
def test_a_shared_pipe_channel_never_changes_the_fds_flags(poller: Poller) -> None:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    flags = [os.get_blocking(fd) for fd in (in_r, out_w)]
    channel = PipeChannel(in_r, out_w, shared=True, buffering="line")
    assert channel.shared
    poller.register(channel)
    assert [os.get_blocking(fd) for fd in (in_r, out_w)] == flags == [True, True]
    assert channel.read() == b""  # a blocking faucet, yet read() does not block
    os.write(in_w, b"one\ntwo\n")
    assert poll_until(poller, lambda r: len(r) >= 2) == [(b"one\n", channel), (b"two\n", channel)]
    payload = os.urandom(256 * 1024)  # past the pipe's 64 KiB: it must not block
    channel.write(payload)
    assert channel.write_buffer_size > 0
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(received) < len(payload):
        assert time.monotonic() < deadline
        poller.poll(0.01)
        if select.select([out_r], [], [], 0)[0]:
            received += os.read(out_r, 65536)
    assert bytes(received) == payload
    os.close(in_w)
    assert poll_until(poller, lambda r: (b"", channel) in r)[-1] == (b"", channel)
    channel.close()
    os.close(out_r)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sets a pipe's size (Linux)")
def test_a_shared_blocking_sink_never_blocks_a_write() -> None:
    import fcntl  # noqa: PLC0415 - Linux only

    r, w = os.pipe()
    fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 4096)  # room for one PIPE_BUF
    channel = PipeChannel(sink=w, shared=True)
    channel.write(b"x" * 10_000)  # a blocking fd, and 10,000 bytes: still no blocking
    assert channel.write_buffer_size == 10_000 - 4096
    assert os.get_blocking(w)
    received = bytearray()
    while len(received) < 10_000:
        received += os.read(r, 100_000)
        channel.flush(0)
    assert bytes(received) == b"x" * 10_000
    channel.close()
    os.close(r)


def test_close_all_delivers_to_every_channel_at_once_within_one_deadline(
    poller: Poller, caplog: pytest.LogCaptureFixture
) -> None:
    """Stalled readers cost one linger in all, not one each; a reader that
    keeps reading but too slowly is cut at the same deadline. (Eight
    stalled: one linger each would take 2.7 s at least, so the bound below
    leaves a loaded machine 0.9 s of slack and still tells them apart.)"""
    stalled = []
    for _ in range(8):
        mine, theirs = small_socketpair()
        channel = SocketChannel(mine, linger=0.3)
        poller.register(channel)
        fill(channel)
        stalled.append((channel, theirs))
    slow_mine, slow_theirs = small_socketpair()
    slow = SocketChannel(slow_mine, linger=0.3)
    poller.register(slow)
    payload = os.urandom(8 * 1024 * 1024)
    slow.write(payload)
    received = bytearray()
    pace = threading.Event()

    def read_slowly() -> None:  # keeps reading, for longer than the linger
        slow_theirs.settimeout(DEADLINE)
        while chunk := slow_theirs.recv(16384):
            received.extend(chunk)
            pace.wait(0.002)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    start = time.monotonic()
    poller.close_all()
    took = time.monotonic() - start
    reader.join(DEADLINE * 2)
    assert 0 < len(received) < len(payload), "the slow reader was not slower than the linger"
    assert bytes(received) == payload[: len(received)]  # in order, nothing twice
    assert slow.undelivered == len(payload) - len(received)
    assert all(channel.undelivered > 0 for channel, _ in stalled)
    assert 0.3 <= took < 4 * 0.3, f"{took:.2f} s: not one shared deadline"
    assert caplog.text.count("queued bytes dropped") == 9
    results = poller.poll(DEADLINE)
    assert sorted(map(id, (c for _, c in results))) == sorted(
        map(id, [slow, *(c for c, _ in stalled)])
    )
    for _, theirs in stalled:
        theirs.close()
    slow_theirs.close()
