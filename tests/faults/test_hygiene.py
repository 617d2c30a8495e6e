"""fd hygiene: nothing leaks, whatever the churn."""

import os
import socket
from typing import Callable

import pytest

from channels import PipeChannel, Poller, SocketChannel
from channels.testing import TestChannel

from ..conftest import poll_until

pytestmark = pytest.mark.fault

needs_proc = pytest.mark.skipif(
    not os.path.isdir("/proc/self/fd"), reason="counts fds in /proc/self/fd"
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@needs_proc
def test_10000_connect_send_disconnect_cycles_leak_no_fd(
    selector_cls: type, short_tmp: str
) -> None:
    before = open_fds()
    path = os.path.join(short_tmp, "cycles")
    with Poller(buffering="line", selector=selector_cls) as poller:
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(64)
        poller.add_server(server)
        lines = 0
        for index in range(10_000):
            client = socket.socket(socket.AF_UNIX)
            client.connect(path)
            client.sendall(b"cycle %d\n" % index)
            client.close()
            for data, source in poll_until(poller, lambda r: any(d == b"" for d, _ in r)):
                if isinstance(data, bytes) and data:
                    lines += 1
                elif isinstance(data, bytes):
                    source.close()  # type: ignore[union-attr]
        assert lines == 10_000
    os.unlink(path)
    assert open_fds() == before


@needs_proc
def test_close_all_and_close_release_every_fd(
    make_poller: Callable[..., Poller], selector_cls: type
) -> None:
    before = open_fds()
    poller = Poller(selector=selector_cls)
    r, w = os.pipe()
    mine, theirs = socket.socketpair()
    for channel in (PipeChannel(r, w), SocketChannel(mine), TestChannel()):
        poller.register(channel)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    poller.add_server(server)
    client = socket.create_connection(server.getsockname())
    poll_until(poller, lambda res: len(res) >= 1)
    client.close()
    theirs.close()
    poller.close()
    poller.close()  # again: nothing happens
    assert open_fds() == before


def test_channels_and_pollers_are_context_managers(selector_cls: type) -> None:
    with Poller(selector=selector_cls) as poller, TestChannel() as channel:
        poller.register(channel)
        channel.put(b"inside")
        assert poll_until(poller, lambda res: len(res) >= 1) == [(b"inside", channel)]
    assert channel.closed
    assert channel.get_fd() == -1
    assert poller.closed
    late = TestChannel()
    with pytest.raises(ValueError, match="closed Poller"):
        poller.register(late)
    with pytest.raises(ValueError, match="closed Poller"):
        poller.poll(0)
    poller.unregister(late)  # nothing registered: nothing happens
    late.close()


def test_a_channel_context_closes_even_on_error() -> None:
    with pytest.raises(RuntimeError), TestChannel() as channel:
        raise RuntimeError("boom")
    assert channel.closed


def test_poller_close_closes_what_is_registered(selector_cls: type) -> None:
    poller = Poller(selector=selector_cls)
    channel = TestChannel()
    poller.register(channel)
    poller.close()
    assert channel.closed
