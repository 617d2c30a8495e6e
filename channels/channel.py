"""Channels over pipes and sockets: where their read and write syscalls are.

``PipeChannel`` reads a faucet fd and writes a sink fd; ``SocketChannel`` wraps
a connected stream socket. Both get framing and queued, zero-loss writes from
``Channel`` (in ``channels._base``, re-exported here with the protocols, so
``channels.channel`` offers every name it offered in 0.2). ``receive()`` is
the one translator of read errors; ``Outbox.push_or_raise`` (``channels._outbox``)
that of writes.
"""

import contextlib
import errno
import itertools
import logging
import os
import select
import socket
import stat
import sys
from typing import Callable, Deque, Optional

from ._base import DEFAULT_HIGH_WATER, DEFAULT_LINGER, READ_SIZE, Channel
from ._errors import EndpointClosedException
from ._fds import fd_ready
from ._protocols import (
    AGAIN,
    DRAINED,
    MORE,
    BytesLike,
    ChannelLike,
    CloseNotifier,
    ClosesInBackground,
    DrainNotifier,
    FrameSource,
    Lingering,
    QueuedWriter,
)
from .buffering import BufferingArg

__all__ = [
    "AGAIN",
    "DRAINED",
    "MORE",
    "BytesLike",
    "Channel",
    "ChannelLike",
    "CloseNotifier",
    "ClosesInBackground",
    "DrainNotifier",
    "EndpointClosedException",
    "FrameSource",
    "Lingering",
    "PipeChannel",
    "QueuedWriter",
    "SocketChannel",
]

_LOGGER = logging.getLogger(__name__)


PIPE_BUF = getattr(select, "PIPE_BUF", 512)
"""The largest write a pipe takes whole (POSIX guarantees at least 512)."""


IOV_BATCH = 64
"""Queued chunks handed to one ``sendmsg``/``writev`` call at most."""


def receive(recv: Callable[[int], bytes], size: int, at_eof: str) -> bytes:
    """One read syscall of at most ``size`` bytes: the bytes there are,
    ``b''`` if none yet.

    The one translator of read errors: an ``OSError`` means that end is gone.
    """
    try:
        data = recv(size)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno is None:  # a signal handler's, not the OS's: it propagates
            raise
        raise EndpointClosedException(f"reading failed: {exc}") from exc
    if not data:
        raise EndpointClosedException(at_eof)
    return data


def _close_fd(fd: int, owner: str) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        # Closing is done either way; the fd was most likely closed behind
        # the channel's back, which the application should hear about.
        _LOGGER.warning("closing fd %d of %s failed: %s", fd, owner, exc)


