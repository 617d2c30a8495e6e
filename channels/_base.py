"""The channel base class: framing on the way in, an outbox on the way out.

A channel reads without blocking and feeds what it read to its one framer
(``channels._framers``), which decides what ``read()`` returns;
``read_frames()`` takes every frame at once from that same framer, so both
see the same frames and the same errors. The writing side is
``channels._writing.WritingSide``: writing never loses data, what the OS
does not take at once waits in the channel's ``Outbox`` (in order) and is
delivered by ``flush()``, by a ``Poller`` during ``poll()``, by later writes,
or by ``close()``, through the one linger loop ``_outbox.deliver``.

A channel knows nothing of pollers: whoever watches it may ask to be called
back when it closes or when it starts or stops holding queued output. This
module makes no syscall and imports nothing POSIX-only, so ``import
channels`` works on Windows; the subclasses in ``channels.channel`` do the IO.
"""

import abc
import contextlib
import logging
from typing import Callable, ClassVar, List, Optional, Tuple, TypeVar

from . import _checks
from ._errors import EndpointClosedException, LineTooLong
from ._fds import current_pid
from ._framers import bulk_framer
from ._outbox import Outbox, deliver
from ._protocols import AGAIN, DRAINED, MORE
from ._writing import DEFAULT_HIGH_WATER, WritingSide
from .buffering import BufferingArg, as_buffering

__all__ = ["DEFAULT_HIGH_WATER", "DEFAULT_LINGER", "MAX_READ_PER_CALL", "READ_SIZE", "Channel"]

READ_SIZE = 64 * 1024
"""Bytes asked of the OS per read syscall."""

MAX_READ_PER_CALL = 256 * 1024
"""A ``read()`` stops asking the OS for more once it got this much, so one
call returns in bounded time even from a peer that never stops sending; it
is also a ``Poller``'s default read budget per channel per ``poll()``."""

DEFAULT_LINGER = 5.0
"""Seconds ``close()`` waits for a reader that makes no progress before it
drops the output still queued."""

_Self = TypeVar("_Self", bound="Channel")

_LOGGER = logging.getLogger("channels.channel")


