"""A line server that uses the hardening knobs: bounded lines, capped clients,
a read budget, wakeup() from another thread, and context managers."""

import socket
import threading

from channels import LineBuffering, LineTooLong, Poller, SocketChannel
from channels.testing import TestChannel


def serve(sock: socket.socket, stop: threading.Event) -> None:
    strategy = LineBuffering(b"\r\n", max_length=64 * 1024)
    with Poller(buffering=strategy, read_budget=64 * 1024) as poller:
        poller.add_server(sock, max_clients=100)
        threading.Timer(5.0, poller.wakeup).start()
        while not stop.is_set():
            for data, source in poller.poll(timeout=None):
                if isinstance(data, bytes) and isinstance(source, SocketChannel):
                    if data:
                        source.write(data)
                    else:
                        print("gone:", source.peer, source.undelivered)
                        source.close()
        poller.remove_server(sock)


def check_limits() -> None:
    with TestChannel(buffering=LineBuffering(max_length=10)) as channel:
        channel.put(b"x" * 11, split_at=[5])
        channel.throttle_writes(1, 0)
        try:
            channel.read()
        except LineTooLong as error:
            print(error.max_length, error.length)
        channel.close_peer()
        channel.reset_peer()
