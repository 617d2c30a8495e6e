"""Custom channels: one that inherits nothing, one that subclasses Channel."""

import os
from typing import List

from channels import BytesLike, Channel, ChannelLike, EndpointClosedException, Poller


class FileChannel:
    """Structurally a channel: the Poller accepts it without inheritance."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def buffering(self) -> str:
        return "bytes"

    def read(self) -> bytes:
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return b""
        if not data:
            raise EndpointClosedException("end of file")
        return data

    def write(self, *chunks: bytes) -> None:
        for chunk in chunks:
            os.write(self._fd, chunk)

    def close(self) -> None:
        os.close(self._fd)

    def get_fd(self) -> int:
        return self._fd


class ReplayChannel(Channel):
    """Subclasses Channel: implements _read and gets line framing for free."""

    def __init__(self, chunks: List[bytes]) -> None:
        super().__init__(buffering="line")
        self._chunks = chunks

    def _read(self) -> bytes:
        if not self._chunks:
            raise EndpointClosedException("replay finished")
        return self._chunks.pop(0)

    def write(self, *chunks: BytesLike) -> None:
        pass

    def close(self) -> None:
        super().close()


def use(fd: int) -> None:
    poller = Poller()
    custom: ChannelLike = FileChannel(fd)
    poller.register(custom)
    poller.register(FileChannel(fd))
    replay = ReplayChannel([b"a\n", b"b\n"])
    line: bytes = replay.read()
    print(line, poller.poll(0))
