"""The writing side of a channel: queued, zero-loss writes and their end.

``WritingSide`` is the half of ``Channel`` that writes: ``write()`` queues
what the OS does not take in the channel's ``Outbox`` (refusing a whole
write past the high-water mark), ``flush()`` delivers it, ``write_eof()``
ends the stream once it is delivered. The OS calls are the subclass's:
``_send()``, ``_write_fd()`` and ``_end_writing()``. No IO here but those.
"""

import time
from typing import Callable, Deque, List, Optional

from . import _checks
from ._errors import EndpointClosedException
from ._fds import fd_ready
from ._outbox import IDLE_OUTBOX, Outbox, as_views
from ._protocols import BytesLike, Watcher
from ._rare import RareField, RareState

__all__ = ["DEFAULT_HIGH_WATER", "WritingSide"]

DEFAULT_HIGH_WATER = 16 * 1024 * 1024
"""Queued output a channel accepts before ``write()`` raises
``WriteBufferFullError``: 16 MiB, enough to absorb bursts on a fast link,
small enough that thousands of slow peers cannot exhaust memory."""


class WritingSide:
    """What a channel does to write; ``Channel`` is one, with a reading side."""

    _outbox: Outbox  # (IDLE_OUTBOX until needed: see _own_outbox())
    _watcher: Optional[Watcher]
    _high_water: int
    _rare: RareState
    _low_water = RareField[Optional[int]]()  # None: high_water // 4
    _closed: bool
    # close() left the delivery of the queue to an agent (flush() still works).
    _handed_over = RareField[bool]()
    # write_eof(): 1 once asked for, 2 once the write side was shut.
    _eof: int

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "_send" in cls.__dict__ and "_send_into" not in cls.__dict__:
            # A subclass with its own _send() is sent through it.
            setattr(cls, "_send_into", WritingSide._send_into)  # noqa: B010

    @property
    def write_buffer_size(self) -> int:
        """Bytes accepted by ``write()`` that the OS has not taken yet."""
        return self._outbox.size

    @property
    def accepted(self) -> int:
        """Bytes ``write()`` took in all, sent or queued. A ``write()`` takes
        all of its data or none: if one raised (a signal handler's exception,
        say), this tells which, compared with its value before the call."""
        return self._outbox.accepted

    @property
    def undelivered(self) -> int:
        """Bytes accepted by ``write()`` that were dropped: the connection broke,
        or ``close()`` gave up on a stalled reader, or ``abort()`` was called."""
        return self._outbox.undelivered

    @property
    def high_water(self) -> int:
        """The most queued output ``write()`` lets build up, in bytes."""
        return self._high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        high_water = _checks.whole_number(value, "high_water (bytes)", 1)
        if self._low_water is not None and self._low_water > high_water:
            raise ValueError(
                f"high_water must be at least low_water ({self._low_water}), not {high_water}"
            )
        self._high_water = high_water

    @property
    def low_water(self) -> int:
        """The queue size at or below which a channel whose ``write()`` was
        refused is writable again (a ``Poller`` reports ``Writable``; lower,
        if the refused write fits only then): ``high_water // 4`` unless set,
        as asyncio's default."""
        return self._high_water // 4 if self._low_water is None else self._low_water

    @low_water.setter
    def low_water(self, value: int) -> None:
        low_water = _checks.whole_number(value, "low_water (bytes)", 0)
        if low_water > self._high_water:
            raise ValueError(
                f"low_water must be at most high_water ({self._high_water}), not {low_water}"
            )
        self._low_water = low_water

    def write(self, *chunks: BytesLike) -> None:
        """Write the chunks in order, as one stream; never blocks, never drops.

        What the OS does not take at once is queued and delivered later (by
        ``flush()``, a ``Poller``, later writes or ``close()``). If the queue
        would grow past ``high_water``, ``WriteBufferFullError`` is raised and
        nothing of this call is queued. A sink in blocking mode (a pipe you
        handed over) takes everything before ``write()`` returns, as in 0.2.

        Raises ``TypeError`` for a chunk that is not bytes-like (nothing is
        written then), and ``EndpointClosedException`` when the other end is
        gone or the channel was closed.
        """
        views = as_views(chunks)
        self._check_writable("write to")
        if self._eof:
            raise EndpointClosedException(f"write to {self!r}: write_eof() ended writing")
        size = sum(len(view) for view in views)
        if not size:
            return
        outbox = self._outbox
        if outbox is IDLE_OUTBOX:  # (no call per write once it has its own)
            outbox = self._own_outbox()
        if outbox.size + size > self._high_water and (outbox.size or not self._sink_blocks()):
            # The watchers hear when it drained to the low-water mark, or to
            # where this write fits, whichever is lower (never, if it cannot).
            fits_at = self._high_water - size
            outbox.drain_at = fits_at if fits_at < self.low_water else self.low_water
            raise outbox.full(size, self._high_water, self)
        try:
            outbox.add(views, size)
            self._push_or_fail("write to")
        finally:
            # What is still queued of this call must not change if the caller
            # reuses a mutable buffer: copy that part (and only that part).
            outbox.keep_copies(len(views))
            outbox.announce()  # (again, if a raise cut the push short)

    def write_eof(self) -> None:
        """End the stream this channel writes, after everything queued.

        The peer reads all that was written, then the end of the stream (a
        socket's ``shutdown(SHUT_WR)``; a pipe's sink is closed). Never
        blocks: what the OS does not take yet goes out with ``flush()``, a
        ``Poller`` or ``close()``, and the end follows it. Reading goes on
        until the peer closes. Then ``write()`` raises
        ``EndpointClosedException``; calling ``write_eof()`` again does
        nothing. ``NotImplementedError`` for a channel that cannot end its
        writing alone; ``EndpointClosedException`` when it is closed or broken.
        """
        self._check_writable("write_eof() of")
        if not self._eof:
            self._check_can_end_writing()
            self._eof = 1
            self._push_or_fail("write_eof() of")

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver queued output, waiting at most ``timeout`` seconds.

        ``None`` (or ``inf``) waits until everything is delivered; zero or
        less only sends what the OS takes now; any size works (NaN raises
        ``ValueError``). Returns True when nothing is left queued, False
        when the timeout passed first. Raises ``EndpointClosedException`` (with
        ``undelivered``) when the other end is gone or the channel was closed
        (but while a ``Poller`` delivers in the background what was queued
        before ``close()``, ``flush()`` waits for that delivery).
        """
        timeout = _checks.timeout(timeout, "flush() timeout")
        fd = self._write_fd()
        self._outbox.check("flush of", self)
        if self._closed and not self._handed_over:
            raise EndpointClosedException(f"flush of {self!r}: the channel was closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._push_or_fail("flush of")
            if not self._outbox.size:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            fd_ready(fd, writing=True, timeout=left)

    def get_write_fd(self) -> int:
        """The fd whose writability lets queued output go: the socket's fd, or a
        ``PipeChannel``'s sink. ``NotImplementedError`` for a channel that
        cannot write."""
        return self._write_fd()

    def _check_writable(self, action: str) -> int:
        """The fd to wait on for writing, or the reason writing is impossible."""
        fd = self._write_fd()  # NotImplementedError for a channel that cannot write
        self._outbox.check(action, self)
        if self._closed:
            raise EndpointClosedException(f"{action} {self!r}: the channel was closed")
        return fd

    def _push_or_fail(self, action: str) -> None:
        """Send what the OS takes now; an OSError means writing is over.
        After ``write_eof()``, the write side is shut once all is sent."""
        outbox = self._outbox
        outbox.push_or_raise(self._send_into, action, self)
        if self._eof == 1 and not outbox.size:
            self._eof = 2
            try:
                self._end_writing()
            except OSError as exc:
                self._own_outbox().fail(exc)
                raise EndpointClosedException(f"{action} {self!r} failed: {exc}") from exc

    def _check_can_end_writing(self) -> None:
        """Raise ``NotImplementedError`` if ``write_eof()`` cannot work here."""
        if type(self)._end_writing is WritingSide._end_writing:
            raise NotImplementedError(f"{type(self).__name__} cannot end its writing alone")

    def _end_writing(self) -> None:
        """Shut the write side, the queue being empty (``write_eof()``)."""
        raise NotImplementedError(f"{type(self).__name__} cannot end its writing alone")

    def _send_into(self, queue: Deque[memoryview], sent: List[int]) -> None:
        """Send from the head of ``queue`` (one or more views) and append the
        count to ``sent``. The syscall and the append must be one C call
        (``sent.extend(map(...))``, as ``_fds.receive_into`` does for reads);
        by default ``_send()`` is called, whose count a signal handler may
        lose (README: Signals)."""
        sent.append(self._send(queue))

    def _send(self, queue: Deque[memoryview]) -> int:
        """Send from the head of ``queue`` (one or more views); return the count."""
        raise NotImplementedError(f"{type(self).__name__} cannot write")

    def _write_fd(self) -> int:
        """The fd to wait on until the OS takes more output."""
        raise NotImplementedError(f"{type(self).__name__} cannot write")

    def _sink_blocks(self) -> bool:
        """True when the OS takes every write whole (a sink in blocking mode)."""
        return False

    def _watched_changed(self, watched: bool) -> None:
        """Someone now delivers the queue (a ``Poller``), or no one does."""

    def add_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when output gets queued and ``callback(False)``
        when all of it was delivered (or dropped). Whoever adds one delivers
        the queue (flushes as the fd can take data): a blocking sink (see
        ``PipeChannel``) stops blocking writes until it is removed."""
        outbox = self._own_outbox()
        was_watched = self._output_watched()
        outbox.add_callback(callback)
        if not was_watched:
            self._watched_changed(True)

    def remove_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        outbox = self._outbox
        if outbox is IDLE_OUTBOX:  # (no callback was ever added)
            return
        was_watched = self._output_watched()
        outbox.remove_callback(callback)
        if was_watched and not self._output_watched():
            self._watched_changed(False)

    def add_drain_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when, after a refused ``write()``, the queue
        drained to ``low_water``: the channel is writable again."""
        self._own_outbox().add_drain_callback(callback)

    def remove_drain_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        outbox = self._outbox
        if outbox is not IDLE_OUTBOX:  # (else none was ever added)
            outbox.remove_drain_callback(callback)

    def _own_outbox(self) -> Outbox:
        """The channel's own outbox, made now if it still has the shared idle
        one (whatever would change an outbox asks for it this way)."""
        outbox = self._outbox
        if outbox is IDLE_OUTBOX:
            outbox = Outbox(self._watcher)
            # (one store after the call: a raise before it leaves the idle one)
            self._outbox = outbox
        return outbox

    def _output_watched(self) -> bool:
        """True while someone will deliver the queue: a watcher, or an output
        callback."""
        return self._watcher is not None or self._outbox.watched
