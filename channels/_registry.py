"""The registry: what a Poller watches, in which state, and its selector.

It is the only code that calls the selector's ``register``/``modify``/
``unregister``: everything else changes a record and calls ``sync()``,
which makes the selector agree. It keeps one index of the records it holds
(by channel identity: a closed socket's ``fileno()`` is -1, and epoll
silently forgets a closed fd, so the fd is no key) and small ones for what
the next ``poll()`` must do without waiting.

Lifecycle of a registered channel (``Watched.state``)::

    state        read   watched for writing   reported   held by the Poller
    OPEN         yes*   while output queued   no         yes
    HALF_CLOSED  no     while output queued   yes        while output queued
    CLOSING      no     while output queued   yes        yes, until closed
    DELIVERING   no     while output queued   no         yes, until closed
    CLOSED       once   no                    no         until the next poll
    LOST         once   no                    no         until the next poll
    STALE        never  no                    no         until the next poll
    BROKEN       once   no                    no         until the next poll
    FORGOTTEN    no     no                    -          no
    (* unless paused; once: the frames it had buffered are returned first)

Every change goes through ``move(watched, event)`` and this table, the only
place a report (``ChannelClosed``, ``(b'', channel)`` in ``poll()``) is made:

    state        event           new state     reports
    OPEN         peer closed     HALF_CLOSED   PEER_CLOSED
    OPEN         reset           HALF_CLOSED   RESET
    OPEN         line too long   CLOSING       LINE_TOO_LONG
    OPEN         read failed     FORGOTTEN     FD_LOST
    OPEN         closed          CLOSED        -
    OPEN         close taken     DELIVERING    -
    OPEN         fd closed       LOST          -
    OPEN         fd reused       STALE         -
    OPEN         write failed    BROKEN        -
    DELIVERING   closed          CLOSED        -
    DELIVERING   fd closed       LOST          -
    DELIVERING   fd reused       STALE         -
    CLOSED       report          FORGOTTEN     CLOSED_LOCALLY
    LOST         report          FORGOTTEN     FD_LOST
    STALE        report          FORGOTTEN     FD_LOST
    BROKEN       report          FORGOTTEN     RESET
    HALF_CLOSED  register        OPEN          -
    HALF_CLOSED  idle            FORGOTTEN     -
    HALF_CLOSED  close taken     CLOSING       -
    HALF_CLOSED  closed, fd closed, fd reused  FORGOTTEN  -
    CLOSING      closed, fd closed, fd reused  FORGOTTEN  -
    any          unregister      FORGOTTEN     -

Any other event leaves the state as it is (a second close, an fd found bad
after the close was seen, a failed write of a half-closed channel: its
output is dropped, and the application learns it from its next write).

A half-closed channel is held only while it has output to deliver: with
none, only the channel's own callbacks lead back to its record, so an
application that drops a channel reported closed lets the garbage collector
have it; ``idle``: one that cannot tell of new output is let go at once.

Closing in the background: the registry offers to finish the closes of
channels that can hand them over (``ClosesInBackground``): ``close()`` with
output queued returns at once (``close taken``), the poll loop delivers the
rest within the channel's ``linger`` in all, then finishes the close. One
closed while OPEN is DELIVERING, reported once finished with what it could
not deliver. CLOSING is where the Poller closes a channel itself (a line too
long, reported at once): the next ``poll()`` closes it, so replies to the
lines before the long one are delivered within its ``linger`` too. A record
whose close was taken and that leaves otherwise is finished then
(unregistered: its output delivered first, blocking, as a close would).
"""

import contextlib
import functools
import logging
import selectors
import time
import weakref
from typing import Callable, Dict, List, Optional, Set, Tuple

from ._fds import check_select_limit, current_pid, is_always_ready
from ._outbox import deliver
from ._protocols import ChannelLike
from ._records import (
    Record,
    Server,
    Shape,
    State,
    Wakeup,
    Watched,
    WriteSide,
    record_of,
    shape_of,
)
from .events import ChannelClosed, CloseReason, Collected, Writable

__all__ = ["UNFINISHED", "Collected", "Registry"]

_LOGGER = logging.getLogger("channels.poller")

_OPEN, _HALF, _CLOSING = State.OPEN, State.HALF_CLOSED, State.CLOSING
_DELIVERING = State.DELIVERING
_CLOSED, _LOST, _STALE, _GONE = State.CLOSED, State.LOST, State.STALE, State.FORGOTTEN
_BROKEN = State.BROKEN

