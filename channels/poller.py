"""The Poller: waits on many channels and servers at once, on ``selectors``.

Its rooms: ``_registry`` (what is watched, the lifecycle table, the only
selector calls), ``_audit`` (fds closed behind our back), ``_accept``
(clients, back-off, ``max_clients``), ``_closing`` (reports and closes);
this module: the public API and the poll loop.

The loop: wait on the selector (not at all when there is news already), read
the ready channels in turn while less than a call's worth waits
(``channels._turns``) through their ``read_frames()`` (the frames of one read
go into the results as one list) or, for a channel without it, through
``read()`` until ``b''``; flush the channels that can take output; accept
clients; then report the channels that closed. A channel that used up its
read budget is read again by the next ``poll()`` without waiting: the rest
may sit in its framer already, where the selector cannot see it. Results are
collected on the registry, not in a local list: if a signal handler raises
halfway, what was already read is returned by the next ``poll()``.
"""

import functools
import logging
import selectors
import socket
import sys
import time
from typing import Callable, List, Optional

from . import _checks
from ._accept import ACCEPT_BACKOFF, MAX_ACCEPTS_PER_POLL, Acceptor
from ._audit import CHECK_INTERVAL, FdAudit, check_usable
from ._base import MAX_READ_PER_CALL
from ._checks import MAX_WAIT
from ._closing import (
    close_every_channel,
    close_every_server,
    close_poller,
    finish_closing,
    report_pending,
)
from ._errors import not_from_the_os
from ._fds import WINDOWS_SELECT_LIMIT, current_pid
from ._input import read_unfinished, release_held_back
from ._protocols import ChannelLike
from ._records import Wakeup
from ._registry import Registry
from ._turns import CALL_READ, PEEK_BUDGET, READS_PER_POLL, Turns
from .buffering import BufferingArg, as_buffering
from .channel import SocketChannel
from .events import (
    AcceptEvent,
    BatchEvent,
    DataEvent,
    PollEvent,
    PollResult,
    SocketAddress,
    as_batches,
    as_events,
    as_tuples,
    frames_held,
    hand_out,
)

__all__ = [
    "ACCEPT_BACKOFF",
    "CALL_READ",
    "DEFAULT_READ_BUDGET",
    "MAX_ACCEPTS_PER_POLL",
    "PEEK_BUDGET",
    "READS_PER_POLL",
    "WINDOWS_SELECT_LIMIT",
    "AcceptEvent",
    "DataEvent",
    "PollResult",
    "Poller",
    "SelectorFactory",
    "SocketAddress",
]

_LOGGER = logging.getLogger(__name__)

SelectorFactory = Callable[[], selectors.BaseSelector]
"""A selector class such as ``selectors.PollSelector``, or any factory of one."""

DEFAULT_READ_BUDGET = MAX_READ_PER_CALL
"""Bytes one ``poll()`` takes from one channel at most (256 KiB), so a flooding
peer cannot starve the others; the rest is read by the next ``poll()``.
``poll()`` and ``poll_events()`` take at most ``CALL_READ`` of it while
several channels are busy."""

HAND_OUT = 1024
"""Frames one ``poll()`` or ``poll_events()`` returns at most: past it, what
was read is handed out in rounds that give each channel an equal share
(``events.split_at``). A bounded list keeps the garbage collector out of the
hot path and lets a call finish between two signals even when they come
every millisecond."""


