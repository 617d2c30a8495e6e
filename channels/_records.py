"""What a Poller keeps per watched thing: one small record each.

A record is the ``data`` of a selector key: ``Watched`` for a channel (and
``WriteSide`` for a channel's sink, when that is another fd), ``Server`` for
a listening socket, ``Wakeup`` for the socketpair ``wakeup()`` writes to.
``Shape`` says which optional abilities (``channels._protocols``) a channel's
class has, worked out once per class; ``Watched`` gives each as a typed
property, and keeps what few records set in a shared ``SeldomSet``. Its
states are drawn in ``channels._lifecycle``. No IO here.
"""

import contextlib
import enum
import selectors
import socket
from typing import Any, Dict, List, NamedTuple, Optional, Protocol, Tuple, Union, cast

from ._base import Channel
from ._fds import Identity, identity_of
from ._frames_into import FramesInto, FramesReader
from ._protocols import (
    ChannelLike,
    CloseNotifier,
    ClosesInBackground,
    DrainNotifier,
    FrameSource,
    Lingering,
    QueuedWriter,
)
from ._rare import RareField, Shareable

__all__ = [
    "FramesInto",
    "Record",
    "Server",
    "Shape",
    "State",
    "Wakeup",
    "Watched",
    "WriteSide",
    "record_of",
    "shape_of",
]


class State(enum.Enum):
    """Where a registered channel is in its lifecycle (see ``channels._registry``)."""

    OPEN = "open"
    HALF_CLOSED = "half-closed"
    CLOSING = "closing"
    DELIVERING = "delivering"
    CLOSED = "closed"
    LOST = "lost"
    STALE = "stale"
    BROKEN = "broken"
    FORGOTTEN = "forgotten"


class Shape(NamedTuple):
    """Which of the channel protocols a class implements."""

    channel_like: bool
    queued_writer: bool
    close_notifier: bool
    lingering: bool
    frame_source: bool
    drain_notifier: bool
    closes_in_background: bool
    native: bool  # a Channel of this library


_SHAPES: Dict[type, Shape] = {}


def shape_of(channel: object) -> Shape:
    """The protocols ``channel`` implements, worked out once per class:
    ``isinstance`` on a runtime protocol inspects every member each time
    (hundreds of microseconds on Python 3.11), too slow per accepted client.

    A ``Channel`` subclass that overrides ``read()`` is no ``FrameSource``:
    the Poller reads it through its own ``read()``.
    """
    cls = type(channel)
    shape = _SHAPES.get(cls)
    if shape is None:
        if isinstance(channel, Channel):
            source = type(channel).read is Channel.read
        else:
            source = isinstance(channel, FrameSource)
        shape = Shape(
            isinstance(channel, ChannelLike),
            isinstance(channel, QueuedWriter),
            isinstance(channel, CloseNotifier),
            isinstance(channel, Lingering),
            source,
            isinstance(channel, DrainNotifier),
            # (a Channel subclass with its own close() never calls its agents)
            isinstance(channel, ClosesInBackground),
            isinstance(channel, Channel),
        )
        if isinstance(channel, Channel):  # a plain object may gain members later
            _SHAPES[cls] = shape
    return shape


class Owner(Protocol):
    """What a record tells of its channel's news: the Registry."""

    def move(self, watched: "Watched", event: str) -> None:
        """Apply a lifecycle event."""
        ...

    def drained(self, watched: "Watched") -> None:
        """Report the channel writable again."""
        ...

    def take_close(self, watched: "Watched") -> bool:
        """Finish the channel's close in the background (False: it cannot)."""
        ...

    def output_changed(self, watched: "Watched", pending: bool) -> None:
        """Watch the write fd while output is queued."""
        ...


class Kind(NamedTuple):
    """What the records of one registry and one channel class share."""

    owner: Owner
    shape: Shape


class SeldomSet(Shareable):
    """What few records set (a pipe's sink, a pause, a file, a close in the
    background): one read-only instance shared by the others (``channels._rare``)."""

    __slots__ = (
        "always_readable",
        "deadline",
        "frames_into",
        "paused",
        "taken",
        "write_side",
    )

    def __init__(self, shared: bool) -> None:
        self.frames_into: Optional[FramesInto] = None
        self.paused = False
        self.always_readable = False
        self.deadline = 0.0
        self.taken = False
        self.write_side: Optional[WriteSide] = None
        self.shared = shared


