"""Mistakes the types must reject: each ignore names the error it expects."""

import socket

from channels import LineBuffering, PipeChannel, Poller, SocketChannel
from channels.testing import TestChannel


def misuse(sock: socket.socket) -> None:
    channel = SocketChannel(sock)
    channel.write("text")  # type: ignore[arg-type]
    channel.write(b"ok", 42)  # type: ignore[arg-type]
    channel.buffering = "line"  # type: ignore[misc]
    text: str = channel.read()  # type: ignore[assignment]
    channel.flush("soon")  # type: ignore[arg-type]
    channel.write_buffer_size = 0  # type: ignore[misc]
    SocketChannel(sock, high_water="16M")  # type: ignore[arg-type]
    SocketChannel(sock, linger=None)  # type: ignore[arg-type]

    poller = Poller()
    poller.register(object())  # type: ignore[arg-type]
    poller.register(sock)  # type: ignore[arg-type]
    poller.add_server("127.0.0.1:8000")  # type: ignore[arg-type]
    poller.poll("1")  # type: ignore[arg-type]
    Poller(buffering=3)  # type: ignore[arg-type]
    Poller("line")  # type: ignore[misc]
    Poller(read_budget="256K")  # type: ignore[arg-type]
    poller.add_server(sock, max_clients="10")  # type: ignore[arg-type]
    LineBuffering(max_length="1M")  # type: ignore[arg-type]
    TestChannel().put(b"x", split_at=3)  # type: ignore[arg-type]

    PipeChannel("0")  # type: ignore[arg-type]
    SocketChannel(3)  # type: ignore[arg-type]
    LineBuffering("\n")  # type: ignore[arg-type]
    TestChannel().put("text")  # type: ignore[arg-type]

    for event in poller.poll_events():
        event.data  # type: ignore[union-attr]
    for data, source in poller.poll():
        data.decode()  # type: ignore[union-attr]
        source.read()  # type: ignore[union-attr]
    print(text)
