"""The Poller: waits on many channels and servers at once, on ``selectors``.

Design notes:

- One selector (``selectors.DefaultSelector`` unless another class is given)
  holds every fd, each registered with a small record (``channels._records``)
  as its ``data``: ``Watched`` for a channel, ``Server`` for a listening
  socket, ``Wakeup`` for the socketpair that ``wakeup()`` writes to.
- Records are also kept by the *identity* of the channel: a closed socket's
  ``fileno()`` is -1, and epoll silently forgets a closed fd, so the fd is not
  a reliable key.
- A channel that is closed while registered calls the Poller back (see
  ``CloseNotifier``) before its fd is released; the Poller unregisters the fd
  and keeps the channel aside, so the next ``poll()`` reports it at once,
  without scanning the idle channels.
- The Poller never looks at framing: it calls ``read()`` until it returns
  ``b''``, raises ``EndpointClosedException``, or the channel used up its read
  budget for this ``poll()`` — then it is read again by the next ``poll()``,
  which does not wait for the fd (the rest may sit in the framer already).
- A channel that queues output (``QueuedWriter``) calls the Poller back when
  output appears and when it drained; the Poller watches its fd for
  writability exactly in between and calls ``flush(0)`` when it is writable.
  A channel whose reading ended is reported closed once; until it is closed
  or unregistered, what it still writes is delivered, silently (the peer may
  have only half-closed its end).
- Results are collected on the Poller, not in a local list: if a signal
  handler raises halfway, what was already read is returned by the next
  ``poll()``.
- On POSIX a few fds are checked per quarter second against the identity
  (device, inode) they had when registered, so an fd closed or reused behind
  the Poller's back is found even where the kernel forgets it silently
  (epoll), at no cost per ``poll()``.
"""

import contextlib
import errno
import functools
import itertools
import logging
import selectors
import socket
import sys
import time
from typing import AbstractSet, Callable, Dict, List, Optional, Tuple, Union, cast

from ._base import AGAIN, DRAINED
from ._errors import EndpointClosedException, LineTooLong
from ._records import (
    Record,
    Server,
    Wakeup,
    Watched,
    WriteSide,
    fd_is_open,
    identity_of,
    is_regular_file,
    record_of,
    shape_of,
)
from .buffering import BufferingArg, as_buffering
from .channel import (
    ChannelLike,
    CloseNotifier,
    QueuedWriter,
    SocketChannel,
    check_stream_socket,
    is_listening,
)
from .events import (
    BatchEvent,
    ChannelClosed,
    ClientAccepted,
    CloseReason,
    DataReceived,
    FramesReceived,
    PollEvent,
    SocketAddress,
)

__all__ = [
    "ACCEPT_BACKOFF",
    "DEFAULT_READ_BUDGET",
    "MAX_ACCEPTS_PER_POLL",
    "AcceptEvent",
    "DataEvent",
    "PollResult",
    "Poller",
    "SelectorFactory",
    "SocketAddress",
]

_LOGGER = logging.getLogger(__name__)


DataEvent = Tuple[bytes, ChannelLike]
"""``(data, channel)``: a frame from a channel, or ``(b'', channel)`` once it closed."""

AcceptEvent = Tuple[Tuple[SocketAddress, SocketChannel], socket.socket]
"""``((addr, client_channel), server_sock)``: a client that was accepted and registered."""

PollResult = Union[DataEvent, AcceptEvent]
"""One item of ``Poller.poll()``; tell them apart with ``isinstance(item[0], bytes)``."""

_Collected = Union[Tuple[List[bytes], ChannelLike], ChannelClosed, ClientAccepted]
"""What a poll collects: the frames of one read as a plain tuple (the hot
path), the rest as events."""

_NONE_READ: AbstractSet[int] = frozenset()
"""No channel was read before the selector's ready list this time."""

SelectorFactory = Callable[[], selectors.BaseSelector]
"""A selector class such as ``selectors.PollSelector``, or any factory of one."""

DEFAULT_READ_BUDGET = 256 * 1024
"""Bytes one ``poll()`` takes from one channel at most, so a flooding peer
cannot starve the others; the rest is read by the next ``poll()``."""

