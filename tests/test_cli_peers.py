"""python -m channels against real peers: socat and nc, not only itself.

Each test runs the CLI as a subprocess against a socat or nc process (or a
hand-made misbehaving peer), checks the bytes end to end, the exit code, and
that stderr never holds a traceback. socat and nc come from Debian's
``socat`` and ``netcat-openbsd`` packages (``.ci/run`` installs them); a
test skips, saying so, when its tool is missing.
"""

import contextlib
import os
import pty
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator, List, Tuple

import pytest

from .conftest import DEADLINE, WINDOWS, posix_only
from .test_cli import Server

pytestmark = [posix_only, pytest.mark.timeout(60)]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "channels"]
# (not under the Windows simulation: shutil.which() there needs _winapi)
SOCAT = None if WINDOWS else shutil.which("socat")
NC = None if WINDOWS else shutil.which("nc")
needs_socat = pytest.mark.skipif(
    SOCAT is None, reason="socat is not installed (apt-get install socat)"
)
needs_nc = pytest.mark.skipif(
    NC is None, reason="nc is not installed (apt-get install netcat-openbsd)"
)

SIZE = 8 * 1024 * 1024
ECHO_SIZE = 48 * 1024 * 1024  # past every buffer on the way there and back


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(port: int, process: "subprocess.Popen[bytes]") -> None:
    """Until something listens on 127.0.0.1:port (read from /proc: a probe
    connection would use up a peer that accepts once)."""
    needle = f":{port:04X} 00000000:0000 0A"
    deadline = time.monotonic() + DEADLINE
    while True:
        with open("/proc/net/tcp") as table:
            if needle in table.read():
                return
        assert time.monotonic() < deadline, f"nothing listens on port {port}"
        with contextlib.suppress(subprocess.TimeoutExpired):  # (waits on the peer's exit)
            process.wait(0.01)
            pytest.fail(f"the peer exited with {process.returncode}")


