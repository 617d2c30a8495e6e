"""The Poller's bookkeeping: one small record per thing its selector watches.

A record is the ``data`` of a selector key: ``Watched`` for a channel (and
``WriteSide`` for a channel's sink, when that is another fd), ``Server`` for
a listening socket, ``Wakeup`` for the socketpair ``wakeup()`` writes to. The
fd helpers tell whether an fd is open, what it refers to, and whether it is a
regular file. No IO besides ``fstat``/``select`` probes; no policy.
"""

import os
import select
import selectors
import socket
import stat
import sys
from typing import Callable, Dict, NamedTuple, Optional, Tuple, Union

from ._base import Channel, ChannelLike, CloseNotifier, QueuedWriter, frame_reader

__all__ = [
    "Identity",
    "Record",
    "Server",
    "Wakeup",
    "Watched",
    "WriteSide",
    "fd_is_open",
    "identity_of",
    "is_regular_file",
    "record_of",
]

Identity = Optional[Tuple[int, int]]


def identity_of(fd: int) -> Identity:
    """What the fd refers to (device, inode), to notice it was closed or reused."""
    if sys.platform == "win32":
        return None  # Windows sockets are not fds to os.fstat
    else:  # (an else: for mypy --platform win32)
        try:
            info = os.fstat(fd)
        except OSError:
            return None
        return (info.st_dev, info.st_ino)


class Watched:
    """A registered channel, as the selector's ``data`` and in the identity map."""

    __slots__ = (
        "always_readable",
        "channel",
        "fd",
        "identity",
        "lost",
        "on_close",
        "on_output",
        "paused",
        "read_frames",
        "reading",
        "server",
        "stale",
        "write_fd",
        "write_side",
        "writing",
    )

    def __init__(self, channel: ChannelLike, fd: int, write_fd: int) -> None:
        self.channel = channel
        self.fd = fd
        # Watched for writing while output is queued: the same fd (a socket)
        # or another one (a pipe's sink), which then has a record of its own.
        self.write_fd = write_fd
        self.write_side = WriteSide(self) if write_fd != fd else None
        self.identity = identity_of(fd)
        self.on_close: Optional[Callable[[], None]] = None
        self.on_output: Optional[Callable[[bool], None]] = None
        # False once its end was reported: it is then only drained.
        self.reading = True
        # pause_reading(): not read until resume_reading().
        self.paused = False
        # A regular file, never selected: read by every poll() while reading.
        self.always_readable = False
        # True while it has queued output: the fd is watched for writing too.
        self.writing = False
        # Its fd went bad behind our back (closed, or reused: stale).
        self.lost = False
        # Its fd number was taken over by another file: never read it again.
        self.stale = False
        # Reads all frames at once: see Channel._read_frames.
        self.read_frames = frame_reader(channel)
        # The server it was accepted from, while it counts against max_clients.
        self.server: Optional[Server] = None

    @property
    def events(self) -> int:
        return (selectors.EVENT_READ if self.reading and not self.paused else 0) | (
            selectors.EVENT_WRITE if self.writing else 0
        )


class WriteSide:
    """A channel's sink fd, when it is not the fd it reads: selector ``data``."""

    __slots__ = ("watched",)

    def __init__(self, watched: Watched) -> None:
        self.watched = watched


class Server:
    """A listening socket, as the selector's ``data``."""

    __slots__ = ("backing_off", "clients", "fd", "identity", "max_clients", "resume_at", "sock")

    def __init__(self, sock: socket.socket, max_clients: Optional[int]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.identity = identity_of(self.fd)
        self.max_clients = max_clients
        self.clients = 0
        self.resume_at = 0.0  # not watched before this (back-off)
        self.backing_off = False

    def wanted(self, now: float) -> bool:
        """Should the server's fd be watched now?"""
        below_cap = self.max_clients is None or self.clients < self.max_clients
        return below_cap and now >= self.resume_at


class Wakeup:
    """The read end of the socketpair ``wakeup()`` writes to."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


Record = Union[Watched, WriteSide, Server, Wakeup]


class Shape(NamedTuple):
    """Which of the channel protocols a class implements."""

    channel_like: bool
    queued_writer: bool
    close_notifier: bool


_SHAPES: Dict[type, Shape] = {}


def shape_of(channel: object) -> Shape:
    """The protocols ``channel`` implements, worked out once per class:
    ``isinstance`` on a runtime protocol inspects every member each time
    (hundreds of microseconds on Python 3.11), too slow per accepted client."""
    cls = type(channel)
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = Shape(
            isinstance(channel, ChannelLike),
            isinstance(channel, QueuedWriter),
            isinstance(channel, CloseNotifier),
        )
        if isinstance(channel, Channel):  # a plain object may gain members later
            _SHAPES[cls] = shape
    return shape


def record_of(key: selectors.SelectorKey) -> Record:
    """Narrow a selector key's ``data`` (typed ``Any``) to what we put there."""
    data = key.data
    assert isinstance(data, (Watched, WriteSide, Server, Wakeup))
    return data


def is_regular_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def fd_is_open(fd: int) -> bool:
    try:
        if sys.platform == "win32":  # Windows sockets are not fds to os.fstat
            select.select([fd], [], [], 0)
        else:
            os.fstat(fd)
    except (OSError, ValueError):
        return False
    return True
