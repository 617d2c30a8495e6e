"""The reading side of a channel: the inbox, the framer, and what comes out.

``ReadingSide`` is the half of ``Channel`` that reads: the subclass's read
syscall appends to the framer's ``inbox`` (``_receive_into``: the syscall and
the keeping of its result are one C call), the framer cuts frames, and
``read()`` or ``read_frames_into()`` hand them out. Each step that moves data
from one holder to the next does it with stores only, no call in between:
CPython runs a signal handler only at calls and loop jumps (3.10 and later),
so one that raises finds every byte in exactly one place (README: Signals).
No IO here but the subclass's ``_receive_into()``.
"""

from typing import Any, ClassVar, List, Optional, Tuple

from ._errors import EndpointClosedException, LineTooLong
from ._framers import Intake, Out, intake
from ._protocols import AGAIN, DRAINED, MORE
from ._rare import RareField, RareState
from .buffering import Buffering

__all__ = ["MAX_READ_PER_CALL", "NOTHING_HELD", "READ_SIZE", "UNREAD", "ReadingSide"]

READ_SIZE = 124 * 1024
"""Bytes asked of the OS per read syscall: as much as one buffer can take
while it stays below glibc's default mmap threshold (128 KiB). A larger
request is an ``mmap`` and a ``munmap`` per read, and a page fault on each
page it fills (256 KiB over TCP, whose reads come back short: 14% fewer
lines/s); against 64 KiB, fewer syscalls and fewer chunks to frame."""

MAX_READ_PER_CALL = 256 * 1024
"""A ``read()`` stops asking the OS for more once it got this much, so one
call returns in bounded time even from a peer that never stops sending; it
is also a ``Poller``'s default read budget per channel per ``poll()``."""


NOTHING_HELD: List[Tuple[List[bytes], Any]] = []
"""What a channel holds for ``read()`` until it first calls it: shared, never
changed (a channel only a Poller reads never needs a list of its own)."""


class _Unread:
    """The ``Intake`` of a channel nothing was read into yet: one, shared by
    all, holding nothing. The channel makes its own framer before its first
    read appends to an inbox (an idle channel costs no framer)."""

    __slots__ = ()

    inbox: List[bytes] = []  # noqa: RUF012 (shared, never filled: see _fill)

    def take_into(self, out: Out, owner: object) -> None:
        pass

    def feed_eof(self) -> None:
        pass

    @property
    def error_waiting(self) -> bool:
        return False


UNREAD: Intake = _Unread()
"""The framer of every channel nothing was read into yet."""


