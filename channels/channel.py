"""Channels over pipes and sockets: where their read and write syscalls are.

``PipeChannel`` reads a faucet fd and writes a sink fd; ``SocketChannel`` wraps
a connected stream socket. Both get framing and queued, zero-loss writes from
``Channel`` (in ``channels._base``, re-exported here with the protocols, so
``channels.channel`` offers every name it offered in 0.2). ``receive()`` is
the one translator of read errors; ``Outbox.push_or_raise`` (``channels._outbox``)
that of writes.
"""

import errno
import itertools
import logging
import os
import select
import socket
import stat
import sys
from typing import Deque, List, Optional

from ._base import DEFAULT_HIGH_WATER, DEFAULT_LINGER, READ_SIZE, Channel
from ._errors import EndpointClosedException, not_from_the_os
from ._fds import close_each, fd_ready, receive_into, restore_blocking
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
    Watcher,
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
    "Watcher",
]

_LOGGER = logging.getLogger(__name__)


PIPE_BUF = getattr(select, "PIPE_BUF", 512)
"""The largest write a pipe takes whole (POSIX guarantees at least 512)."""


IOV_BATCH = 64
"""Queued chunks handed to one ``sendmsg``/``writev`` call at most."""


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
        if not_from_the_os(exc):
            raise
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
        # The fds still to close, the sink last (write_eof() closes it alone).
        self._open = sorted({self._faucet, self._sink} - {-1}, key=lambda fd: fd == self._sink)
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
        inbox: List[bytes] = []
        PipeChannel._receive_into(self, inbox, size)
        return inbox[0] if inbox else b""

    def _receive_into(self, inbox: List[bytes], size: int) -> int:
        if not self._can_read:
            raise NotImplementedError(f"{self!r} has no faucet: it cannot read")
        faucet = self._faucet
        if faucet < 0:
            raise EndpointClosedException("the channel was closed")
        if self._shared and not fd_ready(faucet, writing=False):
            return 0  # one read() only when it cannot block
        return receive_into(inbox, map(os.read, (faucet,), (size,)), "the writer closed the pipe")

    def _read(self) -> bytes:
        return PipeChannel._receive(self, READ_SIZE)

    def _send_into(self, queue: Deque[memoryview], sent: List[int]) -> None:
        # (the write and the keeping of its count: one C call, see receive_into())
        if self._shared:
            # Up to PIPE_BUF bytes, and only when the sink has room for them:
            # such a write cannot block, whatever the fd's mode. (Windows has
            # no poll(), and its pipes no non-blocking mode: there it blocks.)
            if sys.platform != "win32" and not fd_ready(self._sink, writing=True):
                raise BlockingIOError(errno.EAGAIN, "the shared sink is full")
            sent.extend(map(os.write, (self._sink,), (queue[0][:PIPE_BUF],)))
        elif sys.platform != "win32" and len(queue) > 1:
            views = list(itertools.islice(queue, IOV_BATCH))
            sent.extend(map(os.writev, (self._sink,), (views,)))
        else:
            sent.extend(map(os.write, (self._sink,), (queue[0],)))

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
        close_each(self._open, "PipeChannel sink", 1)
        self._sink = -1

    def _sink_blocks(self) -> bool:
        return self._sink_blocking and not self._shared

    def _watched_changed(self, watched: bool) -> None:
        # A blocking sink of our own is non-blocking while a Poller delivers
        # the queue: a write then never blocks the loop.
        owned = self._sink_was_blocking and not self._shared and self._sink >= 0
        if owned and sys.platform != "win32" and not self._inherited():
            self._sink_blocking = not watched
            try:
                os.set_blocking(self._sink, not watched)
            except OSError as exc:  # a bad fd: the next write says so
                if not_from_the_os(exc):
                    raise

    @property
    def shared(self) -> bool:
        """True when the fds' flags are never changed (see the class doc)."""
        return self._shared

    def _release(self) -> None:
        faucet, sink = self._faucet, self._sink
        # Modes are restored, but not by a forked child: they belong to file
        # descriptions it shares with its parent. (A bad fd: closing says so.)
        # Done again after a raise, it restores and closes what is left.
        if sys.platform != "win32" and not self._inherited():
            if faucet in self._open and self._faucet_was_blocking:
                restore_blocking(faucet)
            sink_changed = self._sink_was_blocking and not self._sink_blocking
            if sink in self._open and sink != faucet and sink_changed:
                restore_blocking(sink)
        close_each(self._open, "PipeChannel")
        self._faucet = self._sink = -1

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
        return f"<PipeChannel {where} buffering={self.buffering!r}>"


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
        if not_from_the_os(exc):
            raise
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
    except OSError as exc:
        if not_from_the_os(exc):
            raise
        return "?"
    return peer_text(address, sock.family)


def peer_text(address: object, family: int) -> str:
    """A peer's ``address`` as ``socket`` gives it, for messages: host:port,
    [host]:port, unix:path (``family`` is the socket's)."""
    if isinstance(address, tuple) and family == getattr(socket, "AF_INET6", None):
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
        self._wrap(sock, _peer_name(sock))

    @classmethod
    def _of_accepted(
        cls, sock: socket.socket, peer: str, buffering: BufferingArg
    ) -> "SocketChannel":
        """A channel over a client socket ``accept()`` just gave, named
        ``peer``: connected and a stream, so ``__init__``'s checks are left
        out (three syscalls and two enum lookups: a quarter of an accept)."""
        channel = cls.__new__(cls)
        Channel.__init__(channel, buffering=buffering)
        channel._wrap(sock, peer)
        return channel

    def _wrap(self, sock: socket.socket, peer: str) -> None:
        self._sock = sock
        self._peer = peer
        sock.setblocking(False)

    @property
    def sock(self) -> socket.socket:
        """The wrapped socket."""
        return self._sock

    def _receive(self, size: int) -> bytes:
        inbox: List[bytes] = []
        SocketChannel._receive_into(self, inbox, size)
        return inbox[0] if inbox else b""

    def _receive_into(self, inbox: List[bytes], size: int) -> int:
        if self._closed:
            raise EndpointClosedException("the channel was closed")
        return receive_into(inbox, map(self._sock.recv, (size,)), "the peer closed the connection")

    def _read(self) -> bytes:
        return SocketChannel._receive(self, READ_SIZE)

    def _send_into(self, queue: Deque[memoryview], sent: List[int]) -> None:
        # (the send and the keeping of its count: one C call, see receive_into())
        if sys.platform != "win32" and len(queue) > 1:
            sent.extend(map(self._sock.sendmsg, (list(itertools.islice(queue, IOV_BATCH)),)))
        else:
            sent.extend(map(self._sock.send, (queue[0],)))

    def _write_fd(self) -> int:
        return self._sock.fileno()

    def _end_writing(self) -> None:
        self._sock.shutdown(socket.SHUT_WR)

    def _release(self) -> None:
        try:
            self._sock.close()
        except OSError as exc:
            if not_from_the_os(exc):
                raise
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
        return f"<{type(self).__name__} {where} peer={self._peer} buffering={self.buffering!r}>"
