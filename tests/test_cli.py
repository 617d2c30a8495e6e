"""python -m channels, run for real as subprocesses over loopback and Unix sockets."""

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Iterator, List, Optional

import pytest

from .conftest import DEADLINE, posix_only

pytestmark = posix_only  # connect bridges stdin/stdout: POSIX only

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = [sys.executable, "-m", "channels"]


def run(
    *args: str, stdin: Optional[bytes] = b"", timeout: float = 20
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, cwd=ROOT, timeout=timeout, check=False
    )


def read_line(stream: IO[bytes], timeout: float = DEADLINE) -> bytes:
    """One line from a child's pipe, or fail at the deadline (never hang)."""
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "no line within the deadline"
    return stream.readline()


class Server:
    """A running `channels serve`, stopped with SIGTERM at the end."""

    def __init__(self, address: str, *options: str) -> None:
        self.address = address
        self.process = subprocess.Popen(
            [*CLI, "serve", address, *options],
            stderr=subprocess.PIPE,
            cwd=ROOT,
            bufsize=0,  # unbuffered: select() on the pipe then tells the truth
        )
        assert self.process.stderr is not None
        self.log: List[bytes] = []
        self.wait_log(b"listening on")

    def wait_log(self, text: bytes, count: int = 1) -> None:
        assert self.process.stderr is not None
        deadline = time.monotonic() + DEADLINE
        while sum(text in line for line in self.log) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"server did not log {text!r}; log: {self.log}"
            line = read_line(self.process.stderr, left)
            assert line, f"server exited ({self.process.wait(DEADLINE)}); log: {self.log}"
            self.log.append(line)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(DEADLINE)
        assert self.process.stderr is not None
        self.log += self.process.stderr.read().splitlines(keepends=True)
        self.process.stderr.close()
        return code


@pytest.fixture
def unix_address(short_tmp: str) -> str:
    return "unix:" + os.path.join(short_tmp, "hub.sock")


@pytest.fixture
def tcp_address() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@pytest.fixture
def echo_server(tcp_address: str) -> Iterator[Server]:
    server = Server(tcp_address, "--echo")
    yield server
    server.stop()


# -- connect --------------------------------------------------------------------


