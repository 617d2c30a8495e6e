"""Accepting clients: add_server(), errno policy, back-off, servers gone bad; every selector."""

import errno
import logging
import os
import socket
from typing import Callable, Iterator, Optional

import pytest

from channels import (
    LineBuffering,
    Poller,
    SocketChannel,
)
from channels.testing import TestChannel

from .conftest import (
    DEADLINE,
    closed,
    data_of,
    poll_until,
    posix_only,
    socketpair_on_fd,
    watched_fds,
)

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


def _ipv6_loopback() -> Optional[socket.socket]:
    try:
        sock = socket.socket(socket.AF_INET6)
    except OSError:
        return None
    try:
        sock.bind(("::1", 0))
    except OSError:
        sock.close()
        return None
    return sock


@posix_only
@pytest.mark.parametrize("family", ["ipv4", "ipv6", "unix named", "unix unnamed"])
def test_an_accepted_client_is_named_by_its_address_and_does_not_block(
    poller: Poller, short_tmp: str, family: str
) -> None:
    """Accepted clients skip SocketChannel's checks and getpeername(): named
    from accept()'s address, they read as one made from the socket would."""
    if family == "ipv4":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        client = socket.socket()
    elif family == "ipv6":
        found = _ipv6_loopback()
        if found is None:
            pytest.skip("no IPv6 loopback here")
        server, client = found, socket.socket(socket.AF_INET6)
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(os.path.join(short_tmp, "server"))
        client = socket.socket(socket.AF_UNIX)
        if family == "unix named":
            client.bind(os.path.join(short_tmp, "client"))
    with server, client:
        server.listen()
        poller.add_server(server)
        client.connect(server.getsockname())
        (((_, accepted), _),) = poll_until(poller, lambda r: len(r) >= 1)
        assert isinstance(accepted, SocketChannel)
        port = client.getsockname()[1] if family.startswith("ip") else None
        expected = {
            "ipv4": f"127.0.0.1:{port}",
            "ipv6": f"[::1]:{port}",
            "unix named": f"unix:{os.path.join(short_tmp, 'client')}",
            "unix unnamed": "unix:(unnamed)",
        }[family]
        with SocketChannel(accepted.sock.dup()) as made_here:
            assert accepted.peer == expected == made_here.peer
        assert f"peer={expected}" in repr(accepted)
        assert accepted.sock.getblocking() is False
        client.sendall(b"ping")
        assert poll_until(poller, lambda r: len(r) >= 1) == [(b"ping", accepted)]
        accepted.close()


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


# -- accept() errors -------------------------------------------------------


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
