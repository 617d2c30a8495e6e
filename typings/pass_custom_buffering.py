"""A custom framing strategy, and the built-in ones configured."""

import socket
from typing import Optional

from channels import Buffering, Framer, LineBuffering, Poller, SocketChannel


class NetstringFramer:
    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        colon = self._buffer.find(b":")
        if colon < 0:
            return None
        size = int(self._buffer[:colon])
        end = colon + 1 + size
        if len(self._buffer) <= end:
            return None
        frame = bytes(self._buffer[colon + 1 : end])
        del self._buffer[: end + 1]
        return frame


class Netstrings:
    name = "netstring"

    def new_framer(self) -> Framer:
        return NetstringFramer()


def configure(sock: socket.socket) -> None:
    strategy: Buffering = Netstrings()
    channel = SocketChannel(sock, buffering=strategy)
    crlf = Poller(buffering=LineBuffering(b"\r\n"))
    netstrings = Poller(buffering=Netstrings())
    zero = SocketChannel(sock, buffering=LineBuffering(delimiter=b"\0"))
    legacy = SocketChannel(sock, buffering=None)
    print(channel, crlf, netstrings, zero, legacy)