class Channel(WritingSide, abc.ABC):
    """Base class of channels: framing and zero-loss writes for free.

    A subclass implements ``_read()`` (return the bytes available now, ``b''``
    when none; raise ``EndpointClosedException`` at end of stream), ``_release()``
    (release its fds once closed) and, if it can be polled, ``get_fd()``. A
    0.2 subclass may implement ``close()`` instead (calling ``super().close()``
    first, then releasing its resources): its ``close()`` then always waits
    for the delivery of queued output itself. To get queued
    writes it implements ``_send(queue)`` and ``_write_fd()``; a 0.2 subclass
    that overrides ``write()`` keeps its own.

    ``read()`` returns the next frame of the ``buffering`` strategy: every
    byte available (``'bytes'``) or one complete line (``'line'``).

    ``high_water`` bounds the queued output (see ``write()``); ``linger``
    bounds how long ``close()`` waits for a reader that makes no progress.
    """

    _short_read_drains: ClassVar[bool] = False
    """True when a read that got less than it asked for had all there was (a
    stream socket or a pipe): the read that would say so is saved."""

    _reading_breaks_writing: ClassVar[bool] = False
    """True when a failed read means the connection is gone both ways (a
    socket): the queued output is dropped, and counted, at once."""

    _background_close: ClassVar[bool] = True
    """False for a subclass with its own ``close()``: it releases its fds
    right after ``super().close()``, so that must not return before the
    output was delivered."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "close" in cls.__dict__:
            cls._background_close = False
        if "_read" in cls.__dict__ and "_receive" not in cls.__dict__:
            # A subclass with its own _read() (a 0.2 one, TestChannel) is read
            # through it, until it says there is nothing more.
            setattr(cls, "_receive", Channel._receive)  # noqa: B010 (mypy: no method assignment)
            cls._short_read_drains = False

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        strategy = as_buffering(buffering)
        self._buffering = strategy.name
        self._framer = bulk_framer(strategy.new_framer())
        self._high_water = _checks.whole_number(high_water, "high_water (bytes)", 1)
        self._low_water: Optional[int] = None
        self._linger = _checks.seconds(linger, "linger")
        self._closed = False
        # Why reading ended (peer closed, OS error, closed here); None while open.
        self._end: Optional[str] = None
        self._end_cause: Optional[BaseException] = None
        self._close_callbacks: List[Callable[[], None]] = []
        self._close_agents: List[Callable[[], bool]] = []
        # close() left the rest of the delivery to an agent, which is not done.
        self._handed_over = False
        self._pid = current_pid()  # (a forked child's copy must leave the fds alone)
        self._outbox = Outbox()
        # write_eof(): 1 once asked for, 2 once the write side was shut.
        self._eof = 0

    @property
    def buffering(self) -> str:
        """The framing strategy's name: ``'line'``, ``'bytes'``, or a custom one."""
        return self._buffering

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def linger(self) -> float:
        """Seconds ``close()`` waits for a reader that makes no progress."""
        return self._linger

    @linger.setter
    def linger(self, value: float) -> None:
        self._linger = _checks.seconds(value, "linger")

    # -- reading ------------------------------------------------------------

    def read(self) -> bytes:
        """Return the next frame without blocking; ``b''`` when there is none.

        After the other end closed, or after ``close()``, the frames still
        buffered are returned one by one (with line buffering, the final
        partial line last); then ``EndpointClosedException`` is raised.
        ``LineTooLong`` (an ``EndpointClosedException``) is raised once when a
        line passes the strategy's limit; the channel is finished then.
        """
        framer = self._framer
        try:
            frame = framer.next_frame()
            if frame is not None:
                return frame
            if self._end is None:
                self._fill(MAX_READ_PER_CALL, False)
                frame = framer.next_frame()
                if frame is not None:
                    return frame
                if self._end is None:
                    return b""
        except LineTooLong as exc:
            raise self._line_too_long(exc) from None
        raise self._ended()

    def read_frames(self, max_bytes: int) -> Tuple[List[bytes], int]:
        """Every complete frame available now, oldest first, and what may follow.

        ``read()`` called until it returns ``b''``, reading at most
        ``max_bytes`` from the OS, with no Python call per frame (what a
        ``Poller`` uses). The second item is ``DRAINED`` (the OS had nothing
        more), ``MORE`` (``max_bytes`` were read: more may be waiting) or
        ``AGAIN`` (reading ended, or the framer found an error: call again to
        learn it). Raises as ``read()`` does once no frame is left.
        """
        framer = self._framer
        if self._end is not None:
            state = AGAIN
        elif self._fill(max_bytes, self._short_read_drains):
            state = DRAINED
        else:
            state = MORE
        try:
            frames = framer.take_frames()
        except LineTooLong as exc:
            raise self._line_too_long(exc) from None
        if self._end is not None or framer.error_waiting:
            if not frames:
                if self._end is None:  # the framer's error: take_frames() raises it
                    return self.read_frames(max_bytes)
                raise self._ended()
            return frames, AGAIN
        return frames, state

    def _line_too_long(self, exc: LineTooLong) -> LineTooLong:
        error = LineTooLong(exc.max_length, exc.length, source=f"read from {self!r}")
        self._end_reading(str(error), error)
        return error

    def _ended(self) -> EndpointClosedException:
        error = EndpointClosedException(f"read from {self!r}: {self._end}")
        error.__cause__ = self._end_cause
        return error

    def _fill(self, max_bytes: int, short_read_drains: bool) -> bool:
        """Feed the framer until the OS has nothing more now, or reading ended,
        or ``max_bytes`` were fed; True if the OS had nothing more.

        Reading on until the OS has nothing left is what lets one call see both
        a final partial line and the close behind it.
        """
        framer = self._framer
        total = 0
        while total < max_bytes:
            # (not min(): a builtin call costs more than the test, per read)
            size = READ_SIZE if max_bytes - total > READ_SIZE else max_bytes - total
            try:
                data = self._receive(size)
            except EndpointClosedException as exc:
                self._end_reading(str(exc) or "the other end closed", exc.__cause__)
                return True
            if not data:
                return True
            framer.feed(data)
            total += len(data)
            if short_read_drains and len(data) < size:
                return True
        return False

    def _end_reading(self, why: str, cause: Optional[BaseException]) -> None:
        if self._end is None:
            if self._reading_breaks_writing and not self._closed:
                cause = self._outbox.settle_end(cause, self._send)
            self._end = why
            self._end_cause = cause
            self._framer.feed_eof()

    def _receive(self, size: int) -> bytes:
        """One read of at most ``size`` bytes (``b''`` if none now); raise
        ``EndpointClosedException`` at end of stream. Subclasses that can read
        a given size override it; by default it calls ``_read()``."""
        return self._read()

    @abc.abstractmethod
    def _read(self) -> bytes:
        """Return the bytes the OS has now (``b''`` if none); raise
        ``EndpointClosedException`` at end of stream."""

    # -- closing ------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; calling it again does nothing.

        Queued output is delivered first. A channel watched by a ``Poller``
        (one that offered to finish its closes: ``add_close_agent``) returns
        at once: the Poller delivers the rest in the background, within
        ``linger`` seconds in all, then releases the fds and reports the
        channel. Otherwise ``close()`` waits while the reader keeps taking
        data, and gives up once it took nothing for ``linger`` seconds. What
        is dropped is logged as a warning and counted in ``undelivered``.
        Frames already read stay readable; ``write()`` raises from now on.
        Then the close callbacks run and the fds are released.
        """
        if self._closed:
            return
        if self._inherited():  # the parent delivers its own copy of the queue
            self._outbox.drop()
        self._before_close()
        outbox = self._outbox
        if outbox.size and outbox.failure is None:
            if self._background_close and self._hand_over():
                return
            if deliver([self]):
                outbox.drop()
        self._closed = True
        self._finish()

    def _hand_over(self) -> bool:
        """Let an agent finish this close; True if one took it."""
        for agent in list(self._close_agents):
            if agent():
                self._closed = self._handed_over = True
                self._end_reading("the channel was closed", None)
                return True
        return False

    def _finish(self) -> None:
        """The end of a close: reading ends, the watchers hear, the fds go."""
        self._handed_over = False
        try:
            self._end_reading("the channel was closed", None)
            self._outbox.announce()
            callbacks, self._close_callbacks = self._close_callbacks, []
            for callback in callbacks:
                callback()
        finally:
            self._release()

    def _inherited(self) -> bool:
        """True in a child forked after this channel was made: it closes its
        copy of the fds only, changing nothing its parent would see."""
        return self._pid != current_pid()

    def _before_close(self) -> None:
        """Called by ``close()`` before anything else (a subclass hook)."""

    def _release(self) -> None:
        """Release the fds, once the close is over (a subclass hook: a
        subclass with its own ``close()`` releases them there instead)."""

    def abort(self) -> None:
        """Close at once: queued output is dropped (and counted in ``undelivered``)."""
        if self._handed_over:
            self.finish_close()
        elif not self._closed:
            self._outbox.drop()
            self.close()

    # -- closing in the background (for the agent that took a close) ---------

    def add_close_agent(self, agent: Callable[[], bool]) -> None:
        """Offer to finish this channel's closes in the background: when
        ``close()`` finds output queued, ``agent()`` is asked, and if it
        returns True, ``close()`` returns at once; the agent then delivers
        with ``flush()`` and ends with ``finish_close()``."""
        self._close_agents.append(agent)

    def remove_close_agent(self, agent: Callable[[], bool]) -> None:
        """Withdraw the offer; does nothing if ``agent`` was not added."""
        with contextlib.suppress(ValueError):
            self._close_agents.remove(agent)

    def finish_close(self) -> None:
        """For the agent of a close: drop what is still queued (counted in
        ``undelivered``: the agent says why), then release the fds and run
        the close callbacks. Does nothing unless an agent took the close."""
        if self._handed_over:
            self._outbox.drop()
            self._finish()

    @property
    def closing(self) -> bool:
        """True while a closed channel's queued output is still being
        delivered in the background (its fds are released after that)."""
        return self._handed_over

    def get_fd(self) -> int:
        """Return the fd to poll for reading; ``-1`` once closed.

        Raises ``NotImplementedError`` if the channel cannot read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be polled for reading")

    def __enter__(self: "_Self") -> "_Self":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- watchers -----------------------------------------------------------

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the channel is closed, before its fd is."""
        self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        with contextlib.suppress(ValueError):
            self._close_callbacks.remove(callback)
