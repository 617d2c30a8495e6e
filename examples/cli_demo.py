"""make demo: a scripted session with the command line tool, end to end.

Starts `python -m channels serve` (a broadcast hub on a Unix socket), connects
two clients with `python -m channels connect`, lets them talk, then stops the
server with SIGTERM — and prints what each side saw.
"""

import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO

CLI = [sys.executable, "-m", "channels"]


def line_from(stream: IO[bytes], timeout: float = 5.0) -> str:
    if not select.select([stream], [], [], timeout)[0]:
        raise SystemExit("demo: no answer within 5 s")
    return stream.readline().decode().rstrip("\n")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="channels-demo-") as directory:
        address = "unix:" + os.path.join(directory, "hub.sock")
        print(f"$ python -m channels serve {address}")
        server = subprocess.Popen([*CLI, "serve", address], stderr=subprocess.PIPE, bufsize=0)
        assert server.stderr is not None
        print("  server:", line_from(server.stderr))
        clients = {}
        for name in ("alice", "bob"):
            print(f"$ python -m channels connect {address} --line   # {name}")
            clients[name] = subprocess.Popen(
                [*CLI, "connect", address, "--line"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            print("  server:", line_from(server.stderr))
        for speaker, listener, text in (
            ("alice", "bob", "hello bob"),
            ("bob", "alice", "hi alice, lines arrive whole"),
        ):
            stdin = clients[speaker].stdin
            assert stdin is not None
            stdin.write(f"{speaker}: {text}\n".encode())
            print(f"  {speaker} types:  {speaker}: {text}")
            stdout = clients[listener].stdout
            assert stdout is not None
            print(f"  {listener} reads:  {line_from(stdout)}")
        print("$ kill -TERM <server>")
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        for line in server.stderr.read().decode().splitlines():
            print("  server:", line)
        server.wait(5)
        for name, client in clients.items():
            assert client.stdin is not None and client.stdout is not None
            client.stdin.close()
            print(f"  {name}'s connect exits with {client.wait(5)}")
            client.stdout.close()
        server.stderr.close()
        left = os.path.exists(address[len("unix:") :])
        print(f"  socket file removed: {not left} ({time.monotonic() - started:.2f} s to stop)")
        return 0 if server.returncode == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
