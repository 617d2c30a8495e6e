"""The channel contract (SPEC section 1), over every transport; then specifics."""

import contextlib
import errno
import os
import select
import socket
import struct
import time
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from channels import (
    BytesBuffering,
    Channel,
    EndpointClosedException,
    LineBuffering,
    PipeChannel,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import DEADLINE, Maker, posix_only, read_until

# -- every channel ----------------------------------------------------------


def test_read_returns_every_byte_available(make_channel: Maker) -> None:
    channel, peer = make_channel()
    peer.send(b"hello ")
    peer.send(b"world")
    assert b"".join(read_until(channel, lambda f: b"".join(f) == b"hello world")) == b"hello world"
    assert channel.read() == b""


def test_read_returns_empty_bytes_when_nothing_arrived(make_channel: Maker) -> None:
    channel, _ = make_channel()
    assert channel.read() == b""
    assert channel.read() == b""


def test_read_after_peer_closed_returns_data_then_raises(make_channel: Maker) -> None:
    channel, peer = make_channel()
    peer.send(b"last words")
    peer.close()
    frames = read_until(channel, lambda f: b"".join(f) == b"last words")
    assert b"".join(frames) == b"last words"
    with pytest.raises(EndpointClosedException):
        read_until(channel, lambda f: False)
    with pytest.raises(EndpointClosedException):
        channel.read()


def test_write_sends_chunks_in_order_as_one_stream(make_channel: Maker) -> None:
    channel, peer = make_channel()
    channel.write(b"one ", bytearray(b"two "), memoryview(b"three"))
    channel.write()
    channel.write(b"", b"!")
    assert peer.recv_exactly(14) == b"one two three!"


def test_write_larger_than_the_os_buffer_is_queued_and_delivered(make_channel: Maker) -> None:
    channel, peer = make_channel()
    payload = os.urandom(4 * 1024 * 1024)
    channel.write(payload[:1000], payload[1000:])
    assert 0 < channel.write_buffer_size < len(payload)
    received = bytearray()
    deadline = time.monotonic() + DEADLINE
    while len(received) < len(payload):
        assert time.monotonic() < deadline, f"got {len(received)} of {len(payload)} bytes"
        channel.flush(0)
        received += peer.recv_available()
    assert bytes(received) == payload
    assert channel.flush(0)
    assert channel.write_buffer_size == 0


def test_write_rejects_str_and_writes_nothing(make_channel: Maker) -> None:
    channel, peer = make_channel()
    with pytest.raises(TypeError, match="not str"):
        channel.write(b"first", "second")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not int"):
        channel.write(42)  # type: ignore[arg-type]
    channel.write(b"ok")
    assert peer.recv_exactly(2) == b"ok"


def test_close_twice_does_nothing(make_channel: Maker) -> None:
    channel, _ = make_channel()
    channel.close()
    channel.close()
    assert channel.closed


def test_write_after_close_raises(make_channel: Maker) -> None:
    channel, _ = make_channel()
    channel.close()
    with pytest.raises(EndpointClosedException, match="closed"):
        channel.write(b"x")


def test_read_after_close_raises_when_nothing_is_buffered(make_channel: Maker) -> None:
    channel, peer = make_channel()
    peer.send(b"unread")
    channel.close()
    with pytest.raises(EndpointClosedException, match="closed"):
        channel.read()


@posix_only
def test_close_releases_the_fd(make_channel: Maker) -> None:
    channel, _ = make_channel()
    fd = channel.get_fd()
    channel.close()
    assert channel.get_fd() == -1
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def test_get_fd_becomes_readable_when_data_arrives(make_channel: Maker) -> None:
    channel, peer = make_channel()
    fd = channel.get_fd()
    assert isinstance(fd, int)
    assert select.select([fd], [], [], 0)[0] == []
    peer.send(b"x")
    assert select.select([fd], [], [], DEADLINE)[0] == [fd]


@pytest.mark.parametrize(
    ("argument", "name"),
    [
        ("line", "line"),
        ("bytes", "bytes"),
        (None, "bytes"),
        ("", "bytes"),
        ("lines", "bytes"),
        (LineBuffering(b"\r\n"), "line"),
        (BytesBuffering(), "bytes"),
    ],
)
def test_buffering_property_names_the_framing(
    make_channel: Maker, argument: object, name: str
) -> None:
    channel, _ = make_channel(argument)  # type: ignore[arg-type]
    assert channel.buffering == name


def test_buffering_is_read_only(make_channel: Maker) -> None:
    channel, _ = make_channel()
    with pytest.raises(AttributeError):
        channel.buffering = "line"  # type: ignore[misc]


def test_any_other_buffering_value_means_bytes(make_channel: Maker) -> None:
    channel, peer = make_channel(None)
    peer.send(b"a\nb\n")
    assert b"".join(read_until(channel, lambda f: b"".join(f) == b"a\nb\n")) == b"a\nb\n"


# -- line buffering ---------------------------------------------------------


def test_line_read_returns_one_line_at_a_time(make_channel: Maker) -> None:
    channel, peer = make_channel("line")
    peer.send(b"first\nsecond\nthird\n")
    lines = read_until(channel, lambda f: len(f) == 3)
    assert lines == [b"first\n", b"second\n", b"third\n"]
    assert channel.read() == b""


def test_line_read_returns_nothing_for_a_partial_line(make_channel: Maker) -> None:
    channel, peer = make_channel("line")
    peer.send(b"part")
    wait = channel.get_fd()
    select.select([wait], [], [], DEADLINE)
    assert channel.read() == b""
    assert channel.read() == b""
    peer.send(b"ial\nnext")
    assert read_until(channel, lambda f: len(f) == 1) == [b"partial\n"]
    assert channel.read() == b""


def test_line_after_peer_close_returns_lines_then_partial_then_raises(make_channel: Maker) -> None:
    channel, peer = make_channel("line")
    peer.send(b"one\ntwo\nrest")
    peer.close()
    assert read_until(channel, lambda f: len(f) == 3) == [b"one\n", b"two\n", b"rest"]
    with pytest.raises(EndpointClosedException):
        channel.read()
    with pytest.raises(EndpointClosedException):
        channel.read()


def test_line_read_that_finds_no_line_returns_the_tail_if_peer_closed(make_channel: Maker) -> None:
    """0.2 applications read a finished child's output once and rely on this."""
    channel, peer = make_channel("line")
    peer.send(b"no newline")
    peer.close()
    select.select([channel.get_fd()], [], [], DEADLINE)
    assert channel.read() == b"no newline"
    with pytest.raises(EndpointClosedException):
        channel.read()


def test_line_after_own_close_returns_buffered_lines_then_partial(make_channel: Maker) -> None:
    channel, peer = make_channel("line")
    peer.send(b"a\nb\ntail")
    assert read_until(channel, lambda f: len(f) == 1) == [b"a\n"]
    channel.close()
    assert channel.read() == b"b\n"
    assert channel.read() == b"tail"
    with pytest.raises(EndpointClosedException, match="closed"):
        channel.read()


def test_line_with_another_delimiter(make_channel: Maker) -> None:
    channel, peer = make_channel(LineBuffering(b"\r\n"))
    peer.send(b"GET / HTTP/1.0\r\nHost: x\nstill\r\n")
    assert read_until(channel, lambda f: len(f) == 2) == [
        b"GET / HTTP/1.0\r\n",
        b"Host: x\nstill\r\n",
    ]


def test_nul_delimited_frames(make_channel: Maker) -> None:
    channel, peer = make_channel(LineBuffering(b"\0"))
    peer.send(b"a\0b\nc\0")
    assert read_until(channel, lambda f: len(f) == 2) == [b"a\0", b"b\nc\0"]


# -- PipeChannel ------------------------------------------------------------


@pytest.fixture
def pipe() -> "List[int]":
    r, w = os.pipe()
    fds = [r, w]
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@posix_only
def test_pipe_faucet_is_made_non_blocking_and_is_the_polled_fd(pipe: List[int]) -> None:
    r, _ = pipe
    channel = PipeChannel(r)
    pipe.remove(r)
    assert channel.get_fd() == r
    assert not os.get_blocking(r)
    channel.close()


@posix_only
def test_pipe_close_restores_the_faucet_blocking_mode(pipe: List[int]) -> None:
    r, _ = pipe
    shared = os.dup(r)  # shares the open file description, and so its O_NONBLOCK
    pipe.append(shared)
    channel = PipeChannel(r)
    pipe.remove(r)
    assert not os.get_blocking(shared)
    channel.close()
    assert os.get_blocking(shared)


@posix_only
def test_pipe_sink_keeps_its_blocking_mode(pipe: List[int]) -> None:
    r, w = pipe
    channel = PipeChannel(sink=w)
    pipe.remove(w)
    assert os.get_blocking(w)
    channel.write(b"data")
    assert os.read(r, 10) == b"data"
    channel.close()


@posix_only
def test_pipe_write_only_cannot_be_polled_or_read(pipe: List[int]) -> None:
    _, w = pipe
    channel = PipeChannel(sink=w)
    pipe.remove(w)
    with pytest.raises(NotImplementedError, match="no faucet"):
        channel.get_fd()
    with pytest.raises(NotImplementedError, match="no faucet"):
        channel.read()
    channel.close()
    with pytest.raises(NotImplementedError):
        channel.get_fd()


@posix_only
def test_pipe_read_only_cannot_write(pipe: List[int]) -> None:
    r, _ = pipe
    channel = PipeChannel(r)
    pipe.remove(r)
    with pytest.raises(NotImplementedError, match="no sink"):
        channel.write(b"x")
    channel.close()


@posix_only
def test_pipe_data_written_before_the_writer_closed_is_read(pipe: List[int]) -> None:
    r, w = pipe
    channel = PipeChannel(r)
    pipe.remove(r)
    os.write(w, b"everything")
    os.close(w)
    pipe.remove(w)
    assert channel.read() == b"everything"
    with pytest.raises(EndpointClosedException, match="writer closed"):
        channel.read()
    channel.close()


@posix_only
def test_pipe_fd_closed_behind_the_channels_back(
    pipe: List[int], caplog: pytest.LogCaptureFixture
) -> None:
    r, w = pipe
    reader = PipeChannel(r)
    writer = PipeChannel(sink=w)
    os.close(r)
    os.close(w)
    pipe.clear()
    with pytest.raises(EndpointClosedException) as info:
        reader.read()
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.EBADF
    with pytest.raises(EndpointClosedException) as info:
        writer.write(b"x")
    assert isinstance(info.value.__cause__, OSError)
    reader.close()
    writer.close()
    assert "already closed" in caplog.text or "Bad file descriptor" in caplog.text


@posix_only
def test_pipe_write_to_a_closed_reader_raises(pipe: List[int]) -> None:
    r, w = pipe
    channel = PipeChannel(sink=w)
    pipe.remove(w)
    os.close(r)
    pipe.remove(r)
    with pytest.raises(EndpointClosedException) as info:
        channel.write(b"x")
    assert isinstance(info.value.__cause__, BrokenPipeError)
    channel.close()


@posix_only
def test_pipe_same_fd_for_faucet_and_sink_is_closed_once(caplog: pytest.LogCaptureFixture) -> None:
    mine, theirs = socket.socketpair()
    channel = PipeChannel(mine.fileno(), mine.fileno())
    mine.detach()
    channel.write(b"ping")
    assert theirs.recv(4) == b"ping"
    theirs.sendall(b"pong")
    assert read_until(channel, lambda f: b"".join(f) == b"pong")
    channel.close()
    theirs.close()
    assert caplog.text == ""


def test_pipe_needs_a_faucet_or_a_sink() -> None:
    with pytest.raises(ValueError, match="got neither"):
        PipeChannel()


@posix_only
@pytest.mark.parametrize("role", ["faucet", "sink"])
def test_pipe_rejects_a_negative_fd(role: str) -> None:
    with pytest.raises(ValueError, match=f"{role} must be an open fd"):
        PipeChannel(**{role: -1})


@posix_only
@pytest.mark.parametrize("role", ["faucet", "sink"])
def test_pipe_rejects_a_closed_fd(role: str) -> None:
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(ValueError, match=f"{role} {r} is not an open fd") as info:
        PipeChannel(**{role: r})
    assert isinstance(info.value.__cause__, OSError)


@posix_only
@pytest.mark.parametrize("fd", ["3", 3.0, True])
def test_pipe_rejects_a_non_int_fd(fd: object) -> None:
    with pytest.raises(TypeError, match="must be an int fd"):
        PipeChannel(fd)  # type: ignore[arg-type]


@posix_only
def test_pipe_repr_names_fds_and_buffering(pipe: List[int]) -> None:
    r, w = pipe
    channel = PipeChannel(r, w, buffering="line")
    pipe.clear()
    assert repr(channel) == f"<PipeChannel faucet={r} sink={w} buffering='line'>"
    channel.close()
    assert repr(channel) == "<PipeChannel closed buffering='line'>"


# -- SocketChannel ----------------------------------------------------------


def test_socket_is_made_non_blocking_and_its_fd_is_polled() -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    assert mine.getblocking() is False
    assert channel.get_fd() == mine.fileno()
    assert channel.sock is mine
    channel.close()
    assert mine.fileno() == -1
    theirs.close()


def test_socket_rejects_a_datagram_socket() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock,
        pytest.raises(ValueError, match="stream socket"),
    ):
        SocketChannel(sock)