@pytest.fixture
def peers() -> Iterator[List["subprocess.Popen[bytes]"]]:
    """Peer processes of a test, killed at its end."""
    started: List[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(DEADLINE)


def _listen(port: int) -> str:
    """socat's address for a server on 127.0.0.1:port."""
    return f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr"


def _peer(peers: List["subprocess.Popen[bytes]"], *args: str, port: int) -> None:
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peers.append(process)
    _wait_listening(port, process)


def _payload(tmp_path: "os.PathLike[str]", size: int = SIZE) -> Tuple[bytes, str]:
    data = os.urandom(size)
    path = os.path.join(tmp_path, "payload.bin")
    with open(path, "wb") as file:
        file.write(data)
    return data, path


def _connect(
    port: int, stdin: object, stdout: object = subprocess.PIPE
) -> "subprocess.Popen[bytes]":
    return subprocess.Popen(
        [*CLI, "connect", f"127.0.0.1:{port}"],
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )


def _finished(process: "subprocess.Popen[bytes]", timeout: float = 30) -> Tuple[int, bytes]:
    _, err = process.communicate(timeout=timeout)
    assert b"Traceback" not in err, err.decode(errors="replace")
    return process.returncode, err


def _read_slowly(stream: "os.PathLike[str] | object", into: bytearray) -> None:
    """A slow consumer: small reads with pauses (the pacing, not a wait)."""
    fd = stream.fileno()  # type: ignore[attr-defined]
    while True:
        chunk = os.read(fd, 16384)
        if not chunk:
            return
        into += chunk
        time.sleep(0.0005)


@needs_socat
def test_a_download_into_a_slow_stdout_reader_is_byte_exact(
    peers: List["subprocess.Popen[bytes]"], tmp_path: "os.PathLike[str]"
) -> None:
    data, path = _payload(tmp_path)
    port = _free_port()
    assert SOCAT is not None
    _peer(peers, SOCAT, "-u", f"FILE:{path}", _listen(port), port=port)
    client = _connect(port, subprocess.DEVNULL)
    got = bytearray()
    reader = threading.Thread(target=_read_slowly, args=(client.stdout, got))
    reader.start()
    reader.join(40)
    code, err = _finished(client)
    assert code == 0, err
    assert bytes(got) == data


@needs_socat
@pytest.mark.parametrize("stdin_kind", ["file", "pipe"])
def test_stdin_through_an_echo_server_comes_back_byte_exact(
    peers: List["subprocess.Popen[bytes]"], tmp_path: "os.PathLike[str]", stdin_kind: str
) -> None:
    """At the end of stdin everything is sent, then a half-close; the echo
    side is never left blocked writing back (that deadlocked before)."""
    data, path = _payload(tmp_path, ECHO_SIZE)
    port = _free_port()
    assert SOCAT is not None
    _peer(peers, SOCAT, _listen(port), "EXEC:cat", port=port)
    out_path = os.path.join(tmp_path, "out.bin")
    with open(out_path, "wb") as out:
        if stdin_kind == "file":
            with open(path, "rb") as source:
                client = _connect(port, source, out)
                code, err = _finished(client)
        else:
            client = _connect(port, subprocess.PIPE, out)
            assert client.stdin is not None
            feeder = threading.Thread(target=_feed, args=(client.stdin, data))
            feeder.start()
            feeder.join(40)  # (communicate() would close stdin under its feet)
            client.stdin = None  # the feeder closed it
            code, err = _finished(client)
    assert code == 0, err
    with open(out_path, "rb") as result:
        assert result.read() == data


def _feed(stdin: "subprocess.IO[bytes]", data: bytes) -> None:  # type: ignore[name-defined]
    try:
        for start in range(0, len(data), 65536):
            stdin.write(data[start : start + 65536])
        stdin.close()
    except BrokenPipeError:
        pass


@needs_socat
def test_stdin_from_dev_null_ends_the_session_cleanly(
    peers: List["subprocess.Popen[bytes]"],
) -> None:
    port = _free_port()
    assert SOCAT is not None
    _peer(peers, SOCAT, _listen(port), "EXEC:cat", port=port)
    with open(os.devnull, "rb") as null:
        client = _connect(port, null)
        code, err = _finished(client)
    assert (code, err) == (0, b"")


@needs_socat
def test_stdin_from_a_tty_works_and_ctrl_d_ends_it(
    peers: List["subprocess.Popen[bytes]"],
) -> None:
    port = _free_port()
    assert SOCAT is not None
    _peer(peers, SOCAT, _listen(port), "EXEC:cat", port=port)
    master, slave = pty.openpty()
    try:
        client = _connect(port, slave)
        os.close(slave)
        os.write(master, b"typed line\n")
        assert client.stdout is not None
        assert client.stdout.readline() == b"typed line\n"
        os.write(master, b"\x04")  # Ctrl-D at the start of a line: the end of stdin
        code, err = _finished(client, DEADLINE)
    finally:
        os.close(master)
    assert (code, err) == (0, b"")


@needs_socat
def test_a_server_that_stops_reading_and_closes_is_one_line_and_exit_1(
    peers: List["subprocess.Popen[bytes]"], tmp_path: "os.PathLike[str]"
) -> None:
    _, path = _payload(tmp_path)
    port = _free_port()
    assert SOCAT is not None
    _peer(
        peers,
        SOCAT,
        "-u",
        _listen(port),
        "SYSTEM:head -c 1000 >/dev/null",
        port=port,
    )
    with open(path, "rb") as source:
        client = _connect(port, source, subprocess.DEVNULL)
        code, err = _finished(client)
    assert code == 1
    assert err.count(b"\n") == 1 and err.startswith(b"channels connect: "), err


def _resetting_server(port_holder: List[int], after: int) -> threading.Thread:
    """A server that reads ``after`` bytes, then resets the connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port_holder.append(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            listener.settimeout(DEADLINE)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(DEADLINE)
                got = 0
                while got < after:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize("stdin_size", [0, SIZE])
def test_a_server_that_resets_is_one_line_and_exit_1(
    tmp_path: "os.PathLike[str]", stdin_size: int
) -> None:
    path = os.path.join(tmp_path, "in.bin")
    with open(path, "wb") as file:
        file.write(b"x" * stdin_size)
    port: List[int] = []
    server = _resetting_server(port, after=min(stdin_size, 1000))
    source = subprocess.PIPE if stdin_size == 0 else open(path, "rb")  # noqa: SIM115
    try:
        client = _connect(port[0], source, subprocess.DEVNULL)
        code, err = _finished(client)
    finally:
        if stdin_size:
            source.close()  # type: ignore[union-attr]
    server.join(DEADLINE)
    assert code == 1
    # (which syscall sees the reset first varies: recv, send or shutdown)
    assert err.count(b"\n") == 1 and err.startswith(b"channels connect: "), err


@needs_socat
def test_a_stdout_reader_that_goes_away_is_one_line_and_exit_1(
    peers: List["subprocess.Popen[bytes]"],
) -> None:
    port = _free_port()
    assert SOCAT is not None
    _peer(
        peers,
        SOCAT,
        _listen(port),
        "SYSTEM:head -c 50000000 /dev/zero",
        port=port,
    )
    client = _connect(port, subprocess.DEVNULL)
    assert client.stdout is not None
    assert client.stdout.read(10) == b"\0" * 10
    client.stdout.close()  # like `| head -c 10`
    code, err = _finished(client)
    assert code == 1
    assert err.count(b"\n") == 1 and b"stdout" in err, err


@needs_nc
def test_nc_as_the_server_sends_a_file_then_ends(
    peers: List["subprocess.Popen[bytes]"], tmp_path: "os.PathLike[str]"
) -> None:
    data, path = _payload(tmp_path)
    port = _free_port()
    assert NC is not None
    with open(path, "rb") as source:
        server = subprocess.Popen([NC, "-N", "-l", "127.0.0.1", str(port)], stdin=source)
    peers.append(server)
    _wait_listening(port, server)
    # stdin stays open and idle: nc -l ends the session at a half-close from
    # its client (socat's client would lose even more), so there is none here;
    # the client ends when the server did and stdin has nothing ready.
    client = _connect(port, subprocess.PIPE)
    assert client.stdout is not None and client.stdin is not None
    got = client.stdout.read()
    assert client.wait(DEADLINE) == 0
    client.stdin.close()
    client.stdin = None
    code, err = _finished(client)
    assert code == 0, err
    assert got == data


@needs_nc
def test_nc_as_a_client_of_the_echo_server(peers: List["subprocess.Popen[bytes]"]) -> None:
    port = _free_port()
    server = subprocess.Popen(
        [*CLI, "serve", f"127.0.0.1:{port}", "--echo"], stderr=subprocess.PIPE, cwd=ROOT
    )
    peers.append(server)
    _wait_listening(port, server)
    lines = b"".join(b"line %d\n" % n for n in range(20_000))
    assert NC is not None
    done = subprocess.run(
        [NC, "-N", "127.0.0.1", str(port)],
        input=lines,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == lines
    server.terminate()
    _, err = server.communicate(timeout=DEADLINE)
    assert b"Traceback" not in err


@needs_nc
def test_the_hub_never_stalls_on_a_closing_client() -> None:
    """A client that sends a lot, never reads and half-closes: the hub closes
    it in the background, giving it its linger (60 s here) to take its
    echoes, and serves everyone meanwhile: nc's line comes back long before
    that linger could have run out. Then the client reads: every echo comes,
    then the end."""
    port = _free_port()
    server = Server(f"127.0.0.1:{port}", "--echo", "--linger", "60")
    rude = socket.socket()
    rude.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    rude.connect(("127.0.0.1", port))
    try:
        # Long lines: echoed as long segments. With 1 KB lines the echoes
        # came as 1 KB segments, whose kernel overhead filled the client's
        # buffer before its window closed: the kernel dropped them, and the
        # segments carrying the hub's acknowledgements with them, so the
        # client's own sending backed off for seconds (ss: backoff:4, lost,
        # the hub in epoll_wait with nothing unread; 4 runs in 40).
        flood = b"y" * 32767 + b"\n"
        rude.settimeout(DEADLINE)
        for sent in range(320):  # 10 MB of echoes it never reads: past the buffers
            try:
                rude.sendall(flood)
            except socket.timeout:  # (what the hub said, for whoever debugs this)
                log = server.log
                pytest.fail(f"the hub stopped reading after {sent * 32} KB: {log}")
        rude.shutdown(socket.SHUT_WR)
        server.wait_log(b"disconnected")  # it saw the half-close: the close is under way
        started = time.monotonic()
        assert NC is not None
        done = subprocess.run(
            [NC, "-N", "127.0.0.1", str(port)],
            input=b"hello\n",
            capture_output=True,
            timeout=30,
            check=False,
        )
        took = time.monotonic() - started
        assert done.stdout == b"hello\n"
        assert took < 30, f"{took:.2f} s: the hub waited for the closing client"
        echoed = 0  # (then it reads: every echo comes, then the end)
        while True:
            data = rude.recv(1 << 20)
            if not data:
                break
            echoed += len(data)
        assert echoed == len(flood) * 320, "the hub dropped echoes of a client still reading"
    finally:
        rude.close()
        assert server.stop() == 0
    assert not any(b"Traceback" in line for line in server.log), server.log


def _greeting_server(port_holder: List[int]) -> threading.Thread:
    """Accepts one client, sends it a line, then closes."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port_holder.append(listener.getsockname()[1])

    def serve() -> None:
        with listener:
            listener.settimeout(DEADLINE)
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                return  # (the client gave up before connecting: fine)
            with conn:
                conn.sendall(b"hello\n")

    thread = threading.Thread(target=serve)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("redirection", "expected"),
    [
        ("0<&-", "stdin is not open"),
        ("1>&-", "stdout is not open"),
        (">/dev/full", "No space left on device"),
    ],
)
def test_stdio_the_cli_cannot_use_is_one_line_and_exit_1(redirection: str, expected: str) -> None:
    port: List[int] = []
    server = _greeting_server(port)
    command = " ".join([*CLI, "connect", f"127.0.0.1:{port[0]}"])
    done = subprocess.run(
        ["bash", "-c", f"exec {command} {redirection} </dev/null"]
        if redirection.startswith(">")
        else ["bash", "-c", f"exec {command} {redirection}"],
        capture_output=True,
        cwd=ROOT,
        timeout=30,
        check=False,
    )
    # (unblock the server if the client never came)
    with socket.socket() as poke, contextlib.suppress(OSError):
        poke.connect(("127.0.0.1", port[0]))
    server.join(DEADLINE)
    assert b"Traceback" not in done.stderr
    assert done.returncode == 1, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1 and expected in lines[0], lines
