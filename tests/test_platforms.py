"""Windows and select(): what can be checked from here (see simulate_windows.py)."""

import os
import selectors
import socket
import subprocess
import sys
from typing import List

import pytest

from channels import PipeChannel, Poller, SocketChannel
from channels.poller import WINDOWS_SELECT_LIMIT

from .conftest import posix_only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_importing_channels_needs_no_posix_only_module() -> None:
    code = (
        "import sys\n"
        "for name in ('fcntl', 'termios', 'resource', 'pwd', 'grp'):\n"
        "    sys.modules[name] = None\n"
        "import channels, channels.poller, channels.testing, channels.channel\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.stdout == "ok\n", done.stderr


@posix_only
@pytest.mark.timeout(300)
def test_the_socket_path_suite_passes_as_on_windows() -> None:
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "simulate_windows.py"), "-q"],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout


def test_a_pipe_faucet_is_refused_on_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(NotImplementedError, match="SocketChannel"):
        PipeChannel(0)


@posix_only
def test_a_write_only_pipe_works_on_windows_with_a_blocking_sink(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    r, w = os.pipe()
    os.set_blocking(w, False)  # even so: on Windows a sink is taken as blocking
    monkeypatch.setattr(sys, "platform", "win32")
    channel = PipeChannel(sink=w)
    channel.write(b"to a pipe")
    monkeypatch.undo()
    assert os.read(r, 100) == b"to a pipe"
    channel.close()
    os.close(r)


def test_windows_select_takes_at_most_512_sockets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    mine, theirs = socket.socketpair()
    channels: List[SocketChannel] = []
    with Poller(selector=selectors.SelectSelector) as poller:
        try:
            for _ in range(WINDOWS_SELECT_LIMIT - 1):  # the wakeup socket is the 512th
                channel = SocketChannel(mine.dup())
                channels.append(channel)
                poller.register(channel)
            extra = SocketChannel(mine.dup())
            channels.append(extra)
            with pytest.raises(ValueError, match="at most 512 sockets"):
                poller.register(extra)
            poller.unregister(channels[0])
            poller.register(extra)  # room again
        finally:
            monkeypatch.undo()
    for channel in channels:
        channel.close()
    mine.close()
    theirs.close()


@posix_only
def test_select_refuses_an_fd_past_fd_setsize_clearly() -> None:
    import resource  # noqa: PLC0415 - POSIX only

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1100:
        pytest.skip(f"needs more than 1100 fds; the limit is {soft}")
    mine, theirs = socket.socketpair()
    os.dup2(mine.fileno(), 1100)
    high = socket.socket(fileno=1100)
    channel = SocketChannel(high)
    with Poller(selector=selectors.SelectSelector) as poller:
        with pytest.raises(ValueError, match="below 1024"):
            poller.register(channel)
        other = SocketChannel(theirs)
        poller.register(other)  # the Poller still works
        channel.write(b"x")
        assert poller.poll(5) == [(b"x", other)]
    channel.close()
    mine.close()