def test_socket_rejects_a_listening_socket() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(ValueError, match="listening"):
            SocketChannel(sock)


def test_socket_rejects_a_closed_socket() -> None:
    sock = socket.socket()
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        SocketChannel(sock)


def test_socket_rejects_what_is_not_a_socket() -> None:
    with pytest.raises(TypeError, match=r"socket\.socket, not int"):
        SocketChannel(3)  # type: ignore[arg-type]


@posix_only
@pytest.mark.parametrize("how", ["socket.close", "os.close"])
def test_socket_closed_behind_the_channels_back(how: str, caplog: pytest.LogCaptureFixture) -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    if how == "os.close":
        os.close(mine.fileno())
    else:
        mine.close()
    with pytest.raises(EndpointClosedException):
        channel.read()
    with pytest.raises(EndpointClosedException):
        channel.write(b"x")
    channel.close()
    theirs.close()


def test_socket_write_to_a_vanished_peer_raises() -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    theirs.close()
    with pytest.raises(EndpointClosedException) as info:
        channel.write(b"x" * 100)
    assert isinstance(info.value.__cause__, OSError)
    channel.close()


def test_socket_reset_by_peer_keeps_buffered_lines() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server_side, _ = listener.accept()
    channel = SocketChannel(server_side, buffering="line")
    client.sendall(b"kept\n")
    select.select([server_side], [], [], DEADLINE)
    assert channel.read() == b"kept\n"
    client.sendall(b"half")
    read_until(channel, lambda f: True)  # buffer "half"
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST
    select.select([server_side], [], [], DEADLINE)
    assert channel.read() == b"half"
    with pytest.raises(EndpointClosedException):
        channel.read()
    channel.close()


