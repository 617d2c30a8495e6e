"""A process that closes a registered channel and exits at once loses nothing.

``close()`` of a registered channel returns before its output is delivered:
the Poller finishes it in the background. A program that never polls again
(it exits) has that delivery finished at exit, within the channel's linger.
"""

import os
import socket
import subprocess
import sys
import textwrap
import time

from .conftest import DEADLINE, posix_only

CHILD = textwrap.dedent(
    """
    import socket, sys
    from channels import Poller, SocketChannel
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(sys.argv[1])
    poller = Poller()
    channel = SocketChannel(sock, linger=float(sys.argv[3]))
    poller.register(channel)
    channel.write(bytes(range(256)) * (int(sys.argv[2]) // 256))
    channel.close()
    assert channel.closing, "nothing left in the background: the test proves nothing"
    sys.exit(0)  # no poll(), no Poller.close()
    """
)


def _run_child(path: str, size: int, linger: float, read: bool) -> bytes:
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(1)
        child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(size), str(linger)])
        try:
            listener.settimeout(DEADLINE)
            conn, _ = listener.accept()
            with conn:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                got = bytearray()
                deadline = time.monotonic() + DEADLINE
                if not read:  # a reader that never reads: the child gives up at the linger
                    assert child.wait(DEADLINE) == 0
                conn.settimeout(DEADLINE)
                while time.monotonic() < deadline:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            assert child.wait(DEADLINE) == 0
            return bytes(got)
        finally:
            child.kill()
            child.wait()


@posix_only
def test_output_closed_with_is_delivered_at_exit(short_tmp: str) -> None:
    size = 8 * 1024 * 1024
    got = _run_child(os.path.join(short_tmp, "s"), size, 30.0, read=True)
    assert got == bytes(range(256)) * (size // 256)


@posix_only
def test_a_reader_that_never_reads_costs_the_exit_at_most_the_linger(short_tmp: str) -> None:
    started = time.monotonic()
    got = _run_child(os.path.join(short_tmp, "s"), 8 * 1024 * 1024, 0.3, read=False)
    assert time.monotonic() - started < DEADLINE
    assert got == (bytes(range(256)) * 32768)[: len(got)]
    assert len(got) < 8 * 1024 * 1024