@pytest.mark.stress
@pytest.mark.timeout(120)
def test_10_mib_through_an_echo_server_comes_back_byte_identical(
    echo_server: Server, short_tmp: str
) -> None:
    payload = b"".join(b"%07d %s\n" % (i, os.urandom(40).hex().encode()) for i in range(120_000))
    payload += b"and a last line without a newline"
    assert len(payload) > 10 * 1024 * 1024
    source = os.path.join(short_tmp, "in")
    with open(source, "wb") as out:
        out.write(payload)
    with open(source, "rb") as stdin:
        done = subprocess.run(
            [*CLI, "connect", echo_server.address],
            stdin=stdin,
            capture_output=True,
            cwd=ROOT,
            timeout=100,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == payload


def test_connect_with_line_framing(echo_server: Server) -> None:
    done = run("connect", echo_server.address, "--line", stdin=b"one\ntwo\nthree")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"one\ntwo\nthree"


def test_half_close_sends_everything_then_keeps_printing_until_the_server_closes() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    seen: List[bytes] = []

    def answer_after_eof() -> None:
        conn, _ = listener.accept()
        conn.settimeout(DEADLINE)
        data = b""
        while chunk := conn.recv(65536):  # until the client half-closes
            data += chunk
        seen.append(data)
        conn.sendall(b"got %d bytes\n" % len(data))  # the client still reads
        conn.sendall(b"bye\n")
        conn.close()

    thread = threading.Thread(target=answer_after_eof)
    thread.start()
    port = listener.getsockname()[1]
    done = run("connect", f"127.0.0.1:{port}", stdin=b"x" * 100_000 + b"\nend\n")
    thread.join(DEADLINE)
    listener.close()
    assert done.returncode == 0, done.stderr
    assert seen == [b"x" * 100_000 + b"\nend\n"]
    assert done.stdout == b"got 100005 bytes\nbye\n"


def test_connect_leaves_the_o_nonblock_flag_of_its_pipes_alone(echo_server: Server) -> None:
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    watched = [os.dup(stdin_r), os.dup(stdout_w)]  # the very descriptions the CLI gets
    before = [os.get_blocking(fd) for fd in watched]
    client = subprocess.Popen(
        [*CLI, "connect", echo_server.address, "--line"],
        stdin=stdin_r,
        stdout=stdout_w,
        cwd=ROOT,
    )
    os.close(stdin_r)
    os.close(stdout_w)
    os.write(stdin_w, b"ping\n")
    with os.fdopen(stdout_r, "rb", buffering=0) as output:
        assert read_line(output) == b"ping\n"
        during = [os.get_blocking(fd) for fd in watched]
        os.close(stdin_w)
        assert client.wait(DEADLINE) == 0
        assert select.select([output], [], [], 0)[0] == []  # nothing more came
    after = [os.get_blocking(fd) for fd in watched]
    for fd in watched:
        os.close(fd)
    assert before == during == after == [True, True]


# -- serve ----------------------------------------------------------------------


def test_broadcast_between_three_clients(unix_address: str) -> None:
    server = Server(unix_address)  # --broadcast is the default
    clients = [
        subprocess.Popen(
            [*CLI, "connect", unix_address, "--line"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            bufsize=0,
        )
        for _ in range(3)
    ]
    try:
        server.wait_log(b"connected", count=3)
        for index, sender in enumerate(clients):
            assert sender.stdin is not None
            sender.stdin.write(b"hello from %d\n" % index)
            sender.stdin.flush()
            for other, receiver in enumerate(clients):
                if other != index:
                    assert receiver.stdout is not None
                    assert read_line(receiver.stdout) == b"hello from %d\n" % index
        for client in clients:  # nobody got their own line back
            assert client.stdout is not None
            assert select.select([client.stdout], [], [], 0.2)[0] == []
    finally:
        for client in clients:
            assert client.stdin is not None
            client.stdin.close()
        assert server.stop() == 0
        for client in clients:
            assert client.wait(DEADLINE) == 0
            assert client.stdout is not None
            client.stdout.close()


def test_sigterm_closes_every_client_and_removes_the_socket_file(unix_address: str) -> None:
    path = unix_address[len("unix:") :]
    server = Server(unix_address, "--echo")
    assert os.path.exists(path)
    client = subprocess.Popen(
        [*CLI, "connect", unix_address],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        bufsize=0,
    )
    server.wait_log(b"connected")
    assert client.stdin is not None and client.stdout is not None
    client.stdin.write(b"still echoed\n")
    client.stdin.flush()
    assert read_line(client.stdout) == b"still echoed\n"
    assert server.stop() == 0
    assert not os.path.exists(path)
    assert client.wait(DEADLINE) == 0  # the server closed it: the client exits cleanly
    client.stdin.close()
    client.stdout.close()
    assert any(b"stopping (SIGTERM)" in line for line in server.log)


def test_sigint_stops_the_server_too(tcp_address: str) -> None:
    server = Server(tcp_address)
    server.process.send_signal(signal.SIGINT)
    # (wait for it: stop() would send a SIGTERM, which forces a shutdown under way)
    assert server.process.wait(DEADLINE) == 0
    assert server.stop() == 0


def test_an_overlong_line_disconnects_only_that_client(tcp_address: str) -> None:
    server = Server(tcp_address, "--echo", "--max-line", "100")
    try:
        done = run("connect", tcp_address, stdin=b"x" * 1000)
        assert done.returncode == 0
        assert done.stdout == b""
        server.wait_log(b"line too long")
        ok = run("connect", tcp_address, stdin=b"fine\n")
        assert ok.stdout == b"fine\n"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("linger", ["0.2", "0"])
def test_linger_is_how_long_a_closing_client_may_take_nothing(
    unix_address: str, linger: str
) -> None:
    """A client that never reads its echoes and half-closes: the hub gives
    it ``--linger`` seconds, then drops what is queued and says so."""
    # (a Unix socket: over TCP a receiver that stops reading brings in zero
    # windows, loss probes and retransmission back-off, which stalled this
    # client's own sending for seconds on a loaded CI machine)
    server = Server(unix_address, "--echo", "--linger", linger)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(unix_address[len("unix:") :])
        client.settimeout(DEADLINE)
        for sent in range(12_000):  # 12 MB of echoes it never reads: past the buffers
            try:
                client.sendall(b"z" * 999 + b"\n")
            except socket.timeout:  # (what the hub said, for whoever debugs this)
                server.stop()
                pytest.fail(f"the hub stopped reading after {sent} KB: {server.log}")
        client.shutdown(socket.SHUT_WR)
        server.wait_log(b"queued bytes dropped")
        dropped = [line for line in server.log if b"queued bytes dropped" in line]
        assert f"({float(linger):.1f} s)".encode() in dropped[0], dropped
    finally:
        client.close()
        assert server.stop() == 0


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["connect", "nonsense"],
        ["connect", "127.0.0.1:99999"],
        ["connect", "[::1]7000"],
        ["connect", "unix:"],
        ["serve", "host:port"],
        ["serve", "127.0.0.1:7000", "--echo", "--broadcast"],
        ["serve", "127.0.0.1:7000", "--max-line", "0"],
        ["serve", "127.0.0.1:7000", "--linger", "-1"],
        ["serve", "127.0.0.1:7000", "--linger", "nan"],
        ["serve", "127.0.0.1:7000", "--linger", "soon"],
        ["connect", "127.0.0.1:7000", "--timeout", "soon"],
        [],
        ["frobnicate"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(args: List[str]) -> None:
    done = run(*args)
    assert done.returncode == 2
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "error:" in lines[0]
    assert b"Traceback" not in done.stderr


def one_line_failure(done: subprocess.CompletedProcess, expected: str) -> None:
    assert b"Traceback" not in done.stderr
    assert done.returncode == 1, done
    lines = done.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert expected in lines[0]


def test_a_port_in_use_is_exit_1(tcp_address: str) -> None:
    host, port = tcp_address.split(":")
    with socket.create_server((host, int(port))):
        one_line_failure(run("serve", tcp_address), "Address already in use")


def test_a_missing_socket_file_is_exit_1(short_tmp: str) -> None:
    address = "unix:" + os.path.join(short_tmp, "nobody-here.sock")
    one_line_failure(run("connect", address), "No such file or directory")


def test_permission_denied_is_exit_1(short_tmp: str) -> None:
    if os.geteuid() == 0:  # root passes file permissions: use a place nobody may bind
        address = "unix:/sys/channels-test.sock"
        expected = "not permitted"
    else:
        locked = os.path.join(short_tmp, "locked")
        os.mkdir(locked, 0o500)
        address = "unix:" + os.path.join(locked, "s.sock")
        expected = "Permission denied"
    one_line_failure(run("serve", address), expected)


def test_a_refused_connection_is_exit_1() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        one_line_failure(run("connect", f"127.0.0.1:{port}"), "Connection refused")


def test_timeout_when_nothing_happens_is_exit_1() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [*CLI, "connect", f"127.0.0.1:{port}", "--timeout", "0.5"],
            stdin=subprocess.PIPE,  # stays open: nothing ends
            capture_output=True,
            cwd=ROOT,
            timeout=20,
            check=False,
        )
        assert time.monotonic() - started < 10
    one_line_failure(done, "nothing happened for 0.5 s")


# -- help -----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["--help"], ["connect", "--help"], ["serve", "--help"]])
def test_help_explains_usage_with_examples(args: List[str]) -> None:
    done = run(*args)
    assert done.returncode == 0
    text = done.stdout.decode()
    assert "usage: channels" in text
    assert "python -m channels serve 127.0.0.1:7000" in text


def test_make_demo_runs_a_whole_session() -> None:
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "cli_demo.py")],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode()
    assert "bob reads:  alice: hello bob" in out
    assert "alice reads:  bob: hi alice, lines arrive whole" in out
    assert "socket file removed: True" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7000", "127.0.0.1:7000"),
        ("localhost:0", "localhost:0"),
        ("[::1]:7000", "[::1]:7000"),
        ("unix:/tmp/hub.sock", "unix:/tmp/hub.sock"),
        ("unix:relative.sock", "unix:relative.sock"),
    ],
)
def test_addresses_parse_and_print_back(text: str, expected: str) -> None:
    from channels.__main__ import parse_address  # noqa: PLC0415

    assert str(parse_address(text)) == expected


def test_connect_over_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = listener.getsockname()[1]
    listener.close()  # a free port, probed
    server = Server(f"[::1]:{port}", "--echo")
    try:
        done = run("connect", server.address, stdin=b"over v6\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"over v6\n"
    finally:
        server.stop()