def _check_fd(fd: object, role: str) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int):
        raise TypeError(f"PipeChannel {role} must be an int fd, not {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"PipeChannel {role} must be an open fd (>= 0), not {fd}")
    try:
        mode = os.fstat(fd).st_mode
    except OverflowError:
        raise ValueError(f"PipeChannel {role} {fd} is not an fd: too large") from None
    except OSError as exc:
        raise ValueError(f"PipeChannel {role} {fd} is not an open fd: {exc.strerror}") from exc
    if stat.S_ISDIR(mode):
        raise ValueError(f"PipeChannel {role} {fd} is a directory: it cannot be a stream")
    if sys.platform != "win32":
        import fcntl  # noqa: PLC0415 (POSIX only: `import channels` needs none of it)

        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
        wrong = os.O_WRONLY if role == "faucet" else os.O_RDONLY
        if access == wrong:
            way = "writing" if role == "faucet" else "reading"
            raise ValueError(
                f"PipeChannel {role} {fd} is open for {way} only: a {role} must be"
                f" {'readable' if role == 'faucet' else 'writable'}"
            )
    return fd


class PipeChannel(Channel):
    """A channel over file descriptors: a ``faucet`` to read, a ``sink`` to write.

    ``faucet`` is switched to non-blocking mode (as in 0.2) and restored to
    blocking mode when the channel closes it. With a non-blocking ``sink``,
    what the OS does not take is queued (see ``Channel.write``). A blocking
    ``sink`` is left blocking while no ``Poller`` watches the channel, so
    ``write()`` returns once the OS took everything, as in 0.2 (nobody else
    would deliver a queue: a 0.2 program may write and then wait for its
    child without closing); while a ``Poller`` watches it, the sink is
    non-blocking and writes queue like a socket's, so they never block the
    loop; its mode is restored when the Poller lets go or the channel
    closes. Both given: a bi-directional channel. The channel owns the fds
    and closes them.

    ``shared=True`` is for fds shared with other processes — a terminal, the
    process's own stdin and stdout — whose ``O_NONBLOCK`` flag belongs to an
    open file description others use too: the channel then never changes a
    flag. It reads only when ``poll()`` says a read cannot block (one
    ``os.read``), and writes at most ``PIPE_BUF`` bytes at a time, only when
    the sink has room for them; the rest is queued. (POSIX only.)
    """

    _short_read_drains = True  # a pipe's short read means it is empty

    def __init__(
        self,
        faucet: Optional[int] = None,
        sink: Optional[int] = None,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
        shared: bool = False,
    ) -> None:
        if faucet is None and sink is None:
            raise ValueError("PipeChannel needs a faucet fd, a sink fd, or both; got neither")
        if faucet is not None and sys.platform == "win32":
            raise NotImplementedError(
                "PipeChannel cannot read on Windows: select() there only takes sockets."
                " Use a SocketChannel (over socket.socketpair() for an in-process pipe);"
                " a write-only PipeChannel(sink=fd) works."
            )
        if faucet is not None:
            _check_fd(faucet, "faucet")
        if sink is not None:
            _check_fd(sink, "sink")
        super().__init__(buffering=buffering, high_water=high_water, linger=linger)
        self._can_read = faucet is not None
        self._can_write = sink is not None
        self._faucet = -1 if faucet is None else faucet
        self._sink = -1 if sink is None else sink
        self._faucet_was_blocking = False
        self._shared = bool(shared)
        if sys.platform == "win32":
            # A sink there is always blocking: os.write() takes all of it.
            self._sink_was_blocking = self._sink_blocking = True
        else:
            if faucet is not None and not self._shared:
                self._faucet_was_blocking = os.get_blocking(faucet)
                os.set_blocking(faucet, False)
            self._sink_was_blocking = sink is not None and os.get_blocking(sink)
            self._sink_blocking = self._sink_was_blocking

    def _receive(self, size: int) -> bytes:
        if not self._can_read:
            raise NotImplementedError(f"{self!r} has no faucet: it cannot read")
        faucet = self._faucet
        if faucet < 0:
            raise EndpointClosedException("the channel was closed")
        if self._shared and not fd_ready(faucet, writing=False):
            return b""  # one read() only when it cannot block
        return receive(lambda size: os.read(faucet, size), size, "the writer closed the pipe")

    def _read(self) -> bytes:
        return PipeChannel._receive(self, READ_SIZE)

    def _send(self, queue: Deque[memoryview]) -> int:
        if self._shared:
            # Up to PIPE_BUF bytes, and only when the sink has room for them:
            # such a write cannot block, whatever the fd's mode. (Windows has
            # no poll(), and its pipes no non-blocking mode: there it blocks.)
            if sys.platform != "win32" and not fd_ready(self._sink, writing=True):
                raise BlockingIOError(errno.EAGAIN, "the shared sink is full")
            return os.write(self._sink, queue[0][:PIPE_BUF])
        if sys.platform != "win32" and len(queue) > 1:
            return os.writev(self._sink, list(itertools.islice(queue, IOV_BATCH)))
        return os.write(self._sink, queue[0])

    def _write_fd(self) -> int:
        if not self._can_write:
            raise NotImplementedError(f"{self!r} has no sink: it cannot write")
        return self._sink

    def _check_can_end_writing(self) -> None:
        if self._sink == self._faucet:
            raise NotImplementedError(
                f"{self!r} reads and writes one fd: it cannot end writing alone"
            )

    def _end_writing(self) -> None:
        sink, self._sink = self._sink, -1
        os.close(sink)

    def _sink_blocks(self) -> bool:
        return self._sink_blocking and not self._shared

    def _watched_changed(self, watched: bool) -> None:
        # A blocking sink of our own is non-blocking while a Poller delivers
        # the queue: a write then never blocks the loop.
        owned = self._sink_was_blocking and not self._shared and self._sink >= 0
        if owned and sys.platform != "win32" and not self._inherited():
            self._sink_blocking = not watched
            with contextlib.suppress(OSError):  # a bad fd: the next write says so
                os.set_blocking(self._sink, not watched)

    @property
    def shared(self) -> bool:
        """True when the fds' flags are never changed (see the class doc)."""
        return self._shared

    def _release(self) -> None:
        faucet, sink = self._faucet, self._sink
        self._faucet = self._sink = -1
        two = sink >= 0 and sink != faucet
        # Modes are restored, but not by a forked child: they belong to file
        # descriptions it shares with its parent. (A bad fd: _close_fd says so.)
        if sys.platform != "win32" and not self._inherited():
            if faucet >= 0 and self._faucet_was_blocking:
                with contextlib.suppress(OSError):
                    os.set_blocking(faucet, True)
            if two and self._sink_was_blocking and not self._sink_blocking:
                with contextlib.suppress(OSError):
                    os.set_blocking(sink, True)
        if faucet >= 0:
            _close_fd(faucet, "PipeChannel faucet")
        if two:
            _close_fd(sink, "PipeChannel sink")

    def get_fd(self) -> int:
        """Return the faucet fd (``-1`` once closed).

        Raises ``NotImplementedError`` for a write-only channel.
        """
        if not self._can_read:
            raise NotImplementedError(f"{self!r} has no faucet: it cannot be polled for reading")
        return -1 if self._closed else self._faucet

    def __repr__(self) -> str:
        if self._closed:
            where = "closing" if self._handed_over else "closed"
        else:
            where = " ".join(
                f"{role}={fd}"
                for role, fd in (("faucet", self._faucet), ("sink", self._sink))
                if fd >= 0
            )
        return f"<PipeChannel {where} buffering={self._buffering!r}>"


def check_stream_socket(sock: object, user: str) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"{user} takes a socket.socket, not {type(sock).__name__}")
    if sock.fileno() < 0:
        raise ValueError(f"{user} takes an open socket; {sock!r} is closed")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"{user} takes a stream socket (SOCK_STREAM), not {sock.type!r}")
    return sock


