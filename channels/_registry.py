"""The registry: what a Poller watches, in which state, and its selector.

It is the only code that calls the selector's ``register``/``modify``/
``unregister``: everything else changes a record and calls ``sync()``,
which makes the selector agree. It keeps one index of the records it holds
(``channels._held``) and small ones for what the next ``poll()`` must do
without waiting.

The lifecycle of a registered channel, and the table every change goes
through, are in ``channels._lifecycle``. A raise from a signal handler that
cuts a change short is finished by the next ``settle()`` (its reports made
once), as are the selector calls it cut short (``channels._selecting``).
"""

import logging
import selectors
import time
from collections import OrderedDict
from typing import Callable, Dict, List, NoReturn, Optional, Set, Tuple

from ._errors import not_from_the_os
from ._fds import check_select_limit, current_pid, is_always_ready
from ._held import HeldRecords
from ._lifecycle import (
    BROKEN,
    CLOSED,
    CLOSING,
    DELIVERING,
    GONE,
    HALF,
    LOST,
    OPEN,
    STALE,
    TRANSITIONS,
)
from ._outbox import deliver
from ._protocols import ChannelLike
from ._records import (
    Kind,
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
from ._selecting import forget_fd, key_of, select_fd, unselect_fd
from .events import Batches, ChannelClosed, CloseReason, Held, Writable

__all__ = ["UNFINISHED", "Registry"]

_LOGGER = logging.getLogger("channels.poller")

_PENDING = frozenset({CLOSED, LOST, STALE, BROKEN})
UNFINISHED: Set["Registry"] = set()
"""Registries holding a close they took, until it is finished (at exit too)."""

_WRITABLE = frozenset({OPEN, HALF, CLOSING, DELIVERING})
_FINISHING = frozenset({CLOSING, DELIVERING})


class Registry:
    """The selector, the records in it, and their lifecycle."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.selector = selector
        self.pid = current_pid()  # a forked child never touches its (shared) selector
        # Channels (by identity) with frames in results: not read again till handed out.
        self.backlog: Set[int] = set()
        self.batches: Batches = []  # the rest of a round being handed out
        self.results: List[Held] = []
        """What the next poll returns; collected here, not in a local list, so
        that what was read before a signal handler raised is not lost."""
        # Records held (every state but FORGOTTEN), dormant ones weakly.
        self.held = HeldRecords()
        # What a raise cut short, finished by the next such call or settle():
        # moves (but those under way, _depth), registrations, selector calls.
        self.moving: Dict[int, Tuple[Watched, State, Optional[CloseReason], str]] = {}
        self._depth = 0
        self.adding: Dict[int, Watched] = {}
        self.unsettled: Dict[int, Watched] = {}
        self.arriving: Dict[int, Server] = {}  # with a client being accepted (_accept)
        self.pending: Dict[int, Watched] = {}  # CLOSED, LOST, STALE, BROKEN: reported next
        self.unfinished: OrderedDict[int, Watched] = OrderedDict()  # OPEN, read first, in turn
        self.busy: Set[int] = set()  # channels whose last read gave a call's worth or more
        self.held_back: Dict[int, Watched] = {}  # busy, input known: not selected (_input)
        self.holding = True  # (False while poll_batches() reads: it hands out all)
        self.closing: Dict[int, Watched] = {}  # CLOSING, DELIVERING: the loop finishes them
        self.servers: Dict[int, Server] = {}  # by identity, selected or not (backing off, cap)
        # Told when a client no longer counts against its server's cap.
        self.client_left: Callable[[Server], None] = lambda server: None
        self._kinds: Dict[Shape, Kind] = {}  # (what records of one class share)

    # -- channels -----------------------------------------------------------

    def find(self, channel: object) -> Optional[Watched]:
        """The live record of ``channel``, held or dormant; None if it has none."""
        return self.held.find(channel, self)

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
        if self.adding:
            self.finish_adding()
        known = self.find(channel)
        if known is not None:
            if known.fd == fd and known.state in (OPEN, HALF):
                self.move(known, "register")  # (watched again after its end)
                return known
            self.move(known, "unregister")
        return self._add(channel, fd, shape)

    def _add(self, channel: ChannelLike, fd: int, shape: Shape) -> Watched:
        self.evict(fd)
        check_select_limit(self.selector, fd, channel)
        kind = self._kinds.get(shape)
        if kind is None:
            kind = self._kinds[shape] = Kind(self, shape)
        watched = Watched(channel, fd, kind)
        watched.ready = True
        self.adding[watched.key] = watched  # (a raise from here: finish_adding() ends it)
        try:
            self._select(fd, selectors.EVENT_READ, watched)
        except PermissionError as exc:
            if not_from_the_os(exc) or not is_always_ready(fd):
                _not_added(self.adding, watched, exc, "cannot be watched")
            # epoll refuses regular files (stdin redirected from a file) and
            # devices like /dev/null, which are always readable anyway: read
            # it every poll() until its end.
            watched.always_readable = True
            self.unfinished[watched.key] = watched
        except (OSError, ValueError) as exc:
            _not_added(self.adding, watched, exc, "is not usable")
        self._join(watched, False)
        return watched

    def _join(self, watched: Watched, again: bool) -> None:
        """Index and hook a new, selected record (again: after a raise)."""
        self.held.records[watched] = watched
        watched.hook(again)
        self.held.hold(watched)  # (hooked: a Channel leads back to it now)
        writer = watched.writer
        if writer is not None and writer.write_buffer_size:
            self.output_changed(watched, True)
        self.adding.pop(watched.key, None)

    def finish_adding(self) -> None:
        """Finish the registrations a raise cut short."""
        for watched in list(self.adding.values()):
            if watched.state is OPEN:
                self.sync(watched)
                self._join(watched, True)
            else:  # (unregistered meanwhile)
                self.adding.pop(watched.key, None)

    def move(self, watched: Watched, event: str) -> None:
        """Apply ``event`` to the record, as the table in the module docstring says."""
        if self.moving and not self._depth:  # (a raise cut one short)
            self.finish_moves()
        row = TRANSITIONS.get((watched.state, event))
        if row is None:
            return
        self.moving[watched.key] = (watched, row[0], row[1], event)
        watched.state = row[0]
        self._depth += 1
        try:
            self._finish_move(watched, row[0], row[1], event)
        finally:
            self._depth -= 1

    def finish_moves(self) -> None:
        """Finish the moves a raise cut short."""
        self._depth += 1
        try:
            for args in list(self.moving.values()):
                self._finish_move(*args)
        finally:
            self._depth -= 1

    def _finish_move(
        self, watched: Watched, state: State, report: Optional[CloseReason], event: str
    ) -> None:
        """Everything a move does after the new state is set; doing it again
        changes nothing, but for the report, which is made once."""
        key = watched.key
        if state is not OPEN:
            self.unfinished.pop(key, None)
            self.busy.discard(key)
            self.held_back.pop(key, None)
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
        if state is GONE:
            self._let_go(watched)
        else:
            self.sync(watched)
        closer = watched.closer
        made = (
            (ChannelClosed(watched.channel, report, 0 if closer is None else closer.undelivered),)
            if report is not None
            else ()
        )
        # No call between the report and the end of the move.
        self.results += made
        self.moving.pop(key, None)

    def start_linger(self, watched: Watched) -> None:
        """A close in the background began: it may take the channel's linger."""
        closer = watched.closer
        watched.deadline = time.monotonic() + (0.0 if closer is None else closer.linger)

    def take_close(self, watched: Watched) -> bool:
        """Called back by a channel closed with output queued: finish it here."""
        if watched.state not in (OPEN, HALF, CLOSING):
            return False
        watched.taken = True
        UNFINISHED.add(self)
        self.move(watched, "close taken")
        return True

    def _finish_taken(self, watched: Watched, deliver_first: bool) -> None:
        """A record whose close was taken leaves before it finished: finish it
        (taken until then: a raise in here leaves it for the next try)."""
        finisher = watched.finisher
        if finisher is not None:
            if deliver_first and watched.writer is not None:
                deliver([watched.writer])
            finisher.finish_close()
        watched.taken = False

    def pause(self, watched: Watched, paused: bool) -> None:
        """Stop (or resume) reading an OPEN channel; resumed, it is read at once."""
        if watched.paused != paused:
            cut_short = watched.key in self.unsettled
            self.unsettled[watched.key] = watched  # (a raise in here: settle() syncs)
            watched.paused = paused
            if paused:
                self.unfinished.pop(watched.key, None)
            elif watched.state is OPEN:
                self.unfinished[watched.key] = watched
            self.sync(watched, cut_short)

    def output_changed(self, watched: Watched, pending: bool) -> None:
        """Called back by a channel whose queued output appeared or is gone."""
        if watched.writing != pending and watched.state in _WRITABLE:
            cut_short = watched.key in self.unsettled
            self.unsettled[watched.key] = watched  # (a raise in sync(): settle() syncs)
            watched.writing = pending
            self.sync(watched, cut_short)

    def drained(self, watched: Watched) -> None:
        """Called back by a channel writable again after a refused write."""
        if watched.state in (OPEN, HALF):
            self.results.append(Writable(watched.channel))

    def sync(self, watched: Watched, cut_short: Optional[bool] = None) -> None:
        """Make the selector and the index agree with the record's state. One an
        earlier raise left unsettled stays so: ``settle()`` redoes it from scratch."""
        if cut_short is None:  # (the map may say done what the kernel's set lacks)
            cut_short = watched.key in self.unsettled
        self.unsettled[watched.key] = watched  # (until done: a raise leaves it to settle())
        self._sync(watched)
        if not cut_short:
            self.unsettled.pop(watched.key, None)

    def _sync(self, watched: Watched) -> None:
        state = watched.state
        watched.ready = ready = state is OPEN and not watched.paused
        unselected = watched.always_readable or watched.key in self.held_back
        read = selectors.EVENT_READ if ready and not unselected else 0
        write = selectors.EVENT_WRITE if watched.writing and state in _WRITABLE else 0
        try:
            if watched.write_side is None:
                self._select(watched.fd, read | write, watched)
            else:
                self._select(watched.fd, read, watched)
                self._select(watched.write_fd, write, watched.write_side)
        except (OSError, ValueError) as exc:  # an fd went bad behind our back
            if not_from_the_os(exc):
                raise
            _LOGGER.warning("fd %d of %r is not usable: %s", watched.fd, watched.channel, exc)
            self.move(watched, "fd closed")
            return
        if state is HALF and not write:
            if watched.writer is None:  # it could not tell us of more output
                self.move(watched, "idle")
                return
            self.held.rest(watched)
        else:
            self.held.hold(watched)

    def _let_go(self, watched: Watched) -> None:
        """FORGOTTEN: out of the selector and every index; callbacks removed."""
        watched.ready = False
        self.held.let_go(watched)
        self.unselect(watched.fd, watched)
        if watched.write_side is not None:
            self.unselect(watched.write_fd, watched.write_side)
        watched.unhook()

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
        if self.pid == current_pid():
            select_fd(self.selector, fd, events, record, self.evict)

    def unselect(self, fd: int, record: Record) -> None:
        """Remove ``fd`` from the selector if it is still there for ``record``."""
        if self.pid == current_pid():
            unselect_fd(self.selector, fd, record)

    def settle(self) -> None:
        """Redo the moves, registrations and selector calls a raise cut short;
        the selector calls of each from scratch (see ``_selecting``)."""
        cut_short = [*self.unsettled.values(), *self.adding.values()]
        cut_short += [watched for watched, *_ in self.moving.values()]
        self.finish_moves()
        self.finish_adding()
        for watched in cut_short:
            self.unsettled[watched.key] = watched  # (until it is redone)
            forget_fd(self.selector, watched.fd, watched)
            forget_fd(self.selector, watched.write_fd, watched.write_side)
            if watched.state is GONE:
                self.unsettled.pop(watched.key, None)
            else:
                self.sync(watched, cut_short=False)

    def register_wakeup(self, wakeup: Wakeup) -> None:
        """Select the wakeup socket."""
        self.selector.register(wakeup.sock.fileno(), selectors.EVENT_READ, wakeup)

    def evict(self, fd: int) -> None:
        """Make room for ``fd``: whatever holds that number closed it behind our back."""
        key = key_of(self.selector, fd)
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
        held = [*self.adding.values(), *self.held.everything()]
        for watched in {id(watched): watched for watched in held}.values():
            self.move(watched, "unregister")
        self.servers.clear()
        UNFINISHED.discard(self)
        try:
            self.selector.close()
        except OSError:  # a kqueue is not inherited: the child's fd is no kqueue
            if self.pid == current_pid():
                raise


def _not_added(adding: Dict[int, Watched], watched: Watched, exc: Exception, why: str) -> NoReturn:
    """Raise a handler's exception as it is (``finish_adding()`` goes on),
    else a ``ValueError`` naming the channel (no record is left)."""
    if not_from_the_os(exc):
        raise exc
    del adding[watched.key]
    raise ValueError(f"cannot register {watched.channel!r}: fd {watched.fd} {why}: {exc}") from exc
