"""Accepting clients: the errno policy, back-off and ``max_clients``.

The ``Acceptor`` decides when each server's fd is watched — not while it is
at its ``max_clients`` cap, not while it backs off after ``accept()`` ran out
of fds or memory — and turns ``accept()`` errors into one of three answers:
skip that connection, back off, or drop the server. It hands the accepted
sockets to the Poller, which wraps and registers them.
"""

import errno
import logging
import socket
import time
from typing import Any, Callable, Optional

from ._errors import not_from_the_os
from ._records import Server, Watched
from ._registry import Registry
from .channel import check_stream_socket, is_listening

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


class Acceptor:
    """When to watch each server, and what to do with ``accept()``'s errors."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
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

    def accept(self, server: Server, take: Callable[[Server, socket.socket, Any], Watched]) -> None:
        """Accept what waits, up to the cap and ``MAX_ACCEPTS_PER_POLL``; hand
        each client to ``take``, which registers it (or raises: it is closed)."""
        for _ in range(MAX_ACCEPTS_PER_POLL):
            if not self._wanted(server, time.monotonic()):
                break
            try:
                sock, address = server.sock.accept()
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno is None:  # a signal handler's, not accept()'s
                    raise
                if exc.errno in _SKIP_ERRNOS:
                    continue
                if exc.errno in _DEAD_SERVER_ERRNOS:
                    self._registry.drop_server(server, f"accept() failed: {exc}")
                    break
                self._back_off(server, exc)
                break
            server.backing_off = False
            try:
                watched = take(server, sock, address)
            except (OSError, ValueError) as exc:  # gone already, or past select()'s limit
                if not_from_the_os(exc):
                    sock.close()
                    raise
                _LOGGER.warning("closing a client of %r at once: %s", server.sock, exc)
                sock.close()
                continue
            except Exception as exc:
                if not_from_the_os(exc):
                    sock.close()
                    raise
                _LOGGER.exception(
                    "dropping a client of %r: it could not be registered", server.sock
                )
                sock.close()
                continue
            watched.server = server
            server.clients += 1
        self._update(server, time.monotonic())

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
