"""Listening sockets: dying, capped, removed, and a connection storm past the fd limit."""

import os
import resource
import socket
import subprocess
import sys
import time
from typing import Callable, List

import pytest

from channels import Poller, SocketChannel

from ..conftest import DEADLINE, poll_until, watched_fds

pytestmark = pytest.mark.fault


@pytest.fixture
def server() -> "socket.socket":
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()


def accepted(results: list) -> List[SocketChannel]:
    return [data[1] for data, _ in results if isinstance(data, tuple)]


def test_a_listening_socket_closed_behind_our_back_is_dropped_without_spinning(
    make_poller: Callable[..., Poller], server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    poller = make_poller()
    poller.add_server(server)
    server.close()  # behind the Poller's back
    start = time.process_time()
    polls = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert poller.poll(0.2) == []
        polls += 1
    assert "dropping server" in caplog.text
    assert polls <= 10, f"{polls} polls in 1 s: poll() is spinning"
    assert time.process_time() - start < 0.5
    assert watched_fds(poller) == []


def test_max_clients_caps_the_registered_clients_and_resumes(
    make_poller: Callable[..., Poller], server: socket.socket
) -> None:
    poller = make_poller()
    poller.add_server(server, max_clients=2)
    clients = [socket.create_connection(server.getsockname()) for _ in range(4)]
    first = accepted(poll_until(poller, lambda r: len(accepted(r)) >= 2))
    assert len(first) == 2
    assert poller.poll(0.2) == []  # the others wait in the backlog
    clients[0].close()  # one leaves ...
    results = poll_until(poller, lambda r: len(accepted(r)) >= 1)
    assert len(accepted(results)) == 1  # ... and exactly one more is let in
    assert poller.poll(0.2) == []
    poller.unregister(first[1])  # unregistering frees a place too
    assert len(accepted(poll_until(poller, lambda r: len(accepted(r)) >= 1))) == 1
    for channel in first:
        channel.close()
    for client in clients:
        client.close()


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_a_bad_max_clients_is_rejected(
    poller: Poller, server: socket.socket, value: object
) -> None:
    with pytest.raises(ValueError, match="max_clients"):
        poller.add_server(server, max_clients=value)  # type: ignore[arg-type]


def test_remove_server_stops_accepting_and_keeps_the_clients(
    make_poller: Callable[..., Poller], server: socket.socket
) -> None:
    poller = make_poller(buffering="line")
    poller.add_server(server)
    first = socket.create_connection(server.getsockname())
    (client,) = accepted(poll_until(poller, lambda r: len(accepted(r)) >= 1))
    poller.remove_server(server)
    poller.remove_server(server)  # again: nothing happens
    late = socket.create_connection(server.getsockname())  # waits in the backlog
    assert poller.poll(0.2) == []
    first.sendall(b"still here\n")
    assert poll_until(poller, lambda r: len(r) >= 1) == [(b"still here\n", client)]
    assert server.fileno() >= 0  # the socket stays open: it is the caller's
    late.close()
    first.close()


CLIENTS_SCRIPT = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
print("connected", flush=True)
sys.stdin.read()
"""


def test_a_connection_storm_past_the_fd_limit(
    make_poller: Callable[..., Poller], server: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """EMFILE: no crash, no spinning during the back-off, accepts resume."""
    poller = make_poller()
    poller.add_server(server)
    storm = 60
    clients = subprocess.Popen(
        [sys.executable, "-c", CLIENTS_SCRIPT, str(server.getsockname()[1]), str(storm)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    got: List[SocketChannel] = []
    try:
        assert clients.stdout is not None
        assert clients.stdout.readline() == "connected\n"
        used = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 64
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 20, hard))
        deadline = time.monotonic() + DEADLINE
        while "not accepting" not in caplog.text:
            assert time.monotonic() < deadline, "accept() never ran out of fds"
            got += accepted(poller.poll(0.1))
        assert 0 < len(got) < storm
        # Backing off: one second of polling costs little CPU and accepts nothing.
        cpu = time.process_time()
        window = time.monotonic() + 1.0
        while time.monotonic() < window:
            got += accepted(poller.poll(0.05))
        assert time.process_time() - cpu < 0.3, "poll() spun during the back-off"
        assert caplog.text.count("not accepting") == 1  # logged once
        # Free fds: accepting resumes and every client gets in.
        deadline = time.monotonic() + DEADLINE * 2
        done = 0
        while done < storm:
            assert time.monotonic() < deadline, f"only {done} of {storm} accepted"
            for channel in got:
                channel.close()
            done += len(got)
            got = accepted(poller.poll(0.1))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for channel in got:
            channel.close()
        assert clients.stdin is not None
        clients.stdin.close()
        clients.wait(DEADLINE)
        assert clients.stdout is not None
        clients.stdout.close()
    assert done == storm