MAX_ACCEPTS_PER_POLL = 128
"""Clients one ``poll()`` accepts from one server at the most; the rest wait
in the backlog for the next ``poll()``."""

ACCEPT_BACKOFF = 0.25
"""Seconds a server is not watched after accept() ran out of fds or memory."""

# accept() errors that concern only the connection being accepted: skip it and
# go on. From trio's SocketListener.accept (trio/_highlevel_socket.py), which
# collected them from the Linux, BSD and Windows accept(2) documentation.
_ACCEPT_SKIP_ERRNOS = frozenset(
    code
    for code in (
        getattr(errno, name, None)
        for name in (
            "ECONNABORTED",
            "EPROTO",
            "EPERM",
            "ENETDOWN",
            "ENOPROTOOPT",
            "EHOSTDOWN",
            "ENONET",
            "EHOSTUNREACH",
            "EOPNOTSUPP",
            "ENETUNREACH",
        )
    )
    if code is not None
)
# accept() errors that mean the process is out of a resource: back off.
_ACCEPT_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors that mean the listening socket itself is gone or unusable.
_ACCEPT_DEAD_SERVER_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})
# Errors a broken custom channel may raise from read() or flush(): reported as
# closed (and logged) rather than raised, so one bad channel cannot stop a server.
_BAD_CHANNEL_ERRORS = (OSError, ValueError, KeyError)

# select() takes at most 512 sockets on Windows (CPython's FD_SETSIZE there),
# and fds below FD_SETSIZE (1024) elsewhere; past that it fails obscurely, so
# registering says so.
WINDOWS_SELECT_LIMIT = 512
POSIX_SELECT_LIMIT = 1024

