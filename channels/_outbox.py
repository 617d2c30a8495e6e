"""Queued output: what a channel accepted but the OS has not taken yet.

``Outbox`` is a channel's write queue: memoryviews of the caller's data,
oldest first, sent from the head by the channel's send function and trimmed
by what the OS took. It counts what it dropped (``undelivered``), remembers
why writing became impossible (``failure``), and tells its watchers when
output appears and when it is gone, so a Poller watches the fd for
writability exactly in between.

``deliver()`` is the one linger loop: it delivers the queued output of one
channel (``Channel.close()``) or of many at once (``Poller.close_all()``),
each for as long as its reader keeps taking data, and gives up on a reader
that took nothing for its ``linger``. It waits with no fd of its own, so it
works when the process is out of fds, and an fd closed behind our back ends
that channel's delivery instead of the whole loop.
"""

import collections
import logging
import time
from typing import Callable, Deque, Dict, Iterable, List, Optional, Sequence, Tuple, TypeVar, cast

from ._errors import (
    BAD_CHANNEL_ERRORS,
    EndpointClosedException,
    WriteBufferFullError,
    not_from_the_os,
)
from ._fds import FdWaiter
from ._protocols import BytesLike, Lingering, QueuedWriter, Watcher

__all__ = ["IDLE_OUTBOX", "Outbox", "as_views", "deliver", "without"]

_LOGGER = logging.getLogger("channels.channel")

SendInto = Callable[[Deque[memoryview], List[int]], None]
"""Sends from the head of the queue (one or more views) and appends the
count the OS took to the log: one C call for both (``list.extend(map(...))``),
so a signal handler cannot lose the count and have the bytes sent again."""

_NO_OUTPUT: Deque[memoryview] = collections.deque(maxlen=0)
"""The queue of an outbox with nothing queued: shared, never appended to."""

_NO_SENDS: List[int] = []
"""The send log of an outbox that never sent: shared, replaced by ``push()``."""


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


