"""Test doubles for applications that use channels.

``TestChannel`` is a real channel with a real, pollable fd: one end of a
``socket.socketpair()`` (which works on Windows too, where pipes cannot be
polled). The test holds the other end through ``put()`` and ``get()``.
"""

import socket
from typing import Optional

from ._errors import EndpointClosedException
from .buffering import BufferingArg
from .channel import BytesLike, SocketChannel, _as_views

__all__ = ["TestChannel"]


class TestChannel(SocketChannel):
    """A channel whose other end is driven by the test.

    ``put(data)`` makes ``data`` readable through ``read()`` (and through the
    fd of ``get_fd()``, so a ``Poller`` sees it); ``get()`` returns what was
    written with ``write()`` since the last ``get()``.

    ``put()`` never blocks: what the socket buffer does not take yet is kept
    and pushed as the channel reads.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, *, buffering: BufferingArg = "bytes") -> None:
        channel_end, test_end = socket.socketpair()
        test_end.setblocking(False)
        self._test_end: Optional[socket.socket] = test_end
        self._to_channel = bytearray()
        self._from_channel = bytearray()
        self._stream_ends = False  # put_eof() was called
        self._eof_sent = False
        super().__init__(channel_end, buffering=buffering)

    def put(self, data: BytesLike) -> None:
        """Make ``data`` readable by the channel.

        Raises ``EndpointClosedException`` once the channel is closed.
        """
        (view,) = _as_views((data,))
        if self._test_end is None:
            raise EndpointClosedException(f"put() to {self!r}: the channel was closed")
        if self._stream_ends:
            raise ValueError(f"put() to {self!r} after put_eof()")
        self._to_channel += view
        self._push()

    def put_eof(self) -> None:
        """End the stream the channel reads, after everything already put.

        The channel then reads what was put, then reports the end of stream
        (as when a peer closes its end). Its ``write()`` keeps working.
        """
        self._stream_ends = True
        self._push()

    def get(self) -> bytes:
        """Return what the channel wrote since the last call (``b''`` if nothing)."""
        self._pull()
        data = bytes(self._from_channel)
        self._from_channel.clear()
        return data

    def _push(self) -> None:
        pending = self._to_channel
        test_end = self._test_end
        if test_end is None:
            return
        while pending:
            try:
                sent = test_end.send(pending)
            except BlockingIOError:
                return
            del pending[:sent]
        if self._stream_ends and not self._eof_sent:
            self._eof_sent = True
            test_end.shutdown(socket.SHUT_WR)

    def _pull(self) -> None:
        while self._test_end is not None:
            try:
                data = self._test_end.recv(65536)
            except BlockingIOError:
                return
            if not data:
                return
            self._from_channel += data

    def _read(self) -> bytes:
        self._push()
        return super()._read()

    def close(self) -> None:
        """Close the channel; what it wrote stays available to ``get()``."""
        if self._closed:
            return
        # Take what the channel wrote first: closing the channel's end while
        # it has unread input resets the connection on some systems.
        self._pull()
        try:
            super().close()
        finally:
            if self._test_end is not None:
                self._test_end.close()
                self._test_end = None
            self._to_channel.clear()
