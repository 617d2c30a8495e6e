"""The channel base class and the shapes the Poller relies on.

A channel reads without blocking and hands what it read to its framer (see
``channels.buffering``), which decides what one ``read()`` returns. Writing
never loses data: what the OS does not take at once is queued, in order, and
delivered by ``flush()``, by a ``Poller`` during ``poll()``, by later writes,
or by ``close()``. The queue holds memoryviews of the caller's data (copied
only when the caller could still change it), so nothing is re-sliced.

OS errors go through one translator per direction (``_receive`` for reads,
``Channel._push_or_fail`` for writes): an ``OSError`` on an open channel means
that end is gone, and becomes ``EndpointClosedException`` chained to it.

This module imports nothing POSIX-only, so ``import channels`` works on
Windows. A channel knows nothing of pollers: whoever watches it may ask to be
called back when it closes or when it starts or stops holding queued output.
"""

import abc
import collections
import contextlib
import logging
import select
import sys
import time
from typing import (
    Callable,
    Deque,
    Iterable,
    List,
    Optional,
    Protocol,
    Set,
    Tuple,
    TypeVar,
    Union,
    cast,
    runtime_checkable,
)

from ._errors import EndpointClosedException, LineTooLong, WriteBufferFullError
from .buffering import BufferingArg, BulkFramer, OneByOne, as_buffering

__all__ = [
    "DEFAULT_HIGH_WATER",
    "DEFAULT_LINGER",
    "BytesLike",
    "Channel",
    "ChannelLike",
    "CloseNotifier",
    "QueuedWriter",
]

_LOGGER = logging.getLogger("channels.channel")

BytesLike = Union[bytes, bytearray, memoryview]
"""What ``write()`` accepts as a chunk (any C-contiguous buffer works at run time)."""

READ_SIZE = 64 * 1024
"""Bytes asked of the OS per read syscall."""

MAX_READ_PER_CALL = 256 * 1024
"""A ``read()`` stops asking the OS for more once it got this much, so one
call returns in bounded time even from a peer that never stops sending."""

DEFAULT_HIGH_WATER = 16 * 1024 * 1024
"""Queued output a channel accepts before ``write()`` raises
``WriteBufferFullError``: 16 MiB, enough to absorb bursts on a fast link,
small enough that thousands of slow peers cannot exhaust memory."""

DEFAULT_LINGER = 5.0
"""Seconds ``close()`` waits for a reader that makes no progress before it
drops the output still queued."""

# What Channel._read_frames() tells its caller about what may follow the frames.
DRAINED = 0
"""The OS had nothing more: wait until the fd is readable again."""
MORE = 1
"""The call read its ``max_bytes``: more may be waiting in the OS already."""
AGAIN = 2
"""Reading ended, or the framer found an error: call again now to learn it."""

IOV_BATCH = 64
"""Queued chunks handed to one ``sendmsg``/``writev`` call at most."""


@runtime_checkable
class ChannelLike(Protocol):
    """What a ``Poller`` and applications rely on: the 0.2 channel interface.

    Any object with these members can be registered with a ``Poller``; it
    need not inherit from ``Channel``.
    """

    @property
    def buffering(self) -> str:
        """``'line'`` for line-framed channels, ``'bytes'`` otherwise."""
        ...

    def read(self) -> bytes:
        """Return the next frame without blocking (``b''`` when none)."""
        ...

    def write(self, *chunks: bytes) -> None:
        """Write the chunks in order, as one stream."""
        ...

    def close(self) -> None:
        """Close the channel; calling it again does nothing."""
        ...

    def get_fd(self) -> int:
        """Return the fd to poll for reading."""
        ...