# -- TestChannel ------------------------------------------------------------


@posix_only
def test_test_channel_put_is_readable_through_read_and_the_fd() -> None:
    channel = TestChannel()
    channel.put(b"abc")
    assert select.select([channel.get_fd()], [], [], DEADLINE)[0]
    assert os.read(channel.get_fd(), 10) == b"abc"
    channel.put(b"def")
    assert read_until(channel, lambda f: b"".join(f) == b"def")
    channel.close()


def test_test_channel_get_returns_what_was_written() -> None:
    channel = TestChannel()
    assert channel.get() == b""
    channel.write(b"one", b"two")
    assert channel.get() == b"onetwo"
    assert channel.get() == b""
    channel.write(b"after")
    channel.close()
    assert channel.get() == b"after"
    assert channel.get() == b""


def test_test_channel_put_after_close_raises() -> None:
    channel = TestChannel()
    channel.close()
    with pytest.raises(EndpointClosedException):
        channel.put(b"x")


def test_test_channel_put_does_not_block_on_a_large_put() -> None:
    channel = TestChannel(buffering="line")
    lines = [b"%08d\n" % i for i in range(200_000)]  # 1.8 MB, past any socket buffer
    channel.put(b"".join(lines))
    channel.put_eof()
    got = read_until(channel, lambda f: len(f) == len(lines))
    assert got == lines
    with pytest.raises(EndpointClosedException):
        channel.read()
    channel.close()