_CHECK_INTERVAL = 0.25
_CHECK_SLICE = 256


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
        if isinstance(read_budget, bool) or not isinstance(read_budget, int):
            raise TypeError(f"read_budget must be an int (bytes), not {type(read_budget).__name__}")
        if read_budget < 1:
            raise ValueError(f"read_budget must be at least 1 byte, not {read_budget}")
        self._strategy = as_buffering(buffering)
        self._read_budget = read_budget
        self._selector_factory = selector or selectors.DefaultSelector
        self._selector = self._selector_factory()
        self._channels: Dict[int, Watched] = {}
        # Closed while registered, or whose fd went bad: reported by the next poll().
        self._closed: Dict[int, Watched] = {}
        # Used up their read budget: read again by the next poll(), without waiting.
        self._unfinished: Dict[int, Watched] = {}
        self._servers: Dict[int, Server] = {}
        self._results: List[_Collected] = []
        self._woken = False
        self._next_check = 0.0
        self._check_cursor = 0
        wake_r, self._wake_w = socket.socketpair()
        wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._wakeup = Wakeup(wake_r)
        self._selector.register(wake_r.fileno(), selectors.EVENT_READ, self._wakeup)

    @property
    def buffering(self) -> str:
        """The name of the strategy accepted clients get (``'line'``, ``'bytes'``, …)."""
        return self._strategy.name

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector the Poller waits on."""
        return self._selector

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
        self._register(channel)

    def _register(self, channel: ChannelLike) -> Watched:
        self._check_open("register() with")
        shape = shape_of(channel)
        if not shape.channel_like:
            raise TypeError(
                "register() takes a channel (read, write, close, get_fd, buffering),"
                f" not {type(channel).__name__}"
            )
        fd = channel.get_fd()
        if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
            raise ValueError(f"cannot register {channel!r}: get_fd() gave {fd!r}, not an open fd")
        key = id(channel)
        known = self._channels.get(key)
        if known is not None:
            if known.fd == fd:
                if not known.reading:  # drained after its end: watch it again
                    known.reading = True
                    self._update_events(known)
                return known
            self._forget(known)
        self._evict_stale(fd)
        self._check_select_limit(fd, channel)
        write_fd = fd
        if shape.queued_writer:
            with contextlib.suppress(NotImplementedError):  # it cannot write: no matter
                write_fd = cast(QueuedWriter, channel).get_write_fd()
        watched = Watched(channel, fd, write_fd)
        try:
            self._selector.register(fd, selectors.EVENT_READ, watched)
        except PermissionError as exc:
            if not is_regular_file(fd):
                raise ValueError(
                    f"cannot register {channel!r}: fd {fd} cannot be watched: {exc}"
                ) from exc
            # epoll refuses regular files (stdin redirected from a file), which
            # are always readable anyway: read it every poll() until its end.
            watched.always_readable = True
            self._unfinished[id(watched)] = watched
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot register {channel!r}: fd {fd} is not usable: {exc}") from exc
        self._channels[key] = watched
        if shape.close_notifier:
            watched.on_close = functools.partial(self._channel_closed, watched)
            cast(CloseNotifier, channel).add_close_callback(watched.on_close)
        if shape.queued_writer:
            writer = cast(QueuedWriter, channel)
            watched.on_output = functools.partial(self._output_changed, watched)
            writer.add_output_callback(watched.on_output)
            if writer.write_buffer_size:
                self._output_changed(watched, True)
        return watched

    def _check_select_limit(self, fd: int, what: object) -> None:
        if not isinstance(self._selector, selectors.SelectSelector):
            return
        if sys.platform == "win32":
            if len(self._selector.get_map()) >= WINDOWS_SELECT_LIMIT:
                raise ValueError(
                    f"cannot register {what!r}: select() on Windows handles at most"
                    f" {WINDOWS_SELECT_LIMIT} sockets, and this Poller has that many"
                    " (its wakeup socket included); spread the clients over more Pollers"
                )
        elif fd >= POSIX_SELECT_LIMIT:
            raise ValueError(
                f"cannot register {what!r}: select() takes fds below {POSIX_SELECT_LIMIT}"
                f" (FD_SETSIZE), not {fd}; use the default selector or PollSelector"
            )

    def unregister(self, channel: ChannelLike) -> None:
        """Stop watching ``channel``; does nothing if it is not registered."""
        key = id(channel)
        watched = self._channels.get(key) or self._closed.get(key)
        if watched is not None:
            self._forget(watched)

    def pause_reading(self, channel: ChannelLike) -> None:
        """Stop reading ``channel`` (its queued output is still delivered)
        until ``resume_reading()``: backpressure, when what it sends cannot be
        passed on yet. Does nothing for a channel that is not registered."""
        watched = self._channels.get(id(channel))
        if watched is not None and not watched.paused:
            watched.paused = True
            self._unfinished.pop(id(watched), None)
            self._update_events(watched)

    def resume_reading(self, channel: ChannelLike) -> None:
        """Read ``channel`` again after ``pause_reading()``; frames it had
        buffered already are returned by the next ``poll()`` without waiting."""
        watched = self._channels.get(id(channel))
        if watched is not None and watched.paused:
            watched.paused = False
            if watched.reading:
                self._unfinished[id(watched)] = watched
            self._update_events(watched)

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
        check_stream_socket(sock, "add_server()")
        if not is_listening(sock):
            raise ValueError(
                "add_server() takes a listening socket; call sock.listen() first"
                " (a connected socket goes in a SocketChannel)"
            )
        if max_clients is not None and (
            isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1
        ):
            raise ValueError(f"max_clients must be a positive int or None, not {max_clients!r}")
        if id(sock) in self._servers:
            return
        server = Server(sock, max_clients)
        self._evict_stale(server.fd)
        self._check_select_limit(server.fd, sock)
        sock.setblocking(False)
        self._selector.register(server.fd, selectors.EVENT_READ, server)
        self._servers[id(sock)] = server

    def remove_server(self, sock: socket.socket) -> None:
        """Stop accepting clients of ``sock`` (it stays open; its clients stay
        registered). Does nothing for a socket that was not added."""
        server = self._servers.get(id(sock))
        if server is not None:
            self._drop_server(server)

    # -- closing ------------------------------------------------------------

    def close_all(self) -> None:
        """Close every registered channel and server.

        Queued output is delivered first, to all channels at once: each may
        stall for its own ``linger`` (not one after another); a channel whose
        reader took nothing for that long is aborted, with a warning. The
        channels are reported as closed, ``(b'', channel)``, by the next
        ``poll()``; the servers are forgotten.
        """
        for server in list(self._servers.values()):
            self._drop_server(server)
            server.sock.close()
        self._deliver_all()
        errors: List[BaseException] = []
        for watched in list(self._channels.values()):
            try:
                watched.channel.close()
            except Exception as exc:  # close the others first, then raise
                errors.append(exc)
            if self._watching(watched):
                self._channel_closed(watched)  # a channel that does not call back
        if errors:
            raise errors[0]

    def _deliver_all(self) -> None:
        """Flush every channel's queued output concurrently, each within its linger."""
        pending = {
            id(watched): watched
            for watched in self._channels.values()
            if watched.writing and isinstance(watched.channel, QueuedWriter)
        }
        if not pending:
            return
        stalls: Dict[int, float] = {}  # when each one's reader stalled since
        with self._selector_factory() as watch:
            now = time.monotonic()
            for key, watched in pending.items():
                watch.register(watched.write_fd, selectors.EVENT_WRITE, key)
                stalls[key] = now
            while pending:
                expiry = {key: stalls[key] + _linger_of(w.channel) for key, w in pending.items()}
                left = max(0.0, min(expiry.values()) - time.monotonic())
                for key_event, _ in watch.select(left):
                    key = key_event.data
                    channel = cast(QueuedWriter, pending[key].channel)
                    before = channel.write_buffer_size
                    try:
                        done = channel.flush(0)
                    except (EndpointClosedException, *_BAD_CHANNEL_ERRORS):
                        done = True  # gone: its close() has nothing left to wait for
                    if done:
                        watch.unregister(key_event.fd)
                        del pending[key]
                    elif channel.write_buffer_size < before:
                        stalls[key] = time.monotonic()
                now = time.monotonic()
                for key in [k for k in pending if expiry[k] <= now]:
                    watched = pending.pop(key)
                    watch.unregister(watched.write_fd)
                    self._give_up(watched)

    def _give_up(self, watched: Watched) -> None:
        channel = cast(QueuedWriter, watched.channel)  # (it has output: see _register)
        dropped = channel.write_buffer_size
        _LOGGER.warning(
            "closing %r: the reader took nothing for %.1f s; %d queued bytes dropped",
            channel,
            _linger_of(channel),
            dropped,
        )
        abort = getattr(channel, "abort", None)
        if callable(abort):
            abort()

    def close(self) -> None:
        """``close_all()``, then release the Poller's own fds (selector, wakeup).

        Calling it again does nothing; the Poller cannot be used afterwards.
        """
        if self.closed:
            return
        try:
            self.close_all()
        finally:
            self._channels.clear()
            self._closed.clear()
            self._unfinished.clear()
            self._selector.close()
            self._wakeup.sock.close()
            self._wake_w.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._wakeup.sock.fileno() < 0

    def _check_open(self, action: str) -> None:
        if self.closed:
            raise ValueError(f"{action} a closed Poller")

    def __enter__(self) -> "Poller":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wakeup(self) -> None:
        """Make a ``poll()`` that is waiting return promptly (with ``[]`` if
        nothing else happened); a ``poll()`` that is not waiting returns at
        once the next time. Safe from other threads and from signal handlers.
        Does nothing once the Poller is closed."""
        try:
            self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # the socket is full of wakeups: one is pending already
        except OSError:
            if self._wake_w.fileno() >= 0:  # not closed: a real error
                raise

    # -- polling ------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> List[PollResult]:
        """Wait for events and return them as a list of 0.2 tuples.

        ``timeout`` is in seconds: ``None`` waits until something happens, zero
        or less does not wait, a positive value waits at most that long. An
        empty list means the timeout passed (or ``wakeup()`` was called). Items
        are ``(data, channel)`` (a line channel gives one per complete line),
        ``(b'', channel)`` once when a channel closed — after which it is no
        longer registered — and ``((addr, client_channel), server_sock)`` per
        accepted client. ``poll_events()`` gives the same as typed events.
        """
        collected = self._collect(timeout)
        if len(collected) == 1 and type(collected[0]) is tuple:  # one channel's lines
            frames, channel = collected[0]
            return list(zip(frames, itertools.repeat(channel)))
        results: List[PollResult] = []
        for item in collected:
            if isinstance(item, tuple):
                results += zip(item[0], itertools.repeat(item[1]))
            else:
                results.append(item.as_tuple())
        return results

    def poll_events(self, timeout: Optional[float] = None) -> List[PollEvent]:
        """Like ``poll()``, but each item is a typed event: ``DataReceived``,
        ``ChannelClosed`` (with its ``reason`` and ``undelivered`` bytes) or
        ``ClientAccepted``."""
        return [
            event
            for item in self._collect(timeout)
            for event in (
                [DataReceived(item[1], frame) for frame in item[0]]
                if isinstance(item, tuple)
                else [item]
            )
        ]

    def poll_batches(self, timeout: Optional[float] = None) -> List[BatchEvent]:
        """Like ``poll_events()``, but the frames a channel gave are one
        ``FramesReceived`` with a list of them, in order: no object per frame.

        The fastest way to consume many small lines; ``ChannelClosed`` and
        ``ClientAccepted`` come as in ``poll_events()``.
        """
        return [
            FramesReceived(item[1], item[0]) if isinstance(item, tuple) else item
            for item in self._collect(timeout)
        ]

    def _collect(self, timeout: Optional[float]) -> List[_Collected]:
        """The one implementation of poll(), poll_events() and poll_batches()."""
        self._check_open("poll() on")
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        while True:
            left = None if deadline is None else (deadline - now if deadline > now else 0.0)
            if self._closed or self._unfinished or self._results:
                wait: Optional[float] = 0  # there is news already: do not wait
            else:
                wait = self._wait_time(left, now)
            self._poll_once(wait, now)
            # Writes flushed but nothing to report: that is no timeout yet.
            if self._results or self._woken or (left is not None and left <= 0):
                results, self._results = self._results, []
                self._woken = False
                return results
            now = time.monotonic()

    def _wait_time(self, left: Optional[float], now: float) -> Optional[float]:
        """How long select() may wait when there is no news yet."""
        # (no min()/max(): builtin calls cost more than these tests, per poll)
        wait = left
        for server in self._servers.values():
            until = server.resume_at - now
            if until > 0 and (wait is None or until < wait):  # wake up to watch it again
                wait = until
        if sys.platform != "win32" and self._channels:
            until = self._next_check - now if self._next_check > now else 0.0
            if wait is None or until < wait:
                wait = until
        return wait

    def _poll_once(self, timeout: Optional[float], now: float) -> None:
        if self._servers:
            for server in list(self._servers.values()):
                if server.resume_at and now >= server.resume_at:
                    server.resume_at = 0.0
                    self._update_server(server)
        if sys.platform != "win32" and now >= self._next_check:
            self._next_check = now + _CHECK_INTERVAL
            self._check_fds()
        try:
            ready = self._selector.select(timeout)
        except (OSError, ValueError) as exc:
            self._find_bad_fds(exc)
            ready = []
        read_already: AbstractSet[int] = _NONE_READ
        if self._unfinished:
            read_already = {id(watched) for watched in self._unfinished.values()}
            for watched in list(self._unfinished.values()):
                self._read(watched)
        channels = self._channels
        for key, events in ready:
            record = key.data
            if (  # the hot path, _dispatch()'s read branch inlined: a channel with input
                events == selectors.EVENT_READ
                and type(record) is Watched
                and channels.get(id(record.channel)) is record
                and record.reading
                and not record.paused
                and id(record) not in read_already
            ):
                self._read(record)
            else:
                self._dispatch(record_of(key), events, read_already)
        if self._closed:
            self._report_closed()

    def _dispatch(self, record: Record, events: int, read_already: AbstractSet[int]) -> None:
        """Act on one ready fd."""
        if isinstance(record, Wakeup):
            self._drain_wakeups()
        elif isinstance(record, Server):
            if self._servers.get(id(record.sock)) is record:
                self._accept(record)
        elif isinstance(record, WriteSide):
            watched = record.watched
            if self._watching(watched) and watched.writing:
                self._flush(watched)
        else:
            if events & selectors.EVENT_READ and id(record) not in read_already:
                self._read_if_watched(record)
            if events & selectors.EVENT_WRITE and self._watching(record) and record.writing:
                self._flush(record)

    def _read_if_watched(self, watched: Watched) -> None:
        if self._watching(watched) and watched.reading and not watched.paused:
            self._read(watched)

    def _report_closed(self) -> None:
        for watched in list(self._closed.values()):
            if not watched.stale:
                self._read(watched)
            if self._closed.get(id(watched.channel)) is watched:
                # Stale, or closed but reading b'' rather than raising.
                self._forget(watched)
                self._report_end(watched, CloseReason.FD_LOST if watched.lost else None)

    def _drain_wakeups(self) -> None:
        self._woken = True
        try:
            while self._wakeup.sock.recv(4096):
                pass
        except BlockingIOError:
            pass

    def _watching(self, watched: Watched) -> bool:
        return self._channels.get(id(watched.channel)) is watched

    def _read(self, watched: Watched) -> None:
        channel = watched.channel
        results = self._results
        try:
            read_frames = watched.read_frames
            if read_frames is None:
                self._read_one_by_one(watched)
                return
            while True:
                frames, state = read_frames(self._read_budget)
                if frames:
                    results.append((frames, channel))
                if state == DRAINED and not watched.always_readable:
                    if self._unfinished:
                        self._unfinished.pop(id(watched), None)
                    return
                if state != AGAIN:  # more may wait, where select() cannot see it
                    self._unfinished[id(watched)] = watched
                    return
                # AGAIN: the end, or an error, is what the next call gives.
        except LineTooLong as exc:
            _LOGGER.warning("closing %r: %s", channel, exc)
            self._forget(watched)
            abort = getattr(channel, "abort", None)
            (abort if callable(abort) else channel.close)()
            self._report_end(watched, CloseReason.LINE_TOO_LONG)
        except EndpointClosedException as exc:
            self._reading_ended(watched, exc)
        except _BAD_CHANNEL_ERRORS:
            _LOGGER.exception("read() of %r failed; reporting it closed", channel)
            self._forget(watched)
            self._report_end(watched, CloseReason.FD_LOST)

    def _read_one_by_one(self, watched: Watched) -> None:
        """Read a channel that has no fast path (a custom ``read()``)."""
        channel = watched.channel
        results = self._results
        budget = self._read_budget
        while True:
            data = channel.read()
            if not data:
                self._unfinished.pop(id(watched), None)
                return
            results.append(([data], channel))
            budget -= len(data)
            if budget <= 0:
                # More may sit in the framer, where select() cannot see it.
                self._unfinished[id(watched)] = watched
                return

    def _reading_ended(self, watched: Watched, exc: EndpointClosedException) -> None:
        """Report the channel's end once; go on delivering what it writes."""
        if watched.lost:
            reason = CloseReason.FD_LOST
        elif not self._watching(watched):
            reason = CloseReason.CLOSED_LOCALLY
        elif isinstance(exc.__cause__, OSError):
            reason = CloseReason.RESET
        else:
            reason = CloseReason.PEER_CLOSED
        self._report_end(watched, reason)
        self._unfinished.pop(id(watched), None)
        self._leave_server(watched)
        if self._watching(watched):
            watched.reading = False
            self._update_events(watched)
        else:  # it closed while registered: nothing more will come
            self._forget(watched)

    def _flush(self, watched: Watched) -> None:
        channel = cast(QueuedWriter, watched.channel)  # (it has output: see _register)
        try:
            channel.flush(0)
        except (EndpointClosedException, *_BAD_CHANNEL_ERRORS) as exc:
            if not isinstance(exc, EndpointClosedException):
                _LOGGER.exception("flush() of %r failed; reporting it closed", channel)
            # The peer is gone. What it sent before is still readable: report
            # that, then the end (once); the application learns how much was
            # lost from its next write() or flush().
            if not watched.reading:
                self._forget(watched)
                return
            self._read(watched)
            if self._watching(watched) and watched.reading:
                self._forget(watched)
                self._report_end(watched, CloseReason.RESET)

    # -- accepting ----------------------------------------------------------

    def _accept(self, server: Server) -> None:
        for _ in range(MAX_ACCEPTS_PER_POLL):
            if not server.wanted(time.monotonic()):
                self._update_server(server)
                return
            try:
                sock, addr = server.sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_SKIP_ERRNOS:
                    continue
                if exc.errno in _ACCEPT_DEAD_SERVER_ERRNOS:
                    _LOGGER.warning("dropping server %r: accept() failed: %s", server.sock, exc)
                    self._drop_server(server)
                    return
                self._back_off(server, exc)
                return
            server.backing_off = False
            client = SocketChannel(sock, buffering=self._strategy)
            watched = self._register(client)
            watched.server = server
            server.clients += 1
            self._results.append(ClientAccepted(server.sock, client, addr))

    def _report_end(self, watched: Watched, reason: Optional[CloseReason]) -> None:
        """Report the channel closed; reason None: it was closed locally."""
        channel = watched.channel
        undelivered = getattr(channel, "undelivered", 0)
        self._results.append(
            ChannelClosed(
                channel,
                reason or CloseReason.CLOSED_LOCALLY,
                undelivered if isinstance(undelivered, int) else 0,
            )
        )

    def _back_off(self, server: Server, exc: OSError) -> None:
        """Stop watching the server for a while, so a lack of fds cannot spin."""
        if not server.backing_off:  # log once per episode, not once per retry
            server.backing_off = True
            log = _LOGGER.warning if exc.errno in _ACCEPT_BACKOFF_ERRNOS else _LOGGER.error
            log(
                "accept() on %r failed: %s; not accepting for %.2f s at a time until it works",
                server.sock,
                exc,
                ACCEPT_BACKOFF,
            )
        server.resume_at = time.monotonic() + ACCEPT_BACKOFF
        self._update_server(server)

    def _leave_server(self, watched: Watched) -> None:
        """The client no longer counts against its server's max_clients."""
        server, watched.server = watched.server, None
        if server is not None:
            server.clients -= 1
            if self._servers.get(id(server.sock)) is server:
                self._update_server(server)

    def _update_server(self, server: Server) -> None:
        key = self._selector.get_map().get(server.fd)
        selected = key is not None and key.data is server
        wanted = server.wanted(time.monotonic())
        if wanted and not selected:
            self._evict_stale(server.fd)
            self._selector.register(server.fd, selectors.EVENT_READ, server)
        elif selected and not wanted:
            self._selector.unregister(server.fd)

    def _drop_server(self, server: Server) -> None:
        self._servers.pop(id(server.sock), None)
        self._unselect(server.fd, server)

    # -- bookkeeping --------------------------------------------------------

    def _channel_closed(self, watched: Watched) -> None:
        """Called back by a channel closing while registered, before its fd closes."""
        key = id(watched.channel)
        if self._channels.get(key) is not watched:
            return
        if not watched.reading:  # its end was reported already
            self._forget(watched)
            return
        del self._channels[key]
        self._unselect_all(watched)
        self._closed[key] = watched

    def _output_changed(self, watched: Watched, pending: bool) -> None:
        """Called back by a channel whose queued output appeared or drained."""
        if self._watching(watched) and watched.writing != pending:
            watched.writing = pending
            self._update_events(watched)

    def _update_events(self, watched: Watched) -> None:
        """Select the fds for what the record needs now, or not at all."""
        read_events = 0 if watched.always_readable else watched.events & selectors.EVENT_READ
        try:
            if watched.write_side is None:
                self._select(
                    watched.fd, read_events | watched.events & selectors.EVENT_WRITE, watched
                )
            else:
                self._select(watched.fd, read_events, watched)
                self._select(
                    watched.write_fd, watched.events & selectors.EVENT_WRITE, watched.write_side
                )
        except (OSError, ValueError) as exc:  # an fd went bad behind our back
            _LOGGER.warning("fd %d of %r is not usable: %s", watched.fd, watched.channel, exc)
            self._set_aside(watched, stale=False)
            return
        idle = not watched.reading and not watched.writing
        if idle and (watched.on_close is None or watched.on_output is None):
            # Reported, drained, and it could not tell us of more output or
            # of its close: nothing left to do for it.
            self._forget(watched)

    def _select(self, fd: int, events: int, record: Record) -> None:
        """Have ``fd`` selected for ``events`` (0: not at all) on behalf of ``record``."""
        key = self._selector.get_map().get(fd)
        selected = key is not None and key.data is record
        if events and selected:
            self._selector.modify(fd, events, record)
        elif events:
            self._evict_stale(fd)
            self._selector.register(fd, events, record)
        elif selected:
            self._selector.unregister(fd)

    def _unselect_all(self, watched: Watched) -> None:
        self._unselect(watched.fd, watched)
        if watched.write_side is not None:
            self._unselect(watched.write_fd, watched.write_side)

    def _forget(self, watched: Watched) -> None:
        key = id(watched.channel)
        if self._channels.get(key) is watched:
            del self._channels[key]
        if self._closed.get(key) is watched:
            del self._closed[key]
        self._unfinished.pop(id(watched), None)
        self._unselect_all(watched)
        self._leave_server(watched)
        channel = watched.channel
        if watched.on_close is not None:
            cast(CloseNotifier, channel).remove_close_callback(watched.on_close)
            watched.on_close = None
        if watched.on_output is not None:
            cast(QueuedWriter, channel).remove_output_callback(watched.on_output)
            watched.on_output = None

    def _set_aside(self, watched: Watched, *, stale: bool) -> None:
        """The channel's fd went bad: report it closed at the next poll()."""
        if not self._watching(watched):
            return
        if not watched.reading:  # reported already: just let go
            self._forget(watched)
            return
        del self._channels[id(watched.channel)]
        self._unfinished.pop(id(watched), None)
        self._unselect_all(watched)
        watched.stale = stale
        watched.lost = True
        self._closed[id(watched.channel)] = watched

    def _unselect(self, fd: int, record: Record) -> None:
        """Remove ``fd`` from the selector if it is still registered for ``record``."""
        key = self._selector.get_map().get(fd)
        if key is not None and key.data is record:
            self._selector.unregister(fd)

    def _evict_stale(self, fd: int) -> None:
        """Make room for ``fd``: whatever holds that number closed it behind our back."""
        key = self._selector.get_map().get(fd)
        if key is None:
            return
        record = record_of(key)
        self._selector.unregister(fd)
        if isinstance(record, Server):
            _LOGGER.warning("fd %d was reused; dropping server %r", fd, record.sock)
            self._drop_server(record)
        elif isinstance(record, (Watched, WriteSide)):
            watched = record if isinstance(record, Watched) else record.watched
            _LOGGER.warning(
                "fd %d was reused; %r lost its fd and is reported closed", fd, watched.channel
            )
            self._set_aside(watched, stale=True)

    def _check_fds(self) -> None:
        """Check a slice of the fds against what they referred to when registered."""
        records: List[Union[Watched, Server]] = [
            *self._channels.values(),
            *self._servers.values(),
        ]
        if not records:
            return
        start = self._check_cursor % len(records)
        chosen = records[start : start + _CHECK_SLICE]
        self._check_cursor = start + len(chosen)
        for record in chosen:
            now = identity_of(record.fd)
            if now == record.identity:
                continue
            if isinstance(record, Server):
                _LOGGER.warning("dropping server %r: its fd %d was closed", record.sock, record.fd)
                self._drop_server(record)
            else:
                # Closed: reading it reports what was buffered, then the end.
                # Reused by another file: it must not be read again.
                self._set_aside(record, stale=now is not None)

    def _find_bad_fds(self, exc: BaseException) -> None:
        """After select() failed: set aside every record whose fd is gone.

        Only this error path scans every fd. If none is bad, the error was not
        about an fd and is raised again.
        """
        bad = [
            record_of(key)
            for key in list(self._selector.get_map().values())
            if not fd_is_open(key.fd)
        ]
        if not bad:
            raise exc
        for record in bad:
            if isinstance(record, Server):
                _LOGGER.warning("dropping server %r: its fd %d was closed", record.sock, record.fd)
                self._drop_server(record)
            elif isinstance(record, Watched):
                self._set_aside(record, stale=False)
            elif isinstance(record, WriteSide):
                self._set_aside(record.watched, stale=False)


def _linger_of(channel: object) -> float:
    linger = getattr(channel, "linger", 0.0)
    return float(linger) if isinstance(linger, (int, float)) else 0.0