_NOTHING_SET = SeldomSet(True)


class Watched:
    """A registered channel: the selector's ``data`` and the registry's entry."""

    __slots__ = (
        "__weakref__",
        "channel",
        "fd",
        "identity",
        "kind",
        "ready",
        "seldom",
        "server",
        "state",
        "writing",
    )

    # Seldom set: kept in a SeldomSet, shared by the records that set none.
    paused = RareField[bool]("seldom")  # pause_reading(): not read till resume_reading()
    always_readable = RareField[bool]("seldom")  # a regular file: read by every poll()
    deadline = RareField[float]("seldom")  # CLOSING, DELIVERING: when to give up on its reader
    taken = RareField[bool]("seldom")  # its close() left the delivery to us: we finish it
    write_side = RareField[Optional["WriteSide"]]("seldom")  # its sink's record, if another fd
    frames_into = RareField[Optional[FramesInto]]("seldom")  # what reads it, if no Channel does

    def __init__(self, channel: ChannelLike, fd: int, kind: Kind) -> None:
        self.channel = channel
        # Its registry and its abilities (one object per registry and class).
        self.kind = kind
        self.fd = fd
        self.identity = identity_of(fd)
        self.state = State.OPEN
        # OPEN and not paused: what the poll loop tests before reading it.
        self.ready = False
        # True while it has queued output: its write fd is watched too.
        self.writing = False
        self.seldom = _NOTHING_SET
        if not (kind.shape.native and kind.shape.frame_source):
            self.frames_into = FramesInto(channel, kind.shape.frame_source)
        if self.writer is not None:
            with contextlib.suppress(NotImplementedError):  # it cannot write: no matter
                write_fd = self.writer.get_write_fd()
                if write_fd != fd:
                    self.write_side = WriteSide(self, write_fd)
        # The server it was accepted from, while it counts against max_clients.
        self.server: Optional[Server] = None

    @property
    def owner(self) -> Owner:
        """Its registry."""
        return self.kind.owner

    @property
    def shape(self) -> Shape:
        """Which of the channel protocols its channel implements."""
        return self.kind.shape

    @property
    def source(self) -> FramesReader:
        """What it is read through (no bound method kept: one per read instead)."""
        frames = self.seldom.frames_into
        return cast(Channel, self.channel) if frames is None else frames  # (None: a Channel)

    @property
    def key(self) -> int:
        """Its channel's identity: what it is indexed by, where it is (an int
        made when asked: none is kept per record)."""
        return id(self.channel)

    @property
    def write_fd(self) -> int:
        """The fd watched for writing while output is queued: the one it
        reads (a socket), or its sink's (a pipe's)."""
        side = self.write_side
        return self.fd if side is None else side.fd

    # The channel as each protocol it implements (None: not that one). The
    # shape vouches for each cast: these are the only ones, and no record
    # keeps a field per protocol (memory per idle channel).

    @property
    def native(self) -> Optional[Channel]:
        """A ``Channel`` of this library: it takes this record as its watcher."""
        return cast(Channel, self.channel) if self.kind.shape.native else None

    @property
    def writer(self) -> Optional[QueuedWriter]:
        """The channel, if it queues output."""
        return cast(QueuedWriter, self.channel) if self.kind.shape.queued_writer else None

    @property
    def notifier(self) -> Optional[CloseNotifier]:
        """The channel, if it calls close callbacks."""
        return cast(CloseNotifier, self.channel) if self.kind.shape.close_notifier else None

    @property
    def closer(self) -> Optional[Lingering]:
        """The channel, if it lingers on close and can abort."""
        return cast(Lingering, self.channel) if self.kind.shape.lingering else None

    @property
    def drains(self) -> Optional[DrainNotifier]:
        """The channel, if it calls drain callbacks."""
        return cast(DrainNotifier, self.channel) if self.kind.shape.drain_notifier else None

    @property
    def finisher(self) -> Optional[ClosesInBackground]:
        """The channel, if it lets an agent finish its close."""
        return (
            cast(ClosesInBackground, self.channel) if self.kind.shape.closes_in_background else None
        )

    # The callbacks the channel gets: bound methods, one small object each,
    # equal to any other of the same record (so each can be removed by a new
    # one; no per-record closure is kept).

    def closed(self) -> None:
        """The channel was closed (by the application, or its close ended)."""
        self.owner.move(self, "closed")

    def drained(self) -> None:
        """The channel's queue drained after a refused write."""
        self.owner.drained(self)

    def take_close(self) -> bool:
        """The channel asks its Poller to finish its close in the background."""
        return self.owner.take_close(self)

    def output_changed(self, pending: bool) -> None:
        """Output got queued (True) or is all gone (False)."""
        self.owner.output_changed(self, pending)

    def hook(self, again: bool) -> None:
        """Give the channel the Poller's callbacks (``again``: this may have
        been cut short by a raise, some may be there already: none is added
        twice). A ``Channel`` with no watcher yet gets this record as its
        watcher instead: one slot, no callback objects."""
        native = self.native
        if native is not None and native.watcher in (None, self):
            if again:  # (so that what set_watcher() does after its stores is done)
                native.set_watcher(None)
            native.set_watcher(self)
            return
        if again:
            self._remove_callbacks()
        if self.notifier is not None:
            self.notifier.add_close_callback(self.closed)
        if self.drains is not None:
            self.drains.add_drain_callback(self.drained)
        if self.finisher is not None:
            self.finisher.add_close_agent(self.take_close)
        if self.writer is not None:
            self.writer.add_output_callback(self.output_changed)

    def unhook(self) -> None:
        """Remove every callback the Poller gave the channel."""
        native = self.native
        if native is not None and native.watcher is self:
            native.set_watcher(None)
        self._remove_callbacks()

    def _remove_callbacks(self) -> None:
        if self.notifier is not None:
            self.notifier.remove_close_callback(self.closed)
        if self.writer is not None:
            self.writer.remove_output_callback(self.output_changed)
        if self.drains is not None:
            self.drains.remove_drain_callback(self.drained)
        if self.finisher is not None:
            self.finisher.remove_close_agent(self.take_close)

    def __repr__(self) -> str:
        return f"<Watched {self.state.value} fd={self.fd} {self.channel!r}>"