class Outbox:
    """A channel's queued output, its losses and its watchers."""

    __slots__ = (
        "_announced",
        "_callbacks",
        "_drain_callbacks",
        "_queue",
        "accepted",
        "drain_at",
        "failure",
        "sent",
        "size",
        "undelivered",
        "watcher",
    )

    def __init__(self, watcher: Optional[Watcher] = None) -> None:
        # Views, oldest first; idle outboxes share one empty deque.
        self._queue: Deque[memoryview] = _NO_OUTPUT
        self.size = 0
        """Bytes queued."""
        self.accepted = 0
        """Bytes ever queued (or sent at once): what ``write()`` took in all."""
        self.sent: List[int] = _NO_SENDS
        """What the OS took, per send, not yet trimmed off the queue (a list
        of its own from the first send on)."""
        self.undelivered = 0
        """Bytes queued once and then dropped."""
        self.failure: Optional[OSError] = None
        """Why writing became impossible, once it did."""
        # (tuples, replaced on a change: none while nobody watches)
        self._callbacks: Tuple[Callable[[bool], None], ...] = ()
        self._announced: Optional[bool] = False  # (None: being told)
        self.drain_at = -1
        """After a refused write: the size at or below which the watchers hear
        that the queue drained (-1: nobody waits for that)."""
        self._drain_callbacks: Tuple[Callable[[], None], ...] = ()
        self.watcher = watcher
        """The channel's watcher: told as the callbacks are, before them."""

    def add(self, views: List[memoryview], size: int) -> None:
        """Queue ``views`` (``size`` bytes in all): all of them, or, if a
        signal handler raises in here, none."""
        queue = self._queue
        if queue is _NO_OUTPUT:
            queue = self._queue = collections.deque()
        views = [view for view in views if view]
        # No call from here to the end: the views and the counts go together.
        queue += views
        self.size += size
        self.accepted += size

    def keep_copies(self, added: int) -> None:
        """Copy what is still queued of the last ``added`` views that a caller
        could change (anything but ``bytes``), and only that part."""
        queue = self._queue
        for index in range(1, min(added, len(queue)) + 1):
            view = queue[-index]
            if not isinstance(view.obj, bytes):
                queue[-index] = memoryview(bytes(view))

    def push(self, send_into: SendInto) -> None:
        """Send what the OS takes now. An ``OSError`` but ``EAGAIN`` propagates."""
        queue = self._queue
        sent = self.sent
        if queue is _NO_OUTPUT and not sent:  # nothing queued (the idle outbox too)
            return
        if sent is _NO_SENDS:
            sent = self.sent = []
        self.trim()
        while queue:
            try:
                send_into(queue, sent)
            except BlockingIOError:
                return
            took = sent[-1]
            self.trim()
            if not took:
                return
        self._queue = _NO_OUTPUT  # all sent: an idle channel keeps no deque

    def trim(self) -> None:
        """Take what the OS took (the ``sent`` log) off the queue.

        A view at a time, each step with no call inside: a signal handler
        (CPython runs one only at calls and loop jumps) finds the log and the
        queue agreeing, so no byte is trimmed twice or sent twice."""
        sent = self.sent
        queue = self._queue
        while sent:
            took = sent[0]
            if not took:
                del sent[0]
                continue
            head = queue[0]
            length = head.nbytes
            if took >= length:
                del queue[0]
                sent[0] = took - length
                self.size -= length
            else:
                queue[0] = head[took:]
                sent[0] = 0
                self.size -= took

    def check(self, action: str, owner: object) -> None:
        """Raise ``EndpointClosedException`` (chained, with ``undelivered``)
        if writing became impossible; ``action`` and ``owner`` name the call
        and the channel (formatted only then: this is on every write)."""
        if self.failure is not None:
            raise EndpointClosedException(
                f"{action} {owner!r}: the connection broke ({self.failure});"
                f" {self.undelivered} bytes written before were not delivered",
                undelivered=self.undelivered,
            ) from self.failure

    def full(self, size: int, high_water: int, owner: object) -> WriteBufferFullError:
        """The error for a write of ``size`` bytes that would pass ``high_water``."""
        return WriteBufferFullError(
            f"write of {size} bytes to {owner!r} refused: {self.size} bytes are"
            f" queued and the high-water mark is {high_water}; nothing of"
            " this write was queued (let the channel drain, then write again)",
            size=size,
            queued=self.size,
            high_water=high_water,
        )

    def push_or_raise(self, send: SendInto, action: str, owner: object) -> None:
        """``push()``; an ``OSError`` means writing is over: the queue is
        dropped and ``EndpointClosedException`` raised (``action`` and
        ``owner`` name the call and the channel). The watchers hear of the
        change either way."""
        try:
            self.push(send)
        except OSError as exc:
            if exc.errno is None:  # a signal handler's, not the OS's: it propagates
                raise
            self.fail(exc)
            raise EndpointClosedException(
                f"{action} {owner!r} failed: {exc}; {self.undelivered} bytes were not delivered",
                undelivered=self.undelivered,
            ) from exc
        finally:
            self.announce()

    def settle_end(self, cause: Optional[BaseException], send: SendInto) -> Optional[BaseException]:
        """The peer's stream ended (``cause``: the read error, None at a plain
        end): did the connection break both ways? A read error says so; a
        plain end may be a half-close, unless a write failed already or fails
        now. The queue is dropped, and counted, as soon as that is known.
        Returns why the connection broke, or None (``cause`` if not an OSError)."""
        if isinstance(cause, OSError):
            self.fail(cause)
        elif cause is None and self.size:
            try:
                self.push(send)
            except OSError as exc:
                if exc.errno is None:  # a signal handler's: it propagates
                    raise
                self.fail(exc)
        self.announce()
        return cause if cause is not None else self.failure

    def drop(self) -> int:
        """Drop everything queued, counting it as undelivered; return the count."""
        if self._queue is _NO_OUTPUT and not self.sent:  # nothing queued (the idle outbox too)
            return 0
        self.trim()
        dropped = self.size
        # No call from here to the return: the counts move with the bytes.
        self.undelivered += dropped
        self._queue = _NO_OUTPUT
        self.size = 0
        return dropped

    def fail(self, failure: OSError) -> int:
        """Writing became impossible: remember why, drop the queue (return its size)."""
        if self.failure is None:
            self.failure = failure
        self.drain_at = -1  # no writing to resume: the end is reported instead
        return self.drop()

    def announce(self) -> None:
        """Tell the watchers when queued output appeared or is gone, and when
        it drained to the low-water mark after a refused write."""
        # Unknown while the watchers hear it: a signal handler raising in
        # between makes them hear it again next time, never not at all.
        pending = self.size > 0
        if pending is not self._announced:
            self._announced = None
            if self.watcher is not None:
                self.watcher.output_changed(pending)
            for callback in self._callbacks:
                callback(pending)
            self._announced = pending
        if self.drain_at >= 0 and self.size <= self.drain_at:
            if self.watcher is not None:
                self.watcher.drained()
            for drained in self._drain_callbacks:
                drained()
            self.drain_at = -1

    @property
    def watched(self) -> bool:
        """True while someone will deliver the queue (an output callback is set)."""
        return self.watcher is not None or bool(self._callbacks)

    def add_callback(self, callback: Callable[[bool], None]) -> None:
        """Call ``callback(True)`` when output gets queued, ``callback(False)``
        when all of it was delivered or dropped."""
        self._callbacks += (callback,)

    def remove_callback(self, callback: Callable[[bool], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        self._callbacks = without(self._callbacks, callback)

    def add_drain_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the queue drained after a refused write."""
        self._drain_callbacks += (callback,)

    def remove_drain_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        self._drain_callbacks = without(self._drain_callbacks, callback)


class _IdleOutbox(Outbox):
    """The outbox of every channel that never queued output nor had an
    output callback: shared, so it must never change."""

    __slots__ = ("_made",)

    def __init__(self) -> None:
        object.__setattr__(self, "_made", False)
        super().__init__()
        self._made = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_made", False):
            raise AssertionError(
                f"the shared idle outbox was to change ({name} = {value!r}): a channel"
                " must make its own first (WritingSide._own_outbox)"
            )
        object.__setattr__(self, name, value)


IDLE_OUTBOX: Outbox = _IdleOutbox()
"""The outbox of a channel until it queues output or gets an output or drain
callback: a channel that never writes keeps none of its own (120 bytes)."""


_Item = TypeVar("_Item")


def without(items: Tuple[_Item, ...], item: _Item) -> Tuple[_Item, ...]:
    """``items`` but the first one equal to ``item`` (all if there is none)."""
    if item not in items:
        return items
    at = items.index(item)
    return items[:at] + items[at + 1 :]


_Writer = TypeVar("_Writer", bound=QueuedWriter)


class _Delivery:
    """One writer ``deliver()`` works for: its linger, and since when its
    reader took nothing."""

    __slots__ = ("linger", "stalled_since", "total", "writer")

    def __init__(self, writer: QueuedWriter, now: float, total: bool) -> None:
        self.writer = writer
        # (one runtime-protocol check per writer, not per wait)
        self.linger = writer.linger if isinstance(writer, Lingering) else 0.0
        self.stalled_since = now
        self.total = total

    def expiry(self) -> float:
        return self.stalled_since + self.linger

    def step(self, bad: bool) -> bool:
        """Its fd can take data: send; True when it is done (or its fd is bad)."""
        before = self.writer.write_buffer_size
        if _flush_now(self.writer) or bad:
            return True
        if self.writer.write_buffer_size < before and not self.total:
            self.stalled_since = time.monotonic()
        return False


def deliver(writers: Sequence[_Writer], *, total: bool = False) -> List[_Writer]:
    """Deliver the queued output of every writer at once.

    Each is given as long as its reader keeps taking data, and up to its
    ``linger`` seconds (0 if it has none) while the reader takes nothing;
    with ``total``, up to its ``linger`` in all, from the start.
    Returns the writers given up on, with their output still queued: the
    caller drops or aborts it (a warning says how much). A writer whose peer
    is gone or whose fd was closed is done (its own ``flush()`` counts what it
    lost; one that does not raise for a bad fd is given up on).
    """
    waiter = FdWaiter()
    now = time.monotonic()
    by_fd: Dict[int, List[_Delivery]] = {}  # (two channels may share a write fd)
    for writer in writers:
        if not writer.write_buffer_size:
            continue
        try:
            fd = writer.get_write_fd()
        except NotImplementedError:
            continue
        if fd not in by_fd:
            waiter.add(fd)
        by_fd.setdefault(fd, []).append(_Delivery(writer, now, total))
    gave_up: List[QueuedWriter] = []
    while by_fd:
        soonest = min(each.expiry() for group in by_fd.values() for each in group)
        left = soonest - time.monotonic()
        for fd, bad in waiter.wait(left if left > 0 else 0.0):
            for each in list(by_fd.get(fd, ())):
                if each.step(bad):
                    by_fd[fd].remove(each)
                    if bad and each.writer.write_buffer_size:
                        gave_up.append(each.writer)
        now = time.monotonic()
        for fd, group in list(by_fd.items()):
            for each in [each for each in group if each.expiry() <= now]:
                group.remove(each)
                gave_up.append(each.writer)
                _LOGGER.warning(
                    "closing %r: the reader took %s for %.1f s; %d queued bytes dropped",
                    each.writer,
                    "not all" if each.total else "nothing",
                    each.linger,
                    each.writer.write_buffer_size,
                )
            if not group:
                del by_fd[fd]
                waiter.remove(fd)
    return [writer for writer in writers if any(writer is lost for lost in gave_up)]


def _flush_now(writer: QueuedWriter) -> bool:
    """``flush(0)``; True when nothing is left to deliver (or nothing can be)."""
    try:
        return writer.flush(0)
    except EndpointClosedException as exc:
        _LOGGER.warning(
            "closing %r: %d bytes not delivered: %s",
            writer,
            exc.undelivered,
            exc.__cause__ or exc,
        )
    except BAD_CHANNEL_ERRORS as exc:
        if not_from_the_os(exc):
            raise
        _LOGGER.exception("flush() of %r failed while closing", writer)
    return True
