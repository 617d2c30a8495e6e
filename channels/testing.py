"""Test doubles for applications that use channels.

``TestChannel`` is a real channel with a real, pollable fd: one end of a
``socket.socketpair()`` (which works on Windows too, where pipes cannot be
polled). The test holds the other end, and scripts what real networks do:

- ``put(data, split_at=...)``: data arriving split across reads at chosen
  points; ``put_eof()``: the peer ending its stream (half-close);
  ``close_peer()``: the peer closing; ``reset_peer()``: the peer resetting.
- ``throttle_writes(...)``: short writes and ``EAGAIN`` on the write side.
- ``get()``: what the channel wrote.
"""

import collections
import errno
import socket
from typing import Deque, Iterable, List, Optional

from ._base import DEFAULT_HIGH_WATER, DEFAULT_LINGER, READ_SIZE
from ._errors import EndpointClosedException
from ._outbox import as_views
from ._protocols import BytesLike
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
    What the channel wrote stays available to ``get()`` after ``close()``.
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
        # Input not yet in the socket, in pieces: a piece is sent only once
        # the channel has read everything before it.
        self._pieces: Deque[bytearray] = collections.deque()
        self._piece_waits = False
        self._from_channel = bytearray()
        self._stream_ends = False  # put_eof() or close_peer() was called
        self._eof_sent = False
        self._close_peer = False
        self._reset = False
        self._write_ended = False
        self._write_limits: Deque[int] = collections.deque()
        try:
            super().__init__(channel_end, buffering=buffering, high_water=high_water, linger=linger)
        except BaseException:
            channel_end.close()
            test_end.close()
            raise

    # -- the test's side: input ---------------------------------------------

    def put(self, data: BytesLike, *, split_at: Iterable[int] = ()) -> None:
        """Make ``data`` readable by the channel.

        ``split_at`` lists offsets in ``data`` where it must arrive in separate
        reads: the part after an offset reaches the socket only once the
        channel has read everything before it (so a framer sees a line cut
        exactly there). Raises ``EndpointClosedException`` once the channel is
        closed, ``ValueError`` after ``put_eof()`` or for a bad offset.
        """
        (view,) = as_views((data,))
        if self._stream_ends:
            raise ValueError(f"put() to {self!r} after put_eof(), close_peer() or reset_peer()")
        if self._test_end is None:
            raise EndpointClosedException(f"put() to {self!r}: the channel was closed")
        offsets = sorted(set(split_at))
        if offsets and not 0 < offsets[0] <= offsets[-1] < len(view):
            raise ValueError(f"split_at offsets must lie inside the data (1..{len(view) - 1})")
        bounds = [0, *offsets, len(view)]
        parts = [bytearray(view[a:b]) for a, b in zip(bounds, bounds[1:])]
        if self._pieces:
            self._pieces[-1] += parts.pop(0)
        self._pieces.extend(part for part in parts if part)
        self._push_input()

    def put_eof(self) -> None:
        """End the stream the channel reads, after everything already put.

        The channel then reads what was put, then reports the end of stream
        (as when a peer shuts down its writing side). Its ``write()`` keeps
        working, and ``get()`` gets what it writes.
        """
        self._stream_ends = True
        self._push_input()

    def close_peer(self) -> None:
        """The peer closes: after what was put, the channel reads the end of
        stream, and its writes fail (``EndpointClosedException``). What it
        wrote before stays available to ``get()``."""
        self._stream_ends = True
        self._close_peer = True
        self._push_input()

    def reset_peer(self) -> None:
        """The peer resets the connection, as a TCP reset does: what was put
        but not read yet is lost, so is the output still queued in the
        channel, and its next read or write fails with ``ECONNRESET`` (as
        ``EndpointClosedException``; a ``Poller`` reports it closed, reason
        reset). What the channel's writes had already delivered stays
        available to ``get()``."""
        self._reset = True
        self._pieces.clear()
        self._stream_ends = True
        self._pull_output(push=False)
        if self._test_end is not None:
            self._test_end.close()  # makes the channel's fd readable
            self._test_end = None

    # -- the test's side: output --------------------------------------------

    def throttle_writes(self, *limits: int) -> None:
        """Script the next sends: each takes at most ``limit`` bytes, and a
        limit of 0 fails with ``EAGAIN`` (``BlockingIOError``) as a full socket
        does. Once the script is used up, sends go through normally."""
        for limit in limits:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"throttle_writes() takes byte counts >= 0, not {limit!r}")
        self._write_limits.extend(limits)

    @property
    def write_ended(self) -> bool:
        """True once ``get()`` found the end of what the channel writes (after
        its ``write_eof()`` or ``close()``)."""
        return self._write_ended

    def get(self) -> bytes:
        """Return what the channel wrote since the last call (``b''`` if nothing).

        Output the channel still had queued is delivered first.
        """
        self._pull_output()
        data = bytes(self._from_channel)
        self._from_channel.clear()
        return data

    # -- plumbing -----------------------------------------------------------

    def _push_input(self) -> None:
        pieces = self._pieces
        test_end = self._test_end
        if test_end is None:
            return
        while pieces and not self._piece_waits:
            head = pieces[0]
            try:
                sent = test_end.send(head)
            except BlockingIOError:
                return
            del head[:sent]
            if head:
                continue
            pieces.popleft()
            self._piece_waits = bool(pieces)  # the next piece: after a read
        if not pieces and self._stream_ends and not self._eof_sent:
            self._eof_sent = True
            if self._close_peer:
                self._pull_output()
                test_end.close()
                self._test_end = None
            else:
                test_end.shutdown(socket.SHUT_WR)

    def _pull_output(self, *, push: bool = True) -> None:
        """Receive what the channel wrote; with ``push``, let its queue drain
        into the socket meanwhile."""
        while self._test_end is not None:
            try:
                data = self._test_end.recv(65536)
            except BlockingIOError:
                queued = self._outbox.size
                if not push or not queued or self._outbox.failure is not None:
                    return
                self._push_or_fail("delivery to the test of")
                if self._outbox.size == queued and not self._write_limits:
                    return  # no progress (cannot happen on a socketpair; be safe)
                continue
            if not data:
                self._write_ended = True
                return
            self._from_channel += data

    # Read on until EAGAIN: the next piece of a split put() goes into the
    # socket only once the channel has read everything before it.
    _short_read_drains = False

    def _receive_into(self, inbox: List[bytes], size: int) -> int:
        if self._reset:
            raise EndpointClosedException("reading failed: the peer reset the connection") from (
                ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
            )
        self._push_input()
        got = super()._receive_into(inbox, size)
        if not got and self._piece_waits:
            self._piece_waits = False  # the channel read all before the split
            self._push_input()
        return got

    def _receive(self, size: int) -> bytes:
        inbox: List[bytes] = []
        TestChannel._receive_into(self, inbox, size)
        return inbox[0] if inbox else b""

    def _read(self) -> bytes:
        return TestChannel._receive(self, READ_SIZE)

    def _send_into(self, queue: Deque[memoryview], sent: List[int]) -> None:
        if self._reset:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        if self._write_limits:
            limit = self._write_limits.popleft()
            if not limit:
                raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable (scripted)")
            sent.extend(map(self._sock.send, (queue[0][:limit],)))
        else:
            super()._send_into(queue, sent)

    def _before_close(self) -> None:
        # Take what the channel wrote first, so its queue is empty and close()
        # does not wait; also, closing the channel's end while it has unread
        # input resets the connection on some systems.
        self._pull_output()

    def _release(self) -> None:
        try:
            self._pull_output(push=False)  # what a background close delivered
            super()._release()
        finally:
            if self._test_end is not None:
                self._test_end.close()
                self._test_end = None
            self._write_ended = True  # all it wrote was taken: its stream ended
            self._pieces.clear()