class WriteSide:
    """A channel's sink fd, when it is not the fd it reads: selector ``data``."""

    __slots__ = ("fd", "watched")

    def __init__(self, watched: Watched, fd: int) -> None:
        self.watched = watched
        self.fd = fd


class Server:
    """A listening socket, as the selector's ``data``, and the client being
    accepted from it (``channels._accept``: kept here, so that what a raise
    cut short is finished, not leaked or reported twice)."""

    __slots__ = (
        "active",
        "backing_off",
        "client",
        "clients",
        "fd",
        "fresh",
        "identity",
        "kind",
        "max_clients",
        "own_accept",
        "pending",
        "resume_at",
        "sock",
    )

    def __init__(self, sock: socket.socket, max_clients: Optional[int]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.identity: Identity = identity_of(self.fd)
        self.max_clients = max_clients
        self.clients = 0
        self.resume_at = 0.0  # backing off: not watched before this
        self.backing_off = False
        # False once dropped (removed, its fd lost or reused).
        self.active = True
        # What accepted sockets are made of: family, type, protocol.
        self.kind = (sock.family, sock.type, sock.proto)
        # A subclass's accept() (an SSLSocket's wraps the client): called as it is.
        self.own_accept = type(sock).accept is not socket.socket.accept
        # The client being accepted: (fd, address) as accept(2) gave them (or
        # what an own accept() gave); the socket object that owns the fd once
        # made; its channel.
        self.pending: List[Tuple[Union[int, socket.socket], Any]] = []
        self.fresh: Optional[socket.socket] = None
        self.client: Optional[ChannelLike] = None


class Wakeup:
    """The read end of the socketpair ``wakeup()`` writes to."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def drain(self) -> None:
        """Read every wakeup byte waiting."""
        try:
            while self.sock.recv(4096):
                pass
        except BlockingIOError:
            pass


Record = Union[Watched, WriteSide, Server, Wakeup]


def record_of(key: selectors.SelectorKey) -> Record:
    """Narrow a selector key's ``data`` (typed ``Any``) to what we put there."""
    data = key.data
    assert isinstance(data, (Watched, WriteSide, Server, Wakeup))
    return data
