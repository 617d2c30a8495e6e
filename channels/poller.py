"""The Poller: waits on many channels and servers at once, on ``selectors``.

Design notes:

- One selector (``selectors.DefaultSelector`` unless another class is given)
  holds every fd, each registered with a small record (``_Watched`` for a
  channel, ``_Server`` for a listening socket) as its ``data``.
- Records are also kept by the *identity* of the channel: a closed socket's
  ``fileno()`` is -1, and epoll silently forgets a closed fd, so the fd is not
  a reliable key.
- A channel that is closed while registered calls the Poller back (see
  ``CloseNotifier``) before its fd is released; the Poller unregisters the fd
  and keeps the channel aside, so the next ``poll()`` reports it at once,
  without scanning the idle channels.
- The Poller never looks at framing: it calls ``read()`` until it returns
  ``b''`` or raises ``EndpointClosedException``.
- A channel that queues output (``QueuedWriter``) calls the Poller back when
  output appears and when it drained; the Poller watches its fd for
  writability exactly in between and calls ``flush(0)`` when it is writable.
  A channel whose reading ended is reported closed once; until it is closed
  or unregistered, what it still writes is delivered, silently (the peer may
  have only half-closed its end).
"""

import errno
import functools
import logging
import os
import select
import selectors
import socket
import time
from typing import Callable, Dict, List, Optional, Tuple, Union

from ._errors import EndpointClosedException
from .buffering import BufferingArg, as_buffering
from .channel import (
    ChannelLike,
    CloseNotifier,
    QueuedWriter,
    SocketChannel,
    _check_stream_socket,
    _is_listening,
)

__all__ = ["AcceptEvent", "DataEvent", "PollResult", "Poller", "SelectorFactory", "SocketAddress"]

_LOGGER = logging.getLogger(__name__)

SocketAddress = Union[Tuple[str, int], Tuple[str, int, int, int], str, bytes]
"""The address of an accepted client: ``(host, port)`` for IPv4, a 4-tuple
for IPv6, a path (often ``''``) for Unix sockets."""

DataEvent = Tuple[bytes, ChannelLike]
"""``(data, channel)``: a frame from a channel, or ``(b'', channel)`` once it closed."""

AcceptEvent = Tuple[Tuple[SocketAddress, SocketChannel], socket.socket]
"""``((addr, client_channel), server_sock)``: a client that was accepted and registered."""

PollResult = Union[DataEvent, AcceptEvent]
"""One item of ``Poller.poll()``; tell them apart with ``isinstance(item[0], bytes)``."""

SelectorFactory = Callable[[], selectors.BaseSelector]
"""A selector class such as ``selectors.PollSelector``, or any factory of one."""

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
# accept() errors that mean the listening socket itself is gone or unusable.
_ACCEPT_DEAD_SERVER_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})

MAX_ACCEPTS_PER_POLL = 128
"""Clients one ``poll()`` accepts from one server at the most; the rest wait
in the backlog for the next ``poll()``."""


class _Watched:
    """A registered channel, as the selector's ``data`` and in the identity map."""

    __slots__ = ("channel", "fd", "on_close", "on_output", "reading", "stale", "writing")

    def __init__(self, channel: ChannelLike, fd: int) -> None:
        self.channel = channel
        self.fd = fd
        self.on_close: Optional[Callable[[], None]] = None
        self.on_output: Optional[Callable[[bool], None]] = None
        # False once its end was reported: it is then only drained.
        self.reading = True
        # True while it has queued output: the fd is watched for writing too.
        self.writing = False
        # Its fd number was taken over by another file: never read it again.
        self.stale = False

    @property
    def events(self) -> int:
        return (selectors.EVENT_READ if self.reading else 0) | (
            selectors.EVENT_WRITE if self.writing else 0
        )


