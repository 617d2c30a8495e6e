"""The shapes of channels that a Poller and applications rely on.

Typing only: no IO, no state. ``ChannelLike`` is the 0.2 interface that
every channel has. The others are optional abilities a Poller uses when a
channel has them (``channels._records.shape_of`` works out which, once per
class): ``CloseNotifier`` (tell me when you close), ``QueuedWriter`` (you
hold output for me to flush), ``Lingering`` (how long to wait for your
reader, how much you dropped, close without waiting) and ``FrameSource``
(hand me all your frames at once), ``DrainNotifier`` (tell me when you
can take writes again), ``ClosesInBackground`` (let me finish your close).
"""

from typing import Callable, List, Optional, Protocol, Tuple, Union, runtime_checkable

__all__ = [
    "AGAIN",
    "DRAINED",
    "MORE",
    "BytesLike",
    "ChannelLike",
    "CloseNotifier",
    "ClosesInBackground",
    "DrainNotifier",
    "FrameSource",
    "Lingering",
    "QueuedWriter",
]

BytesLike = Union[bytes, bytearray, memoryview]
"""What ``write()`` accepts as a chunk (any C-contiguous buffer works at run time)."""

DRAINED = 0
"""``read_frames()``: the OS had nothing more; wait until the fd is readable."""
MORE = 1
"""``read_frames()``: it read its ``max_bytes``; more may be waiting in the OS."""
AGAIN = 2
"""``read_frames()``: reading ended, or the framer found an error: call again
now to learn which (the frames before it came first)."""


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


class Watcher(Protocol):
    """The one watcher a ``Channel`` keeps in a slot (``Channel.set_watcher``):
    what the four kinds of callbacks would be told, for a fifth of their
    memory. A ``Poller`` is one; anyone else adds callbacks."""

    def closed(self) -> None:
        """The channel was closed (told again after a raise cut it short)."""
        ...

    def drained(self) -> None:
        """The queued output drained to the low-water mark after a refused write."""
        ...

    def take_close(self) -> bool:
        """Finish this close in the background (see ``ClosesInBackground``)?"""
        ...

    def output_changed(self, pending: bool) -> None:
        """Output got queued (True), or all of it is gone (False)."""
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


@runtime_checkable
class DrainNotifier(Protocol):
    """A channel that tells when it is writable again after refusing a write.

    A ``Poller`` turns the callback into a ``Writable`` event, and makes the
    ``poll()`` that sees it return.
    """

    def add_drain_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when, after a refused write, the queued output
        drained to the low-water mark."""
        ...

    def remove_drain_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        ...


@runtime_checkable
class Lingering(Protocol):
    """A channel whose close waits for its reader, and can be cut short.

    A ``Poller`` that closes such a channel itself (``close_all()``, a line
    too long) delivers its queued output within ``linger`` first, then calls
    ``abort()`` if the reader stalled, and reports ``undelivered``.
    """

    @property
    def linger(self) -> float:
        """Seconds a close waits for a reader that takes nothing."""
        ...

    @property
    def undelivered(self) -> int:
        """Bytes accepted by ``write()`` that were dropped."""
        ...

    def abort(self) -> None:
        """Close at once, dropping queued output (counted in ``undelivered``)."""
        ...


@runtime_checkable
class FrameSource(Protocol):
    """A channel that hands out every frame it has at once.

    ``read_frames(max_bytes)`` is ``read()`` called until it returns ``b''``
    (reading at most ``max_bytes`` from the OS), without a call per frame; the
    second item says what may follow (``DRAINED``, ``MORE`` or ``AGAIN``). It
    raises as ``read()`` does once no frame is left. A ``Poller`` reads such a
    channel with it; ``Channel`` implements it (unless a subclass overrides
    ``read()``, which is then what the Poller calls).
    """

    def read_frames(self, max_bytes: int) -> Tuple[List[bytes], int]:
        """Every complete frame available now, oldest first, and what may follow."""
        ...


@runtime_checkable
class ClosesInBackground(Protocol):
    """A channel whose ``close()`` can leave the delivery of its queued
    output to whoever watches it, instead of waiting for its reader.

    ``close()`` with output queued asks the agents in turn; the first that
    returns True took charge: ``close()`` returns at once (the channel is
    closed for the application), and the agent sends the rest with
    ``flush()`` as the fd can take it, then calls ``finish_close()``.
    """

    def add_close_agent(self, agent: Callable[[], bool]) -> None:
        """Offer to finish this channel's closes: ``agent()`` returns True
        when it takes one."""
        ...

    def remove_close_agent(self, agent: Callable[[], bool]) -> None:
        """Withdraw the offer; does nothing if ``agent`` was not added."""
        ...

    def finish_close(self) -> None:
        """For the agent of a close: drop what is still queued (counted in
        ``undelivered``), release the fds and run the close callbacks."""
        ...