_TRANSITIONS: Dict[Tuple[State, str], Tuple[State, Optional[CloseReason]]] = {
    (_OPEN, "peer closed"): (_HALF, CloseReason.PEER_CLOSED),
    (_OPEN, "reset"): (_HALF, CloseReason.RESET),
    (_OPEN, "line too long"): (_CLOSING, CloseReason.LINE_TOO_LONG),
    (_OPEN, "read failed"): (_GONE, CloseReason.FD_LOST),
    (_OPEN, "closed"): (_CLOSED, None),
    (_OPEN, "fd closed"): (_LOST, None),
    (_OPEN, "fd reused"): (_STALE, None),
    (_OPEN, "write failed"): (_BROKEN, None),
    (_OPEN, "close taken"): (_DELIVERING, None),
    (_DELIVERING, "closed"): (_CLOSED, None),
    (_DELIVERING, "fd closed"): (_LOST, None),
    (_DELIVERING, "fd reused"): (_STALE, None),
    (_HALF, "close taken"): (_CLOSING, None),
    (_CLOSED, "report"): (_GONE, CloseReason.CLOSED_LOCALLY),
    (_LOST, "report"): (_GONE, CloseReason.FD_LOST),
    (_STALE, "report"): (_GONE, CloseReason.FD_LOST),
    (_BROKEN, "report"): (_GONE, CloseReason.RESET),
    (_HALF, "register"): (_OPEN, None),
    (_HALF, "idle"): (_GONE, None),
    **{
        (state, event): (_GONE, None)
        for state in (_HALF, _CLOSING)
        for event in ("closed", "fd closed", "fd reused")
    },
    **{(state, "unregister"): (_GONE, None) for state in State if state is not _GONE},
}

_PENDING = frozenset({_CLOSED, _LOST, _STALE, _BROKEN})
UNFINISHED: Set["Registry"] = set()
"""Registries holding a close they took, until it is finished (at exit too)."""

_WRITABLE = frozenset({_OPEN, _HALF, _CLOSING, _DELIVERING})
_FINISHING = frozenset({_CLOSING, _DELIVERING})