class Poller:
    """Waits for data on registered channels and accepts clients of servers.

    ``buffering`` (a name or a ``Buffering`` strategy) is given to every
    accepted client, each with its own framing state. ``selector`` is the
    selector class to use (default ``selectors.DefaultSelector``: epoll on
    Linux, kqueue on macOS/BSD, select on Windows). ``read_budget`` is how
    many bytes one ``poll()`` takes from one channel at most.

    A Poller is a context manager: leaving the block calls ``close()``. It is
    not thread-safe, except for ``wakeup()``: use it from one thread.
    """

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        selector: Optional[SelectorFactory] = None,
        read_budget: int = DEFAULT_READ_BUDGET,
    ) -> None:
        self._read_budget = _checks.whole_number(read_budget, "read_budget (bytes)", 1)
        self._strategy = as_buffering(buffering)
        self._registry = registry = Registry((selector or selectors.DefaultSelector)())
        accepted = SocketChannel._of_accepted  # pyright: ignore[reportPrivateUsage] (its own package)
        self._acceptor = Acceptor(registry, functools.partial(accepted, buffering=self._strategy))
        self._audit = FdAudit(registry)
        self._turns = Turns(registry, self._acceptor, self._read_budget)
        self._shutting_down = False
        self._next_chore = 0.0
        wake_r, self._wake_w = socket.socketpair()
        wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wakeup = Wakeup(wake_r)
        registry.register_wakeup(self._wakeup)

    @property
    def buffering(self) -> str:
        """The name of the strategy accepted clients get (``'line'``, ``'bytes'``, …)."""
        return self._strategy.name

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector the Poller waits on."""
        return self._registry.selector

    @property
    def read_budget(self) -> int:
        """Bytes one ``poll()`` takes from one channel at most."""
        return self._read_budget

    # -- registration -------------------------------------------------------

    def register(self, channel: ChannelLike) -> None:
        """Watch ``channel`` for reading; registering it again does nothing.

        Raises ``NotImplementedError`` (from ``get_fd()``) for a channel that
        cannot read, ``TypeError`` for an object that is not a channel, and
        ``ValueError`` for a closed channel; nothing is registered then.
        """
        self._check_open("register() with")
        self._registry.watch(channel)

    def unregister(self, channel: ChannelLike) -> None:
        """Stop watching ``channel``; does nothing if it is not registered."""
        watched = self._registry.find(channel)
        if watched is not None:
            self._registry.move(watched, "unregister")

    def pause_reading(self, channel: ChannelLike) -> None:
        """Stop reading ``channel`` (its queued output is still delivered)
        until ``resume_reading()``: backpressure, when what it sends cannot be
        passed on yet. Does nothing for a channel that is not registered."""
        watched = self._registry.find(channel)
        if watched is not None:
            self._registry.pause(watched, True)

    def resume_reading(self, channel: ChannelLike) -> None:
        """Read ``channel`` again after ``pause_reading()``; frames it had
        buffered already are returned by the next ``poll()`` without waiting."""
        watched = self._registry.find(channel)
        if watched is not None:
            self._registry.pause(watched, False)

    def add_server(self, sock: socket.socket, *, max_clients: Optional[int] = None) -> None:
        """Watch a listening stream socket (TCP or Unix) and accept its clients.

        Each client is wrapped in a ``SocketChannel`` with the Poller's
        buffering, registered, and reported by ``poll()``. The socket is made
        non-blocking. With ``max_clients``, at most that many of its clients
        are registered at once: at the cap, the server is not watched (new
        clients wait in the listen backlog) until one of them is reported
        closed or unregistered. Raises ``TypeError``/``ValueError`` for anything
        but an open, listening stream socket, or a bad ``max_clients``.
        """
        self._check_open("add_server() on")
        self._acceptor.add(sock, max_clients)

    def remove_server(self, sock: socket.socket) -> None:
        """Stop accepting clients of ``sock`` (it stays open; its clients stay
        registered). Does nothing for a socket that was not added."""
        server = self._registry.servers.get(id(sock))
        if server is not None:
            self._registry.drop_server(server)

    # -- closing ------------------------------------------------------------

    def close_all(self) -> None:
        """Close every registered channel and server.

        Queued output is delivered first, to all channels at once: each may
        stall for its own ``linger`` (not one after another); a channel whose
        reader took nothing for that long is aborted, with a warning. Every
        channel is closed, even when the process is out of fds or an fd was
        closed behind the Poller's back. The channels are reported as closed,
        ``(b'', channel)`` with what they could not deliver, by the next
        ``poll()``; the servers are forgotten. If closing a channel raised,
        the others are closed first, then the first error is raised.
        """
        self._acceptor.finish_arrivals()  # (reported before they are closed)
        errors = close_every_server(self._registry) + close_every_channel(self._registry)
        if errors:
            raise errors[0]

    def close(self) -> None:
        """``close_all()``, then release the Poller's own fds (selector, wakeup).

        Calling it again does nothing; the Poller cannot be used afterwards.
        If a signal handler's exception came out of it, it is not closed yet:
        call it again, it finishes (README: Signals).
        """
        if self.closed:
            return
        self._shutting_down = True  # (wakeup() from another thread: quiet now)
        close_poller(self.close_all, self._registry, (self._wake_w, self._wakeup.sock))

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._wakeup.sock.fileno() < 0

    def _check_open(self, action: str) -> None:
        check_usable(self.closed, self._registry.pid, action)

    def __enter__(self) -> "Poller":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wakeup(self) -> None:
        """Make a ``poll()`` that is waiting return promptly (with ``[]`` if
        nothing else happened); a ``poll()`` that is not waiting returns at
        once the next time. Safe from other threads and from signal handlers.
        Never raises (it runs in signal handlers and other threads): it does
        nothing once ``close()`` began, and an error is logged."""
        if self._registry.pid != current_pid():
            return  # (inherited: it would wake the parent)
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the socket is full of wakeups: one is pending already
        except OSError as exc:
            if not self._shutting_down:
                _LOGGER.warning("wakeup() of the Poller failed: %s", exc)

    # -- polling: the three views -------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> List[PollResult]:
        """Wait for events and return them as a list of 0.2 tuples.

        ``timeout`` is in seconds: ``None`` (or ``inf``) waits until something
        happens, zero or less does not wait, a positive value of any size
        waits at most that long; NaN raises ``ValueError``. An
        empty list means the timeout passed (or ``wakeup()`` was called). Items
        are ``(data, channel)`` (a line channel gives one per complete line),
        ``(b'', channel)`` once when a channel closed — after which it is no
        longer registered — and ``((addr, client_channel), server_sock)`` per
        accepted client. ``poll_events()`` gives the same as typed events.
        """
        registry = self._registry
        registry.holding = True
        self._gather(timeout, HAND_OUT)
        handed, batches, kept, backlog = hand_out(
            registry.batches, registry.results, registry.backlog, HAND_OUT
        )
        results = as_tuples(handed)
        # No call from here to the return (see _gather()).
        self._turns.woken = False
        registry.batches = batches
        registry.results = kept
        registry.backlog = backlog
        return results

    def poll_events(self, timeout: Optional[float] = None) -> List[PollEvent]:
        """Like ``poll()``, but each item is a typed event: ``DataReceived``,
        ``ChannelClosed`` (with its ``reason`` and ``undelivered`` bytes) or
        ``ClientAccepted``."""
        registry = self._registry
        registry.holding = True
        self._gather(timeout, HAND_OUT)
        handed, batches, kept, backlog = hand_out(
            registry.batches, registry.results, registry.backlog, HAND_OUT
        )
        results = as_events(handed)
        # No call from here to the return (see _gather()).
        self._turns.woken = False
        registry.batches = batches
        registry.results = kept
        registry.backlog = backlog
        return results

    def poll_batches(self, timeout: Optional[float] = None) -> List[BatchEvent]:
        """Like ``poll_events()``, but the frames a channel gave are one
        ``FramesReceived`` with a list of them, in order: no object per frame.

        The fastest way to consume many small lines; ``ChannelClosed`` and
        ``ClientAccepted`` come as in ``poll_events()``.
        """
        registry = self._registry
        registry.holding = False  # (it hands out all: see channels._input._hold_back)
        self._gather(timeout, sys.maxsize)
        handed, batches, kept, backlog = hand_out(
            registry.batches, registry.results, registry.backlog, sys.maxsize
        )
        results = as_batches(handed)
        # No call from here to the return (see _gather()).
        self._turns.woken = False
        registry.batches = batches
        registry.results = kept
        registry.backlog = backlog
        return results

    # -- polling: the loop --------------------------------------------------

    def _gather(self, timeout: Optional[float], room: int) -> None:
        """Wait until the registry holds results, ``wakeup()`` was called, or
        ``timeout`` passed; read while fewer than ``room`` frames wait
        (``channels._turns``). The caller then makes its view of the results
        while the registry still holds them (a raise in there loses nothing),
        and takes them with stores only, no call, up to its return: a signal
        handler (which CPython runs only at calls, function entries and loop
        jumps) finds them the registry's or the caller's (README: Signals)."""
        registry = self._registry
        if self._wakeup.sock.fileno() < 0 or registry.pid != current_pid():  # (per poll)
            self._check_open("poll() on")
        if timeout is not None:
            timeout = _checks.timeout(timeout, "poll() timeout")
        if registry.unsettled or registry.moving or registry.adding:
            registry.settle()
        if registry.arriving:
            self._acceptor.finish_arrivals()
        if registry.batches:  # a round under way: no reading until it is out
            return
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            if registry.backlog and not registry.results:  # (a read cut short: go again)
                registry.backlog = set()
            if registry.held_back:  # (before any wait: select() must see them again)
                release_held_back(registry)
            left = None if deadline is None else (deadline - now if deadline > now else 0.0)
            if registry.pending or registry.unfinished or registry.results or self._turns.rest:
                wait: Optional[float] = 0  # there is news already: do not wait
            else:
                wait = self._wait_time(left, now)
            self._poll_once(wait, now, room)
            # Writes flushed but nothing to report: that is no timeout yet.
            if registry.results or self._turns.woken or (left is not None and left <= 0):
                return
            now = time.monotonic()

    def _wait_time(self, left: Optional[float], now: float) -> Optional[float]:
        """How long select() may wait when there is no news yet: not past
        the next chore (a back-off that ends, the fd audit, a linger)."""
        registry = self._registry
        if not (registry.held.records or registry.servers):
            return left
        until = self._next_chore - now if self._next_chore > now else 0.0
        # (no min(): a builtin call costs more than this test, per poll)
        return until if left is None or until < left else left

    def _poll_once(self, timeout: Optional[float], now: float, room: int) -> None:
        registry = self._registry
        if now >= self._next_chore:
            self._chores(now)
        if registry.closing:
            timeout = finish_closing(registry, now, timeout)
        if timeout is not None and timeout > MAX_WAIT:
            timeout = MAX_WAIT  # (the loop in _gather waits again)
        # (what waits from earlier calls, then what this call read)
        waiting = frames_held(registry.results) if registry.results and room < sys.maxsize else 0
        unfinished = registry.unfinished
        if unfinished:
            peek = PEEK_BUDGET if waiting >= room + room else 0  # (see channels._turns)
            waiting += read_unfinished(
                registry,
                self._audit.still_its_file,
                self._turns.budget(room),
                room - waiting,
                peek=peek,
                reads=READS_PER_POLL,
            )
        turns = self._turns
        # (a call selects unless the rest of the last list gave it its turn:
        # a quiet peer's line, not in that rest, comes in the next call)
        left = turns.take_rest(waiting, room) if turns.rest else waiting
        if left is not None:
            try:
                ready = registry.selector.select(timeout)
            except (OSError, ValueError) as exc:
                if not_from_the_os(exc):
                    raise
                self._audit.find_bad_fds(exc)
                ready = []
            if ready:
                turns.take(ready, left, room)
        if registry.pending:
            report_pending(registry, self._read_budget)

    def _chores(self, now: float) -> None:
        """What is due now rather than per ready fd: servers whose back-off
        ended, and a slice of the fd audit."""
        self._acceptor.resume(now)
        self._audit.check_slice()
        next_chore = now + CHECK_INTERVAL
        wake = self._acceptor.next_wake(now)
        if wake is not None and now + wake < next_chore:
            next_chore = now + wake
        self._next_chore = next_chore
