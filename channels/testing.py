"""Test doubles for applications that use channels.

``TestChannel`` is a real channel with a real, pollable fd: one end of a
``socket.socketpair()`` (which works on Windows too, where pipes cannot be
polled). The test holds the other end through ``put()`` and ``get()``.
"""

import socket
from typing import Optional

from ._base import DEFAULT_HIGH_WATER, DEFAULT_LINGER, BytesLike, as_views
from ._errors import EndpointClosedException
from .buffering import BufferingArg
from .channel import SocketChannel

__all__ = ["TestChannel"]


class TestChannel(SocketChannel):
    """A channel whose other end is driven by the test.

    ``put(data)`` makes ``data`` readable through ``read()`` (and through the
    fd of ``get_fd()``, so a ``Poller`` sees it); ``get()`` returns what was
    written with ``write()`` since the last ``get()``.

    Neither blocks, whatever the amounts: what the socket buffer does not take
    yet is kept and moved as the channel reads, or as ``get()`` is called.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        channel_end, test_end = socket.socketpair()
        test_end.setblocking(False)
        self._test_end: Optional[socket.socket] = test_end
        self._to_channel = bytearray()
        self._from_channel = bytearray()
        self._stream_ends = False  # put_eof() was called
        self._eof_sent = False
        try:
            super().__init__(channel_end, buffering=buffering, high_water=high_water, linger=linger)
        except BaseException:
            channel_end.close()
            test_end.close()
            raise

    def put(self, data: BytesLike) -> None:
        """Make ``data`` readable by the channel.

        Raises ``EndpointClosedException`` once the channel is closed.
        """
        (view,) = as_views((data,))
        if self._test_end is None:
            raise EndpointClosedException(f"put() to {self!r}: the channel was closed")
        if self._stream_ends:
            raise ValueError(f"put() to {self!r} after put_eof()")
        self._to_channel += view
        self._push_input()

    def put_eof(self) -> None:
        """End the stream the channel reads, after everything already put.

        The channel then reads what was put, then reports the end of stream
        (as when a peer closes its end). Its ``write()`` keeps working.
        """
        self._stream_ends = True
        self._push_input()

    def get(self) -> bytes:
        """Return what the channel wrote since the last call (``b''`` if nothing).

        Output the channel still had queued is delivered first.
        """
        self._pull_output()
        data = bytes(self._from_channel)
        self._from_channel.clear()
        return data

    def _push_input(self) -> None:
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

    def _pull_output(self) -> None:
        """Receive what the channel wrote, letting its queue drain into the socket."""
        test_end = self._test_end
        while test_end is not None:
            try:
                data = test_end.recv(65536)
            except BlockingIOError:
                if not self._queue or self._write_failure is not None:
                    return
                self._push_or_fail("delivery to the test of")
                continue
            if not data:
                return
            self._from_channel += data

    def _read(self) -> bytes:
        self._push_input()
        return super()._read()

    def close(self) -> None:
        """Close the channel; what it wrote stays available to ``get()``."""
        if self._closed:
            return
        # Take what the channel wrote first, so its queue is empty and close()
        # does not wait; also, closing the channel's end while it has unread
        # input resets the connection on some systems.
        self._pull_output()
        try:
            super().close()
        finally:
            if self._test_end is not None:
                self._test_end.close()
                self._test_end = None
            self._to_channel.clear()