class Registry:
    """The selector, the records in it, and their lifecycle."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.pid = current_pid()  # a forked child never touches its (shared) selector
        self.results: List[Collected] = []
        """What the next poll returns; collected here, not in a local list, so
        that what was read before a signal handler raised is not lost."""
        self.channels: Dict[int, Watched] = {}
        """The records held, by channel identity: every state but a half-closed
        one with nothing to deliver, and FORGOTTEN."""
        self.dormant: weakref.WeakValueDictionary[int, Watched] = weakref.WeakValueDictionary()
        """Half-closed records with nothing to deliver, kept alive only by their channel."""
        self.pending: Dict[int, Watched] = {}
        """CLOSED, LOST, STALE and BROKEN records: reported by the next poll."""
        self.unfinished: Dict[int, Watched] = {}
        """OPEN records the next poll reads without waiting (more may wait)."""
        self.closing: Dict[int, Watched] = {}
        """CLOSING and DELIVERING records: the poll loop finishes their close."""
        self.servers: Dict[int, Server] = {}
        """Listening sockets, by identity, selected or not (backing off, at the cap)."""
        self.client_left: Callable[[Server], None] = lambda server: None
        """Called when a client no longer counts against its server's cap."""

    # -- channels -----------------------------------------------------------

    def find(self, channel: object) -> Optional[Watched]:
        """The live record of ``channel``, held or dormant; None if it has none."""
        key = id(channel)
        watched = self.channels.get(key) or self.dormant.get(key)
        return watched if watched is not None and watched.channel is channel else None

    def watch(self, channel: ChannelLike) -> Watched:
        """Register ``channel``; registering it again does nothing (or watches
        its new fd). ``TypeError`` for what is not a channel, ``ValueError``
        for a closed one or an fd that cannot be watched (nothing changes then)."""
        shape = shape_of(channel)
        if not shape.channel_like:
            raise TypeError(
                "register() takes a channel (read, write, close, get_fd, buffering),"
                f" not {type(channel).__name__}"
            )
        fd = channel.get_fd()
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise ValueError(f"cannot register {channel!r}: get_fd() gave {fd!r}, not an open fd")
        known = self.find(channel)
        if known is not None:
            if known.fd == fd and known.state in (_OPEN, _HALF):
                self.move(known, "register")  # (watched again after its end)
                return known
            self.move(known, "unregister")
        return self._add(channel, fd, shape)

    def _add(self, channel: ChannelLike, fd: int, shape: Shape) -> Watched:
        self.evict(fd)
        check_select_limit(self.selector, fd, channel)
        watched = Watched(channel, fd, shape)
        writer = watched.writer
        if writer is not None:
            with contextlib.suppress(NotImplementedError):  # it cannot write: no matter
                watched.write_fd = writer.get_write_fd()
            if watched.write_fd != fd:
                watched.write_side = WriteSide(watched)
        watched.ready = True
        try:
            self.selector.register(fd, selectors.EVENT_READ, watched)
        except PermissionError as exc:
            if not is_always_ready(fd):
                raise ValueError(
                    f"cannot register {channel!r}: fd {fd} cannot be watched: {exc}"
                ) from exc
            # epoll refuses regular files (stdin redirected from a file) and
            # devices like /dev/null, which are always readable anyway: read
            # it every poll() until its end.
            watched.always_readable = True
            self.unfinished[watched.key] = watched
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot register {channel!r}: fd {fd} is not usable: {exc}") from exc
        self.channels[watched.key] = watched
        if watched.notifier is not None:
            watched.on_close = functools.partial(self.move, watched, "closed")
            watched.notifier.add_close_callback(watched.on_close)
        if watched.drains is not None:
            watched.on_drain = functools.partial(self._drained, watched)
            watched.drains.add_drain_callback(watched.on_drain)
        if watched.finisher is not None:
            watched.on_take_close = functools.partial(self._take_close, watched)
            watched.finisher.add_close_agent(watched.on_take_close)
        if writer is not None:
            watched.on_output = functools.partial(self._output_changed, watched)
            writer.add_output_callback(watched.on_output)
            if writer.write_buffer_size:
                self._output_changed(watched, True)
        return watched

    def move(self, watched: Watched, event: str) -> None:
        """Apply ``event`` to the record, as the table in the module docstring says."""
        row = _TRANSITIONS.get((watched.state, event))
        if row is None:
            return
        state, report = row
        watched.state = state
        key = watched.key
        if state is not _OPEN:
            self.unfinished.pop(key, None)
            self._leave_server(watched)
        if state in _PENDING:
            self.pending[key] = watched
        else:
            self.pending.pop(key, None)
        if state in _FINISHING:
            if key not in self.closing:
                self.closing[key] = watched
                self.start_linger(watched)
        elif self.closing.pop(key, None) is not None and not self.closing:
            UNFINISHED.discard(self)
        if watched.taken and state not in _FINISHING:
            # (before letting go: a pipe sink must stay non-blocking meanwhile)
            self._finish_taken(watched, event == "unregister")
        if state is _GONE:
            self._let_go(watched)
        else:
            self.sync(watched)
        if report is not None:
            closer = watched.closer
            self.results.append(
                ChannelClosed(watched.channel, report, 0 if closer is None else closer.undelivered)
            )

    def start_linger(self, watched: Watched) -> None:
        """A close in the background began: it may take the channel's linger."""
        closer = watched.closer
        watched.deadline = time.monotonic() + (0.0 if closer is None else closer.linger)

    def _take_close(self, watched: Watched) -> bool:
        """Called back by a channel closed with output queued: finish it here."""
        if watched.state not in (_OPEN, _HALF, _CLOSING):
            return False
        watched.taken = True
        UNFINISHED.add(self)
        self.move(watched, "close taken")
        return True

    def _finish_taken(self, watched: Watched, deliver_first: bool) -> None:
        """A record whose close was taken leaves before it finished: finish it."""
        watched.taken = False
        finisher = watched.finisher
        if finisher is None:
            return
        if deliver_first and watched.writer is not None:
            deliver([watched.writer])
        finisher.finish_close()

    def pause(self, watched: Watched, paused: bool) -> None:
        """Stop (or resume) reading an OPEN channel; resumed, it is read at once."""
        if watched.paused != paused:
            watched.paused = paused
            if paused:
                self.unfinished.pop(watched.key, None)
            elif watched.state is _OPEN:
                self.unfinished[watched.key] = watched
            self.sync(watched)

    def _output_changed(self, watched: Watched, pending: bool) -> None:
        """Called back by a channel whose queued output appeared or is gone."""
        if watched.writing != pending and watched.state in _WRITABLE:
            watched.writing = pending
            self.sync(watched)

    def _drained(self, watched: Watched) -> None:
        """Called back by a channel writable again after a refused write."""
        if watched.state in (_OPEN, _HALF):
            self.results.append(Writable(watched.channel))

    def sync(self, watched: Watched) -> None:
        """Make the selector and the index agree with the record's state."""
        state = watched.state
        watched.ready = ready = state is _OPEN and not watched.paused
        read = selectors.EVENT_READ if ready and not watched.always_readable else 0
        write = selectors.EVENT_WRITE if watched.writing and state in _WRITABLE else 0
        try:
            if watched.write_side is None:
                self._select(watched.fd, read | write, watched)
            else:
                self._select(watched.fd, read, watched)
                self._select(watched.write_fd, write, watched.write_side)
        except (OSError, ValueError) as exc:  # an fd went bad behind our back
            _LOGGER.warning("fd %d of %r is not usable: %s", watched.fd, watched.channel, exc)
            self.move(watched, "fd closed")
            return
        key = watched.key
        if state is _HALF and not write:
            if watched.on_output is None:  # it could not tell us of more output
                self.move(watched, "idle")
                return
            self.channels.pop(key, None)
            self.dormant[key] = watched
        else:
            self.channels[key] = watched
            self.dormant.pop(key, None)

    def _let_go(self, watched: Watched) -> None:
        """FORGOTTEN: out of the selector and every index; callbacks removed."""
        watched.ready = False
        key = watched.key
        if self.channels.get(key) is watched:
            del self.channels[key]
        if self.dormant.get(key) is watched:
            del self.dormant[key]
        self.unselect(watched.fd, watched)
        if watched.write_side is not None:
            self.unselect(watched.write_fd, watched.write_side)
        if watched.on_close is not None and watched.notifier is not None:
            watched.notifier.remove_close_callback(watched.on_close)
        watched.on_close = None
        if watched.on_output is not None and watched.writer is not None:
            watched.writer.remove_output_callback(watched.on_output)
        watched.on_output = None
        if watched.on_drain is not None and watched.drains is not None:
            watched.drains.remove_drain_callback(watched.on_drain)
        watched.on_drain = None
        if watched.on_take_close is not None and watched.finisher is not None:
            watched.finisher.remove_close_agent(watched.on_take_close)
        watched.on_take_close = None

    def _leave_server(self, watched: Watched) -> None:
        server, watched.server = watched.server, None
        if server is not None:
            server.clients -= 1
            self.client_left(server)

    # -- servers ------------------------------------------------------------

    def add_server(self, server: Server) -> None:
        """Keep ``server`` (the Acceptor decides when it is selected)."""
        self.evict(server.fd)
        check_select_limit(self.selector, server.fd, server.sock)
        self.servers[id(server.sock)] = server

    def select_server(self, server: Server, wanted: bool) -> None:
        """Have the server's fd selected, or not."""
        if server.active:
            self._select(server.fd, selectors.EVENT_READ if wanted else 0, server)

    def drop_server(self, server: Server, why: str = "") -> None:
        """Stop watching ``server`` for good (its socket is left as it is)."""
        if why:
            _LOGGER.warning("dropping server %r: %s", server.sock, why)
        server.active = False
        if self.servers.get(id(server.sock)) is server:
            del self.servers[id(server.sock)]
        self.unselect(server.fd, server)

    # -- the selector -------------------------------------------------------

    def _select(self, fd: int, events: int, record: Record) -> None:
        """Have ``fd`` selected for ``events`` (0: not at all) on behalf of ``record``."""
        if self.pid != current_pid():
            return
        key = self.selector.get_map().get(fd)
        selected = key is not None and key.data is record
        if events and selected:
            if key is not None and key.events != events:
                self.selector.modify(fd, events, record)
        elif events:
            self.evict(fd)
            self.selector.register(fd, events, record)
        elif selected:
            self.selector.unregister(fd)

    def unselect(self, fd: int, record: Record) -> None:
        """Remove ``fd`` from the selector if it is still there for ``record``."""
        key = self.selector.get_map().get(fd)
        if key is not None and key.data is record and self.pid == current_pid():
            self.selector.unregister(fd)

    def register_wakeup(self, wakeup: Wakeup) -> None:
        """Select the wakeup socket."""
        self.selector.register(wakeup.sock.fileno(), selectors.EVENT_READ, wakeup)

    def evict(self, fd: int) -> None:
        """Make room for ``fd``: whatever holds that number closed it behind our back."""
        key = self.selector.get_map().get(fd)
        if key is None:
            return
        record = record_of(key)
        if self.pid == current_pid():
            self.selector.unregister(fd)
        if isinstance(record, Server):
            self.drop_server(record, f"its fd {fd} was reused")
        elif isinstance(record, (Watched, WriteSide)):
            watched = record if isinstance(record, Watched) else record.watched
            _LOGGER.warning(
                "fd %d was reused; %r lost its fd and is reported closed", fd, watched.channel
            )
            self.move(watched, "fd reused")

    def close(self) -> None:
        """Forget every record and close the selector (in a forked child, its
        copy only: the parent's registrations stay)."""
        for watched in [*self.channels.values(), *self.dormant.values()]:
            self.move(watched, "unregister")
        self.servers.clear()
        UNFINISHED.discard(self)
        try:
            self.selector.close()
        except OSError:  # a kqueue is not inherited: the child's fd is no kqueue
            if self.pid == current_pid():
                raise
