"""Accepting clients: the errno policy, back-off and ``max_clients``.

The ``Acceptor`` decides when each server's fd is watched — not while it is
at its ``max_clients`` cap, not while it backs off after ``accept()`` ran out
of fds or memory — and turns ``accept()`` errors into one of three answers:
skip that connection, back off, or drop the server. It hands the accepted
sockets to the Poller, which wraps and registers them.
"""

import _socket
import errno
import logging
import socket
import time
from typing import Any, Callable, Optional, Tuple, cast

from ._errors import not_from_the_os
from ._records import Server
from ._registry import Registry
from .channel import SocketChannel, check_stream_socket, is_listening, peer_text
from .events import ClientAccepted

__all__ = ["ACCEPT_BACKOFF", "MAX_ACCEPTS_PER_POLL", "Acceptor"]

_LOGGER = logging.getLogger("channels.poller")

MAX_ACCEPTS_PER_POLL = 128
"""Clients one ``poll()`` accepts from one server at the most; the rest wait
in the backlog for the next ``poll()``."""

ACCEPT_BACKOFF = 0.25
"""Seconds a server is not watched after accept() ran out of fds or memory."""

# accept() errors that concern only the connection being accepted: skip it and
# go on. From trio's SocketListener.accept (trio/_highlevel_socket.py), which
# collected them from the Linux, BSD and Windows accept(2) documentation.
_SKIP_ERRNOS = frozenset(
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
_BACKOFF_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# accept() errors that mean the listening socket itself is gone or unusable.
_DEAD_SERVER_ERRNOS = frozenset({errno.EBADF, errno.EINVAL, errno.ENOTSOCK})


def _accept_detached(sock: socket.socket) -> Tuple[int, Any]:
    """``accept(2)`` where the socket module has no ``_accept()``: (fd, address)."""
    client, address = sock.accept()
    return client.detach(), address


_ACCEPT: Callable[[socket.socket], Tuple[int, Any]] = getattr(
    socket.socket, "_accept", _accept_detached
)
"""accept(2), C code: a signal handler cannot run between it and the store
of the fd (``socket.accept()`` is Python code, which it can: the fd leaks)."""

_SOCKET_INIT = _socket.socket.__init__


def _unowned_socket() -> socket.socket:
    """A ``socket.socket`` with no fd yet (``_own()`` gives it one)."""
    return socket.socket.__new__(socket.socket)


def _own(fresh: socket.socket, server: Server) -> None:
    """Make ``fresh`` own the accepted fd, as ``socket.accept()`` would: the
    fd goes into the object by one C call, and once it did, ``fileno()``
    says so; ``socket.socket()`` would be Python code around that call."""
    setattr(fresh, "_io_refs", 0)  # noqa: B010 (what socket.socket.__init__ sets)
    setattr(fresh, "_closed", False)  # noqa: B010
    fd = server.pending[0][0]
    assert isinstance(fd, int)  # (what _ACCEPT gives: fresh sockets come from it only)
    _SOCKET_INIT(fresh, *server.kind, fd)


class Acceptor:
    """When to watch each server, and what to do with ``accept()``'s errors."""

    def __init__(
        self, registry: Registry, make_client: Callable[[socket.socket, str], SocketChannel]
    ) -> None:
        self._registry = registry
        self._make_client = make_client
        registry.client_left = self.client_left

    def add(self, sock: socket.socket, max_clients: Optional[int]) -> None:
        """Accept the clients of ``sock``, a listening stream socket; raise
        ``TypeError``/``ValueError`` for anything else or a bad ``max_clients``."""
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
        if id(sock) in self._registry.servers:
            return
        server = Server(sock, max_clients)
        self._registry.add_server(server)
        sock.setblocking(False)
        self._registry.select_server(server, True)

    def client_left(self, server: Server) -> None:
        """One of the server's clients no longer counts against ``max_clients``."""
        self._update(server, time.monotonic())

    def accept(self, server: Server) -> None:
        """Accept what waits, up to the cap and ``MAX_ACCEPTS_PER_POLL``:
        each client is registered and reported (or closed, if that fails)."""
        arriving = self._registry.arriving
        for _ in range(MAX_ACCEPTS_PER_POLL):
            if not self._wanted(server, time.monotonic()):
                break
            arriving[id(server)] = server
            try:
                if server.own_accept:  # (Python code: outside the promise)
                    server.pending.append(server.sock.accept())
                else:  # (the fd and address kept in one C call: see _admit())
                    server.pending.extend(map(_ACCEPT, (server.sock,)))
            except BlockingIOError:
                break
            except OSError as exc:
                if not_from_the_os(exc):
                    raise
                if exc.errno in _SKIP_ERRNOS:
                    continue
                if exc.errno in _DEAD_SERVER_ERRNOS:
                    self._registry.drop_server(server, f"accept() failed: {exc}")
                    break
                self._back_off(server, exc)
                break
            server.backing_off = False
            self._admit(server)
        arriving.pop(id(server), None)
        self._update(server, time.monotonic())

    def finish_arrivals(self) -> None:
        """Register and report (or close) the clients whose acceptance a raise cut short."""
        arriving = self._registry.arriving
        for server in list(arriving.values()):
            if server.pending or server.fresh is not None:
                self._admit(server)
            arriving.pop(id(server), None)
            self._update(server, time.monotonic())

    def _admit(self, server: Server) -> None:
        """Wrap the accepted fd in ``server.pending`` in a socket and a channel,
        register and report it, or close it if that fails. Each step is kept
        in ``server`` as it is made, so a signal handler raising anywhere in
        here leaves it for the next call to finish: no fd leaks, no client
        is reported twice or registered unreported (README: Signals)."""
        if not server.pending:  # (it was being refused)
            self._refuse(server)
            return
        fresh = server.fresh
        if fresh is None:
            accepted = server.pending[0][0]
            fresh = server.fresh = (
                accepted if isinstance(accepted, socket.socket) else _unowned_socket()
            )
        if fresh.fileno() < 0:
            _own(fresh, server)
        try:
            client = server.client
            if client is None:
                peer = peer_text(server.pending[0][1], server.kind[0])
                client = server.client = self._make_client(fresh, peer)
            watched = self._registry.watch(client)
        except (OSError, ValueError) as exc:  # gone already, or past select()'s limit
            if not_from_the_os(exc):
                raise
            _LOGGER.warning("closing a client of %r at once: %s", server.sock, exc)
            self._refuse(server)
            return
        except Exception as exc:
            if not_from_the_os(exc):
                raise
            _LOGGER.exception("dropping a client of %r: it could not be registered", server.sock)
            self._refuse(server)
            return
        made = (ClientAccepted(server.sock, cast(SocketChannel, client), server.pending[0][1]),)
        # No call from here to the end: the client is reported once.
        watched.server = server
        server.clients += 1
        self._registry.results += made
        server.client = None
        server.fresh = None
        del server.pending[:]

    def _refuse(self, server: Server) -> None:
        """Close the client being accepted (no longer pending from the first step)."""
        del server.pending[:]
        server.client = None
        if server.fresh is not None:
            server.fresh.close()
            server.fresh = None

    def next_wake(self, now: float) -> Optional[float]:
        """Seconds until a server that backs off is to be watched again (None: none is)."""
        wake: Optional[float] = None
        for server in self._registry.servers.values():
            until = server.resume_at - now
            if until > 0 and (wake is None or until < wake):
                wake = until
        return wake

    def resume(self, now: float) -> None:
        """Watch again the servers whose back-off is over."""
        for server in list(self._registry.servers.values()):
            if server.resume_at and now >= server.resume_at:
                server.resume_at = 0.0
                self._update(server, now)

    def _wanted(self, server: Server, now: float) -> bool:
        below_cap = server.max_clients is None or server.clients < server.max_clients
        return below_cap and now >= server.resume_at

    def _update(self, server: Server, now: float) -> None:
        self._registry.select_server(server, self._wanted(server, now))

    def _back_off(self, server: Server, exc: OSError) -> None:
        """Stop watching the server for a while, so a lack of fds cannot spin."""
        if not server.backing_off:  # log once per episode, not once per retry
            server.backing_off = True
            log = _LOGGER.warning if exc.errno in _BACKOFF_ERRNOS else _LOGGER.error
            log(
                "accept() on %r failed: %s; not accepting for %.2f s at a time until it works",
                server.sock,
                exc,
                ACCEPT_BACKOFF,
            )
        server.resume_at = time.monotonic() + ACCEPT_BACKOFF