@runtime_checkable
class CloseNotifier(Protocol):
    """A channel that calls back its watchers when ``close()`` is called.

    The callbacks run before the channel releases its fd, so a watcher can
    still unregister that fd from an epoll/kqueue selector. ``Channel``
    implements this; a custom channel without it is still reported closed by
    a ``Poller`` once its fd reports EOF or an error.
    """

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the channel is closed."""
        ...

    def remove_close_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        ...


@runtime_checkable
class QueuedWriter(Protocol):
    """A channel that queues what the OS does not take, for someone to flush.

    A ``Poller`` watches such a channel for writability exactly while
    ``write_buffer_size`` is not zero, and calls ``flush(0)`` when it is
    writable. The output callbacks tell it when that changes.
    """

    @property
    def write_buffer_size(self) -> int:
        """Bytes written but not yet taken by the OS."""
        ...

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver queued output; True once all of it was taken by the OS."""
        ...

    def get_write_fd(self) -> int:
        """The fd to watch for writability (the socket, or a pipe's sink)."""
        ...

    def add_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when output gets queued, ``callback(False)``
        when the queue is empty again."""
        ...

    def remove_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        ...


def as_views(chunks: Iterable[object]) -> List[memoryview]:
    """Check every chunk before anything is written, so a bad one writes nothing."""
    views: List[memoryview] = []
    for chunk in chunks:
        if isinstance(chunk, str):
            raise TypeError("write() takes bytes-like chunks, not str (encode it first)")
        try:
            # Anything with the buffer protocol goes; memoryview() checks that.
            views.append(memoryview(cast(BytesLike, chunk)).cast("B"))
        except TypeError as exc:
            raise TypeError(f"write() takes bytes-like chunks, not {type(chunk).__name__}") from exc
    return views


def wait_writable(fd: int, timeout: Optional[float]) -> None:
    """Wait until ``fd`` can take more data (or failed, which the next send
    reports), at most ``timeout`` seconds (``None``: no limit)."""
    if sys.platform != "win32":
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
    else:  # Windows has no poll(); select() takes any socket there.
        select.select([], [fd], [fd], timeout)


def receive(recv: Callable[[int], bytes], at_eof: str, size: int = READ_SIZE) -> bytes:
    """One read syscall of at most ``size`` bytes: the bytes there are,
    ``b''`` if none yet.

    The one translator of read errors: an ``OSError`` means that end is gone.
    """
    try:
        data = recv(size)
    except BlockingIOError:
        return b""
    except OSError as exc:
        raise EndpointClosedException(f"reading failed: {exc}") from exc
    if not data:
        raise EndpointClosedException(at_eof)
    return data


_NO_OUTPUT: Deque[memoryview] = collections.deque(maxlen=0)
"""The queue of a channel with nothing queued: shared, never appended to."""

_Self = TypeVar("_Self", bound="Channel")
_Read = TypeVar("_Read", bound=Callable[..., bytes])


def drains_on_short_read(read: _Read) -> _Read:
    """Mark a ``_read()`` whose short result means the OS had no more then
    (a plain ``recv``/``read`` of a stream): the fast path stops there instead
    of reading again to hear ``EAGAIN``. A subclass that overrides the marked
    ``_read()`` is not marked."""
    _DRAINING_READS.add(read)
    return read


_DRAINING_READS: Set[Callable[..., bytes]] = set()
"""The ``_read()`` functions marked by ``drains_on_short_read``."""


FrameReader = Callable[[int], Tuple[List[bytes], int]]
"""``Channel._read_frames``: ``max_bytes`` in, ``(frames, DRAINED/MORE/AGAIN)`` out."""


def frame_reader(channel: object) -> Optional[FrameReader]:
    """The channel's bulk read, if it is a ``Channel`` whose ``read()`` is the
    base class's own (a subclass that overrides ``read()`` is read with it)."""
    if isinstance(channel, Channel) and type(channel).read is Channel.read:
        # The package's own fast path between its modules, not a user's API.
        return channel._read_frames  # pyright: ignore[reportPrivateUsage]
    return None


