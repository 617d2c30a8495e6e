"""Bad input gets a clear ValueError or TypeError naming it, at the call.

Not an EndpointClosedException later, nor an OverflowError from deep inside:
the wrong end of a pipe, a directory, an fd number too large, a socket not
connected; and a client past select()'s FD_SETSIZE is closed at once, with
one warning, instead of making poll() raise.
"""

import contextlib
import logging
import os
import resource
import selectors
import socket
import tempfile
from typing import Iterator, List

import pytest

from channels import PipeChannel, Poller, SocketChannel

from .conftest import DEADLINE, events_until, posix_only

pytestmark = posix_only


@pytest.fixture
def pipe() -> Iterator[List[int]]:
    fds = list(os.pipe())
    yield fds
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@pytest.mark.parametrize("role", ["faucet", "sink"])
@pytest.mark.parametrize("fd", [2**31, 2**63, 10**30])
def test_an_fd_number_too_large_is_a_value_error(role: str, fd: int) -> None:
    with pytest.raises(ValueError, match=f"{role} {fd} is not an fd"):
        PipeChannel(**{role: fd})


def test_the_write_end_of_a_pipe_as_faucet_is_a_value_error(pipe: List[int]) -> None:
    with pytest.raises(ValueError, match=f"faucet {pipe[1]} is open for writing only"):
        PipeChannel(faucet=pipe[1])
    assert os.get_blocking(pipe[1])  # untouched


def test_the_read_end_of_a_pipe_as_sink_is_a_value_error(pipe: List[int]) -> None:
    with pytest.raises(ValueError, match=f"sink {pipe[0]} is open for reading only"):
        PipeChannel(sink=pipe[0])


@pytest.mark.parametrize("role", ["faucet", "sink"])
def test_a_directory_is_a_value_error(role: str) -> None:
    fd = os.open(tempfile.gettempdir(), os.O_RDONLY)
    try:
        with pytest.raises(ValueError, match=f"{role} {fd} is a directory"):
            PipeChannel(**{role: fd})
    finally:
        os.close(fd)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_UNIX])
def test_an_unconnected_socket_is_a_value_error(family: int) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        with pytest.raises(ValueError, match="not connected"):
            SocketChannel(sock)
        assert sock.getblocking()  # untouched


def test_a_client_past_fd_setsize_is_closed_at_once_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = 1024  # FD_SETSIZE on Linux and the BSDs
    if hard != resource.RLIM_INFINITY and hard < limit + 64:
        pytest.skip(f"the fd limit ({hard}) is too low to pass FD_SETSIZE")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit + 64), hard))
    fillers: List[int] = []
    try:
        with (
            socket.create_server(("127.0.0.1", 0)) as server,
            Poller(selector=selectors.SelectSelector) as poller,
        ):
            poller.add_server(server)
            while True:  # take every fd below the limit
                fd = os.open(os.devnull, os.O_RDONLY)
                if fd >= limit - 1:
                    os.close(fd)
                    break
                fillers.append(fd)
            client = socket.create_connection(server.getsockname())
            client.settimeout(DEADLINE)
            with caplog.at_level(logging.WARNING, logger="channels"):
                for _ in range(5):
                    assert poller.poll(0.05) == []  # never raises
            assert client.recv(1) == b""  # closed at once, not at garbage collection
            client.close()
            warnings = [r for r in caplog.records if "closing a client" in r.getMessage()]
            assert len(warnings) == 1, caplog.text
            assert "select()" in warnings[0].getMessage()
            assert "Traceback" not in caplog.text
            for fd in fillers[-8:]:  # room again: the next client is served
                os.close(fd)
            del fillers[-8:]
            again = socket.create_connection(server.getsockname())
            events = events_until(poller, bool)
            assert len(events) == 1
            again.close()
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