class _Server:
    """A listening socket, as the selector's ``data``."""

    __slots__ = ("fd", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()


def _record(key: selectors.SelectorKey) -> Union[_Watched, _Server]:
    """Narrow a selector key's ``data`` (typed ``Any``) to what we put there."""
    data = key.data
    assert isinstance(data, (_Watched, _Server))
    return data


def _fd_is_open(fd: int) -> bool:
    if os.name == "posix":
        try:
            os.fstat(fd)
        except OSError:
            return False
        return True
    try:  # Windows sockets are not fds to os.fstat
        select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return False
    return True


class Poller:
    """Waits for data on registered channels and accepts clients of servers.

    ``buffering`` (a name or a ``Buffering`` strategy) is given to every
    accepted client, each with its own framing state. ``selector`` is the
    selector class to use (default ``selectors.DefaultSelector``: epoll on
    Linux, kqueue on macOS/BSD, select on Windows).

    Not thread-safe: use one Poller from one thread.
    """

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        selector: Optional[SelectorFactory] = None,
    ) -> None:
        self._strategy = as_buffering(buffering)
        self._selector = (selector or selectors.DefaultSelector)()
        self._channels: Dict[int, _Watched] = {}
        # Closed while registered, to be reported once by the next poll().
        self._closed: Dict[int, _Watched] = {}
        self._servers: Dict[int, _Server] = {}

    @property
    def buffering(self) -> str:
        """The name of the strategy accepted clients get (``'line'``, ``'bytes'``, …)."""
        return self._strategy.name

    @property
    def selector(self) -> selectors.BaseSelector:
        """The selector the Poller waits on."""
        return self._selector

    def register(self, channel: ChannelLike) -> None:
        """Watch ``channel`` for reading; registering it again does nothing.

        Raises ``NotImplementedError`` (from ``get_fd()``) for a channel that
        cannot read, ``TypeError`` for an object that is not a channel, and
        ``ValueError`` for a closed channel; nothing is registered then.
        """
        if not isinstance(channel, ChannelLike):
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
                return
            self._forget(known)
        self._evict_stale(fd)
        watched = _Watched(channel, fd)
        try:
            self._selector.register(fd, selectors.EVENT_READ, watched)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot register {channel!r}: fd {fd} is not usable: {exc}") from exc
        self._channels[key] = watched
        if isinstance(channel, CloseNotifier):
            watched.on_close = functools.partial(self._channel_closed, watched)
            channel.add_close_callback(watched.on_close)
        if isinstance(channel, QueuedWriter):
            watched.on_output = functools.partial(self._output_changed, watched)
            channel.add_output_callback(watched.on_output)
            if channel.write_buffer_size:
                self._output_changed(watched, True)

    def unregister(self, channel: ChannelLike) -> None:
        """Stop watching ``channel``; does nothing if it is not registered."""
        key = id(channel)
        watched = self._channels.get(key) or self._closed.get(key)
        if watched is not None:
            self._forget(watched)

    def add_server(self, sock: socket.socket) -> None:
        """Watch a listening stream socket (TCP or Unix) and accept its clients.

        Each client is wrapped in a ``SocketChannel`` with the Poller's
        buffering, registered, and reported by ``poll()``. The socket is made
        non-blocking. Raises ``TypeError``/``ValueError`` for anything but an
        open, listening stream socket.
        """
        _check_stream_socket(sock, "add_server()")
        if not _is_listening(sock):
            raise ValueError(
                "add_server() takes a listening socket; call sock.listen() first"
                " (a connected socket goes in a SocketChannel)"
            )
        if id(sock) in self._servers:
            return
        sock.setblocking(False)
        server = _Server(sock)
        self._evict_stale(server.fd)
        self._selector.register(server.fd, selectors.EVENT_READ, server)
        self._servers[id(sock)] = server

    def close_all(self) -> None:
        """Close every registered channel and server.

        The channels are reported as closed, ``(b'', channel)``, by the next
        ``poll()``; the servers are forgotten.
        """
        for server in list(self._servers.values()):
            self._drop_server(server)
            server.sock.close()
        errors: List[BaseException] = []
        for watched in list(self._channels.values()):
            try:
                watched.channel.close()
            except Exception as exc:  # close the others first, then raise
                errors.append(exc)
            if self._channels.get(id(watched.channel)) is watched:
                self._channel_closed(watched)  # a channel that does not call back
        if errors:
            raise errors[0]

    def poll(self, timeout: Optional[float] = None) -> List[PollResult]:
        """Wait for events and return them as a list.

        ``timeout`` is in seconds: ``None`` waits until something happens, zero
        or less does not wait, a positive value waits at most that long. An
        empty list means the timeout passed. Items are ``(data, channel)``
        (a line channel gives one per complete line), ``(b'', channel)`` once
        when a channel closed — after which it is no longer registered — and
        ``((addr, client_channel), server_sock)`` per accepted client.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            results = self._poll_once(0 if self._closed else left)
            # Writes flushed but nothing to report: that is no timeout yet.
            if results or (left is not None and left <= 0):
                return results

    def _poll_once(self, timeout: Optional[float]) -> List[PollResult]:
        try:
            ready = self._selector.select(timeout)
        except (OSError, ValueError) as exc:
            ready = self._find_bad_fds(exc)
        results: List[PollResult] = []
        for key, events in ready:
            record = _record(key)
            if isinstance(record, _Server):
                if self._servers.get(id(record.sock)) is record:
                    self._accept(record, results)
                continue
            if events & selectors.EVENT_READ and self._watching(record) and record.reading:
                self._read(record, results)
            if events & selectors.EVENT_WRITE and self._watching(record) and record.writing:
                self._flush(record, results)
        if self._closed:
            for watched in list(self._closed.values()):
                if not watched.stale:
                    self._read(watched, results)
                if self._closed.get(id(watched.channel)) is watched:
                    # Stale, or closed but reading b'' rather than raising.
                    self._forget(watched)
                    results.append((b"", watched.channel))
        return results

    def _watching(self, watched: _Watched) -> bool:
        return self._channels.get(id(watched.channel)) is watched

    def _read(self, watched: _Watched, results: List[PollResult]) -> None:
        channel = watched.channel
        try:
            while True:
                data = channel.read()
                if not data:
                    return
                results.append((data, channel))
        except EndpointClosedException:
            self._reading_ended(watched, results)

    def _reading_ended(self, watched: _Watched, results: List[PollResult]) -> None:
        """Report the channel's end once; go on delivering what it writes."""
        results.append((b"", watched.channel))
        if self._watching(watched):
            watched.reading = False
            self._update_events(watched)
        else:  # it closed while registered: nothing more will come
            self._forget(watched)

    def _flush(self, watched: _Watched, results: List[PollResult]) -> None:
        channel = watched.channel
        assert isinstance(channel, QueuedWriter)
        try:
            channel.flush(0)
        except EndpointClosedException:
            # The peer is gone. What it sent before is still readable: report
            # that, then the end (once); the application learns how much was
            # lost from its next write() or flush().
            if not watched.reading:
                self._forget(watched)
                return
            self._read(watched, results)
            if self._watching(watched) or self._closed.get(id(channel)) is watched:
                self._forget(watched)
                results.append((b"", channel))

    def _accept(self, server: _Server, results: List[PollResult]) -> None:
        for _ in range(MAX_ACCEPTS_PER_POLL):
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
                _LOGGER.warning("accept() on %r failed, retrying later: %s", server.sock, exc)
                return
            client = SocketChannel(sock, buffering=self._strategy)
            self.register(client)
            results.append(((addr, client), server.sock))

    def _channel_closed(self, watched: _Watched) -> None:
        """Called back by a channel closing while registered, before its fd closes."""
        key = id(watched.channel)
        if self._channels.get(key) is not watched:
            return
        if not watched.reading:  # its end was reported already
            self._forget(watched)
            return
        del self._channels[key]
        self._unselect(watched.fd, watched)
        self._closed[key] = watched

    def _output_changed(self, watched: _Watched, pending: bool) -> None:
        """Called back by a channel whose queued output appeared or drained."""
        if self._watching(watched) and watched.writing != pending:
            watched.writing = pending
            self._update_events(watched)

    def _update_events(self, watched: _Watched) -> None:
        """Select the fd for what the record needs now, or not at all."""
        events = watched.events
        key = self._selector.get_map().get(watched.fd)
        selected = key is not None and key.data is watched
        if events and selected:
            self._selector.modify(watched.fd, events, watched)
        elif events:
            self._evict_stale(watched.fd)
            self._selector.register(watched.fd, events, watched)
        else:
            if selected:
                self._selector.unregister(watched.fd)
            if watched.on_close is None or watched.on_output is None:
                # Reported, drained, and it could not tell us of more output
                # or of its close: nothing left to do for it.
                self._forget(watched)

    def _forget(self, watched: _Watched) -> None:
        key = id(watched.channel)
        if self._channels.get(key) is watched:
            del self._channels[key]
        if self._closed.get(key) is watched:
            del self._closed[key]
        self._unselect(watched.fd, watched)
        channel = watched.channel
        if watched.on_close is not None:
            assert isinstance(channel, CloseNotifier)
            channel.remove_close_callback(watched.on_close)
            watched.on_close = None
        if watched.on_output is not None:
            assert isinstance(channel, QueuedWriter)
            channel.remove_output_callback(watched.on_output)
            watched.on_output = None

    def _drop_server(self, server: _Server) -> None:
        self._servers.pop(id(server.sock), None)
        self._unselect(server.fd, server)

    def _unselect(self, fd: int, record: Union[_Watched, _Server]) -> None:
        """Remove ``fd`` from the selector if it is still registered for ``record``."""
        key = self._selector.get_map().get(fd)
        if key is not None and key.data is record:
            self._selector.unregister(fd)

    def _evict_stale(self, fd: int) -> None:
        """Make room for ``fd``: whatever holds that number closed it behind our back."""
        key = self._selector.get_map().get(fd)
        if key is None:
            return
        record = _record(key)
        if isinstance(record, _Server):
            _LOGGER.warning("fd %d was reused; dropping server %r", fd, record.sock)
            self._drop_server(record)
            return
        _LOGGER.warning(
            "fd %d was reused; %r lost its fd and is reported closed", fd, record.channel
        )
        self._forget(record)
        record.stale = True
        self._closed[id(record.channel)] = record

    def _find_bad_fds(self, exc: BaseException) -> List[Tuple[selectors.SelectorKey, int]]:
        """After select() failed: the keys whose fd was closed behind our back.

        Only this error path scans every fd. If none is bad, the error was not
        about an fd and is raised again. Bad servers are dropped; bad channels
        are unselected and returned, so that reading them reports them closed.
        """
        bad = [
            (key, selectors.EVENT_READ)
            for key in list(self._selector.get_map().values())
            if not _fd_is_open(key.fd)
        ]
        if not bad:
            raise exc
        for key, _ in bad:
            record = _record(key)
            if isinstance(record, _Server):
                _LOGGER.warning("dropping server %r: its fd %d was closed", record.sock, key.fd)
                self._drop_server(record)
            else:
                self._unselect(key.fd, record)
        return bad