class ReadingSide:
    """What a channel does to read; ``Channel`` is one, with a writing side."""

    _short_read_drains: ClassVar[bool] = False
    """True when a read that got less than it asked for had all there was (a
    stream socket or a pipe): the read that would say so is saved."""

    _reading_breaks_writing: ClassVar[bool] = False
    """True when a failed read means the connection is gone both ways (a
    socket): the queued output is dropped, and counted, at once."""

    _framer: Intake  # (UNREAD until the first read: see _fill)
    _strategy: Buffering
    # Frames read() took from the framer: _held[0][0][_at:] comes next.
    _held: List[Tuple[List[bytes], Any]]
    _at: int
    # Why reading ended (peer closed, OS error, closed here); None while open.
    _end: Optional[str]
    _rare: RareState
    _end_cause = RareField[Optional[BaseException]]()
    _closed: bool

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "_read" in cls.__dict__ and "_receive" not in cls.__dict__:
            # A subclass with its own _read() (a 0.2 one) is read through it,
            # until it says there is nothing more.
            setattr(cls, "_receive", ReadingSide._receive)  # noqa: B010 (mypy: no method assignment)
            cls._short_read_drains = False
        if "_receive" in cls.__dict__ and "_receive_into" not in cls.__dict__:
            setattr(cls, "_receive_into", ReadingSide._receive_into)  # noqa: B010

    def read(self) -> bytes:
        """Return the next frame without blocking; ``b''`` when there is none.

        After the other end closed, or after ``close()``, the frames still
        buffered are returned one by one (with line buffering, the final
        partial line last); then ``EndpointClosedException`` is raised.
        ``LineTooLong`` (an ``EndpointClosedException``) is raised once when a
        line passes the strategy's limit; the channel is finished then.
        """
        held = self._held
        if not held:
            if held is NOTHING_HELD:
                held = self._held = []
            framer = self._framer
            try:
                framer.take_into(held, self)  # (frames buffered already)
                if not held and self._end is None:
                    self._fill(MAX_READ_PER_CALL, False)
                    self._framer.take_into(held, self)
            except LineTooLong as exc:
                raise self._line_too_long(exc) from None
            if not held:
                if self._end is None:
                    return b""
                raise self._ended()
        frames = held[0][0]
        at = self._at
        last = len(frames) - 1
        frame = frames[at]
        # No call from here to the return: a signal handler cannot come in between.
        if at < last:
            self._at = at + 1
        else:
            del held[0]
            self._at = 0
        return frame

    def read_frames(self, max_bytes: int) -> Tuple[List[bytes], int]:
        """Every complete frame available now, oldest first, and what may follow.

        ``read()`` called until it returns ``b''``, reading at most
        ``max_bytes`` from the OS, with no Python call per frame. The second
        item is ``DRAINED`` (the OS had nothing more), ``MORE`` (``max_bytes``
        were read: more may be waiting) or ``AGAIN`` (reading ended, or the
        framer found an error: call again to learn it). Raises as ``read()``
        does once no frame is left. (A signal handler raising after it
        returned loses its frames: ``read_frames_into()`` cannot.)
        """
        out: List[Tuple[List[bytes], object]] = []
        state = self.read_frames_into(out, max_bytes)
        return [frame for frames, _ in out for frame in frames], state

    def read_frames_into(self, out: List[Tuple[List[bytes], Any]], max_bytes: int) -> int:
        """``read_frames()``, appending the frames to ``out`` as
        ``(frames, self)`` pairs (what a ``Poller`` uses).

        A frame is removed from the channel and put in ``out`` with no call
        in between, so a signal handler that raises anywhere in here loses
        no frame and repeats none: what was read before it is in ``out`` or
        still in the channel. Returns ``DRAINED``, ``MORE`` or ``AGAIN``.
        """
        before = len(out)
        held = self._held
        if held:  # what read() left: it comes first
            moved = held[:]
            if self._at:
                moved[0] = (held[0][0][self._at :], self)
            out += moved
            del held[:]
            self._at = 0
        framer = self._framer
        if self._end is not None:
            state = AGAIN
        elif framer.inbox:  # (a raise came before it was framed: frame it first)
            state = MORE
        elif self._fill(max_bytes, self._short_read_drains):
            state = DRAINED
        else:
            state = MORE
        framer = self._framer  # (the first read made it)
        try:
            framer.take_into(out, self)
        except LineTooLong as exc:
            raise self._line_too_long(exc) from None
        if self._end is not None or framer.error_waiting:
            if len(out) == before:
                if self._end is None:  # the framer's error: take_into() raises it
                    return self.read_frames_into(out, max_bytes)
                raise self._ended()
            return AGAIN
        return state

    def _line_too_long(self, exc: LineTooLong) -> LineTooLong:
        error = LineTooLong(exc.max_length, exc.length, source=f"read from {self!r}")
        self._end_reading(str(error), error)
        return error

    def _ended(self) -> EndpointClosedException:
        error = EndpointClosedException(f"read from {self!r}: {self._end}")
        error.__cause__ = self._end_cause
        return error

    def _fill(self, max_bytes: int, short_read_drains: bool) -> bool:
        """Read into the framer's inbox until the OS has nothing more now, or
        reading ended, or ``max_bytes`` came; True if the OS had nothing more.

        Reading on until the OS has nothing left is what lets one call see both
        a final partial line and the close behind it.
        """
        framer = self._framer
        if framer is UNREAD:  # the first read: the channel's own framer now
            framer = self._framer = intake(self._strategy.new_framer())
        inbox = framer.inbox
        total = 0
        while total < max_bytes:
            # (not min(): a builtin call costs more than the test, per read)
            size = READ_SIZE if max_bytes - total > READ_SIZE else max_bytes - total
            try:
                got = self._receive_into(inbox, size)
            except EndpointClosedException as exc:
                self._end_reading(str(exc) or "the other end closed", exc.__cause__)
                return True
            if not got:
                return True
            total += got
            if short_read_drains and got < size:
                return True
        return False

    def _end_reading(self, why: str, cause: Optional[BaseException]) -> None:
        if self._end is None:
            if self._reading_breaks_writing and not self._closed:
                cause = self._settle_writing(cause)
            self._framer.feed_eof()
            self._end_cause = cause
            self._end = why

    def _receive_into(self, inbox: List[bytes], size: int) -> int:
        """One read of at most ``size`` bytes, appended to ``inbox`` (nothing
        if none now); return how many. Raise ``EndpointClosedException`` at end
        of stream. The read and the append must be one C call (see
        ``_fds.receive_into``); by default ``_receive()`` is called, which
        a signal handler may interrupt after it read (README: Signals)."""
        data = self._receive(size)
        if data:
            inbox.append(data)
        return len(data)

    def _receive(self, size: int) -> bytes:
        """One read of at most ``size`` bytes (``b''`` if none now); raise
        ``EndpointClosedException`` at end of stream. By default it calls
        ``_read()``."""
        return self._read()

    def _settle_writing(self, cause: Optional[BaseException]) -> Optional[BaseException]:
        """Reading ended (``cause``: the read error, None at a plain end): did
        the connection break both ways? Returns why it broke, or None."""
        return cause

    def _read(self) -> bytes:
        """Return the bytes the OS has now (``b''`` if none); raise
        ``EndpointClosedException`` at end of stream."""
        raise NotImplementedError