def is_listening(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:  # pragma: no cover - platforms without SO_ACCEPTCONN
        return False
    return bool(sock.getsockopt(socket.SOL_SOCKET, option))


def _check_connected(sock: socket.socket) -> None:
    try:
        sock.getpeername()
    except OSError as exc:
        # (one that was connected and reset has the reset pending: it is read)
        pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if exc.errno == errno.ENOTCONN and not pending:
            raise ValueError(
                f"SocketChannel takes a connected socket; {sock!r} is not connected"
                " (connect it first, or pass a listening one to Poller.add_server)"
            ) from None


def _peer_name(sock: socket.socket) -> str:
    """The peer, for messages: host:port, [host]:port, unix:path, or '?'."""
    try:
        address = sock.getpeername()
    except OSError:
        return "?"
    if isinstance(address, tuple) and sock.family == getattr(socket, "AF_INET6", None):
        return f"[{address[0]}]:{address[1]}"
    if isinstance(address, tuple):
        return f"{address[0]}:{address[1]}"
    if isinstance(address, bytes):  # Linux abstract namespace
        address = address.decode("utf-8", "backslashreplace")
    return f"unix:{address}" if address else "unix:(unnamed)"


class SocketChannel(Channel):
    """A channel over a connected stream socket (TCP, Unix, ``socketpair``).

    The socket is made non-blocking; what it does not take at once is queued
    (see ``Channel.write``). The channel owns the socket and closes it.
    """

    _short_read_drains = True  # a stream socket's short read means it is empty
    _reading_breaks_writing = True  # a read error: the connection is gone

    def __init__(
        self,
        sock: socket.socket,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        check_stream_socket(sock, "SocketChannel")
        if is_listening(sock):
            raise ValueError(
                "SocketChannel takes a connected socket; this one is listening"
                " (pass it to Poller.add_server)"
            )
        _check_connected(sock)
        super().__init__(buffering=buffering, high_water=high_water, linger=linger)
        self._sock = sock
        self._peer = _peer_name(sock)
        sock.setblocking(False)

    @property
    def sock(self) -> socket.socket:
        """The wrapped socket."""
        return self._sock

    def _receive(self, size: int) -> bytes:
        if self._closed:
            raise EndpointClosedException("the channel was closed")
        return receive(self._sock.recv, size, "the peer closed the connection")

    def _read(self) -> bytes:
        return SocketChannel._receive(self, READ_SIZE)

    def _send(self, queue: Deque[memoryview]) -> int:
        if sys.platform != "win32" and len(queue) > 1:
            return self._sock.sendmsg(itertools.islice(queue, IOV_BATCH))
        return self._sock.send(queue[0])

    def _write_fd(self) -> int:
        return self._sock.fileno()

    def _end_writing(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def _release(self) -> None:
        try:
            self._sock.close()
        except OSError as exc:
            _LOGGER.warning("closing the socket of %r failed: %s", self, exc)

    def get_fd(self) -> int:
        """Return the socket's fd (``-1`` once closed)."""
        return -1 if self._closed else self._sock.fileno()

    @property
    def peer(self) -> str:
        """The peer's address as text (``'?'`` when the OS would not tell)."""
        return self._peer

    def __repr__(self) -> str:
        if self._closed:
            where = "closing" if self._handed_over else "closed"
        else:
            where = f"fd={self._sock.fileno()}"
        return f"<{type(self).__name__} {where} peer={self._peer} buffering={self._buffering!r}>"