def _check_high_water(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"high_water must be an int (bytes), not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"high_water must be at least 1 byte, not {value}")
    return value


def _check_linger(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"linger must be a number of seconds, not {type(value).__name__}")
    if not value >= 0:
        raise ValueError(f"linger must be 0 or more seconds, not {value}")
    return float(value)


class Channel(abc.ABC):
    """Base class of channels: framing and zero-loss writes for free.

    A subclass implements ``_read()`` (return the bytes available now, ``b''``
    when none; raise ``EndpointClosedException`` at end of stream), ``close()``
    (calling ``super().close()`` first, then releasing its resources) and, if
    it can be polled, ``get_fd()`` — the 0.2 subclass contract. To get queued
    writes it implements ``_send(queue)`` and ``_write_fd()``; a 0.2 subclass
    that overrides ``write()`` keeps its own.

    ``read()`` returns the next frame of the ``buffering`` strategy: every
    byte available (``'bytes'``) or one complete line (``'line'``).

    ``high_water`` bounds the queued output (see ``write()``); ``linger``
    bounds how long ``close()`` waits for a reader that makes no progress.
    """

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        strategy = as_buffering(buffering)
        self._buffering = strategy.name
        self._framer = strategy.new_framer()
        # What the next _read() asks of the OS: less than READ_SIZE when
        # _fill() is near its limit (a 0.2 subclass's _read() may ignore it).
        self._read_size = READ_SIZE
        self._short_read_drains = type(self)._read in _DRAINING_READS
        framer = self._framer
        # (hasattr, not isinstance: a runtime protocol check is slow per client)
        bulk = hasattr(framer, "take_frames") and hasattr(framer, "error_waiting")
        self._bulk = cast(BulkFramer, framer) if bulk else OneByOne(framer)
        self._high_water = _check_high_water(high_water)
        self._linger = _check_linger(linger)
        self._closed = False
        # Why reading ended (peer closed, OS error, closed here); None while open.
        self._end: Optional[str] = None
        self._end_cause: Optional[BaseException] = None
        self._close_callbacks: List[Callable[[], None]] = []
        # Output the OS has not taken yet: views, oldest first, and their size.
        self._queue: Deque[memoryview] = _NO_OUTPUT
        self._queued = 0
        self._undelivered = 0
        # Why writing became impossible (the OS error), once it did.
        self._write_failure: Optional[OSError] = None
        self._output_callbacks: List[Callable[[bool], None]] = []
        self._announced_output = False

    @property
    def buffering(self) -> str:
        """The framing strategy's name: ``'line'``, ``'bytes'``, or a custom one."""
        return self._buffering

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def write_buffer_size(self) -> int:
        """Bytes accepted by ``write()`` that the OS has not taken yet."""
        return self._queued

    @property
    def undelivered(self) -> int:
        """Bytes accepted by ``write()`` that were dropped: the connection broke,
        or ``close()`` gave up on a stalled reader, or ``abort()`` was called."""
        return self._undelivered

    @property
    def high_water(self) -> int:
        """The most queued output ``write()`` lets build up, in bytes."""
        return self._high_water

    @high_water.setter
    def high_water(self, value: int) -> None:
        self._high_water = _check_high_water(value)

    @property
    def linger(self) -> float:
        """Seconds ``close()`` waits for a reader that makes no progress."""
        return self._linger

    @linger.setter
    def linger(self, value: float) -> None:
        self._linger = _check_linger(value)

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
                self._fill(MAX_READ_PER_CALL)
                frame = framer.next_frame()
                if frame is not None:
                    return frame
                if self._end is None:
                    return b""
        except LineTooLong as exc:
            raise self._line_too_long(exc) from None
        raise self._ended()

    def _read_frames(self, max_bytes: int) -> Tuple[List[bytes], int]:
        """Every complete frame available now, and what may follow them.

        The ``Poller``'s fast path, equivalent to calling ``read()`` until it
        returns ``b''`` (reading at most ``max_bytes`` from the OS), but with
        no Python call per frame. The second item is ``DRAINED``, ``MORE`` or
        ``AGAIN``. Raises as ``read()`` does once there are no frames left.
        """
        bulk = self._bulk
        if self._end is not None:
            state = AGAIN
        elif self._fill(max_bytes, self._short_read_drains):
            state = DRAINED
        else:
            state = MORE
        try:
            frames = bulk.take_frames()
        except LineTooLong as exc:
            raise self._line_too_long(exc) from None
        if self._end is not None or bulk.error_waiting:
            if not frames:
                if self._end is None:  # the framer's error: take_frames() raises it
                    return self._read_frames(max_bytes)
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

    def _fill(self, max_bytes: int, short_read_drains: bool = False) -> bool:
        """Feed the framer until the OS has nothing more now, or reading ended,
        or ``max_bytes`` were fed; True if the OS had nothing more.

        Reading on until the OS has nothing left is what lets one call see both
        a final partial line and the close behind it. ``short_read_drains``:
        a read that got less than it asked for had all there was (true of a
        stream socket or a pipe), which saves the read that would say so.
        """
        framer = self._framer
        total = 0
        while total < max_bytes:
            # (not min(): a builtin call costs more than the test, per read)
            size = READ_SIZE if max_bytes - total > READ_SIZE else max_bytes - total
            self._read_size = size
            try:
                data = self._read()
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
            self._end = why
            self._end_cause = cause
            self._framer.feed_eof()

    @abc.abstractmethod
    def _read(self) -> bytes:
        """Return the bytes the OS has now (``b''`` if none); raise
        ``EndpointClosedException`` at end of stream."""

    # -- writing ------------------------------------------------------------

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
        size = sum(len(view) for view in views)
        if not size:
            return
        if self._queued + size > self._high_water and (self._queued or not self._sink_blocks()):
            raise WriteBufferFullError(
                f"write of {size} bytes to {self!r} refused: {self._queued} bytes are"
                f" queued and the high-water mark is {self._high_water}; nothing of"
                " this write was queued (let the channel drain, then write again)",
                size=size,
                queued=self._queued,
                high_water=self._high_water,
            )
        queue = self._queue
        if queue is _NO_OUTPUT:
            queue = self._queue = collections.deque[memoryview]()
        added = 0
        for view in views:
            if view:
                queue.append(view)
                added += 1
        self._queued += size
        self._push_or_fail("write to")
        # What is still queued of this call must not change if the caller
        # reuses a mutable buffer: copy that part (and only that part).
        for index in range(1, min(added, len(queue)) + 1):
            view = queue[-index]
            if not isinstance(view.obj, bytes):
                queue[-index] = memoryview(bytes(view))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Deliver queued output, waiting at most ``timeout`` seconds.

        ``None`` waits until everything is delivered; zero or less only sends
        what the OS takes now. Returns True when nothing is left queued, False
        when the timeout passed first. Raises ``EndpointClosedException`` (with
        ``undelivered``) when the other end is gone or the channel was closed.
        """
        fd = self._check_writable("flush of")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._push_or_fail("flush of")
            if not self._queued:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            wait_writable(fd, left)

    def get_write_fd(self) -> int:
        """The fd whose writability lets queued output go: the socket's fd, or a
        ``PipeChannel``'s sink. ``NotImplementedError`` for a channel that
        cannot write."""
        return self._write_fd()

    def _check_writable(self, action: str) -> int:
        """The fd to wait on for writing, or the reason writing is impossible."""
        fd = self._write_fd()  # NotImplementedError for a channel that cannot write
        if self._write_failure is not None:
            raise EndpointClosedException(
                f"{action} {self!r}: the connection broke ({self._write_failure});"
                f" {self._undelivered} bytes written before were not delivered",
                undelivered=self._undelivered,
            ) from self._write_failure
        if self._closed:
            raise EndpointClosedException(f"{action} {self!r}: the channel was closed")
        return fd

    def _push_or_fail(self, action: str) -> None:
        """Send what the OS takes now; an OSError means writing is over."""
        try:
            self._push()
        except OSError as exc:
            self._write_failure = exc
            self._drop_queue()
            raise EndpointClosedException(
                f"{action} {self!r} failed: {exc}; {self._undelivered} bytes were not delivered",
                undelivered=self._undelivered,
            ) from exc
        finally:
            self._announce_output()

    def _push(self) -> None:
        queue = self._queue
        while queue:
            try:
                sent = self._send(queue)
            except BlockingIOError:
                return
            if not sent:
                return
            self._queued -= sent
            while sent:
                head = queue[0]
                if sent < len(head):
                    queue[0] = head[sent:]
                    break
                sent -= len(head)
                queue.popleft()
        self._queue = _NO_OUTPUT  # all sent: no deque kept by an idle channel

    def _drop_queue(self) -> int:
        dropped = self._queued
        self._undelivered += dropped
        self._queue.clear()
        self._queued = 0
        return dropped

    def _announce_output(self) -> None:
        """Tell the output callbacks when queued output appeared or drained."""
        pending = self._queued > 0
        if pending != self._announced_output:
            self._announced_output = pending
            for callback in list(self._output_callbacks):
                callback(pending)

    def _send(self, queue: Deque[memoryview]) -> int:
        """Send from the head of ``queue`` (one or more views); return the count."""
        raise NotImplementedError(f"{type(self).__name__} cannot write")

    def _write_fd(self) -> int:
        """The fd to wait on until the OS takes more output."""
        raise NotImplementedError(f"{type(self).__name__} cannot write")

    def _sink_blocks(self) -> bool:
        """True when the OS takes every write whole (a sink in blocking mode)."""
        return False

    # -- closing ------------------------------------------------------------

    @abc.abstractmethod
    def close(self) -> None:
        """Close the channel; calling it again does nothing.

        Queued output is delivered first: ``close()`` waits while the reader
        keeps taking data, and gives up once it took nothing for ``linger``
        seconds; what is dropped then is logged as a warning and counted in
        ``undelivered``. Frames already read stay readable. Then the close
        callbacks run. Subclasses call this first, then release their fds.
        """
        if self._closed:
            return
        if self._queue and self._write_failure is None:
            self._deliver_before_close()
        self._closed = True
        self._end_reading("the channel was closed", None)
        self._announce_output()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback()

    def abort(self) -> None:
        """Close at once: queued output is dropped (and counted in ``undelivered``)."""
        if not self._closed:
            self._drop_queue()
        self.close()

    def _deliver_before_close(self) -> None:
        fd = self._write_fd()
        stalled_since = time.monotonic()
        while True:
            before = self._queued
            lost_before = self._undelivered
            try:
                self._push_or_fail("close of")
            except EndpointClosedException as exc:
                dropped = self._undelivered - lost_before
                _LOGGER.warning(
                    "closing %r: %d bytes not delivered: %s", self, dropped, exc.__cause__
                )
                return
            if not self._queued:
                return
            now = time.monotonic()
            if self._queued < before:
                stalled_since = now
            left = stalled_since + self._linger - now
            if left <= 0:
                break
            wait_writable(fd, left)
        dropped = self._drop_queue()
        _LOGGER.warning(
            "closing %r: the reader took nothing for %.1f s; %d queued bytes dropped",
            self,
            self._linger,
            dropped,
        )

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

    def add_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when output gets queued and ``callback(False)``
        when all of it was delivered (or dropped)."""
        self._output_callbacks.append(callback)

    def remove_output_callback(self, callback: Callable[[bool], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        with contextlib.suppress(ValueError):
            self._output_callbacks.remove(callback)