def test_test_channel_put_after_put_eof_is_an_error() -> None:
    channel = TestChannel()
    channel.put_eof()
    with pytest.raises(ValueError, match="after put_eof"):
        channel.put(b"x")
    channel.close()


def test_test_channel_put_rejects_str() -> None:
    channel = TestChannel()
    with pytest.raises(TypeError, match="not str"):
        channel.put("text")  # type: ignore[arg-type]
    channel.close()


def test_test_channel_is_not_collected_by_pytest() -> None:
    assert TestChannel.__test__ is False


# -- custom channels --------------------------------------------------------


class ListChannel(Channel):
    """A 0.2-style subclass: implements _read/write/close, gets framing free."""

    def __init__(self, chunks: List[bytes], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.chunks = chunks
        self.written: List[bytes] = []

    def _read(self) -> bytes:
        if not self.chunks:
            raise EndpointClosedException()
        return self.chunks.pop(0)

    def write(self, *chunks: object) -> None:
        self.written.extend(bytes(c) for c in chunks)  # type: ignore[call-overload]

    def close(self) -> None:
        super().close()


def test_subclass_in_the_0_2_style_gets_line_framing() -> None:
    channel = ListChannel([b"a\nb", b"", b"c", b"", b"\n", b"", b"d"], buffering="line")
    assert channel.read() == b"a\n"
    assert channel.read() == b""  # _read said "nothing now" with "bc" buffered
    assert channel.read() == b"bc\n"
    assert channel.read() == b"d"  # _read raised: end of stream
    with pytest.raises(EndpointClosedException, match="other end closed"):
        channel.read()


def test_subclass_get_fd_defaults_to_not_implemented() -> None:
    with pytest.raises(NotImplementedError):
        ListChannel([]).get_fd()


def test_close_callbacks_run_once_before_the_fd_closes() -> None:
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine)
    seen: List[int] = []
    channel.add_close_callback(lambda: seen.append(mine.fileno()))
    removed: List[int] = []
    callback = lambda: removed.append(1)  # noqa: E731
    channel.add_close_callback(callback)
    channel.remove_close_callback(callback)
    channel.remove_close_callback(callback)  # not there: nothing happens
    fd = mine.fileno()
    channel.close()
    channel.close()
    assert seen == [fd]
    assert removed == []
    theirs.close()


@given(
    stream=st.lists(st.sampled_from([b"a", b"\n", b"bc", b"\r\n"])).map(b"".join),
    points=st.lists(st.integers(min_value=0), max_size=12),
    pauses=st.lists(st.booleans(), max_size=12),
    line=st.booleans(),
)
def test_channel_read_yields_the_stream_however_it_arrives(
    stream: bytes, points: List[int], pauses: List[bool], line: bool
) -> None:
    """Through Channel.read(): chunks, 'nothing now' pauses, then end of stream."""
    bounds = sorted({0, len(stream), *(p % (len(stream) + 1) for p in points)})
    chunks = [stream[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]
    arrivals: List[bytes] = []
    for index, chunk in enumerate(chunks):
        arrivals.append(chunk)
        if index < len(pauses) and pauses[index]:
            arrivals.append(b"")
    channel = ListChannel(arrivals, buffering="line" if line else "bytes")
    frames: List[bytes] = []
    with pytest.raises(EndpointClosedException):
        for _ in range(len(arrivals) + len(stream) + 2):
            frame = channel.read()
            if frame:
                frames.append(frame)
    assert b"".join(frames) == stream
    if line:
        parts = stream.split(b"\n")
        assert frames == [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
