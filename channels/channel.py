"""Channels: one interface over pipes and sockets.

A channel reads without blocking and hands what it read to its framer (see
``channels.buffering``), which decides what one ``read()`` returns. This is the
only module that makes read/write syscalls, and it imports nothing POSIX-only,
so ``import channels`` works on Windows.

OS errors go through one translator: an ``OSError`` from a read or write on an
open channel means that end is gone, and becomes ``EndpointClosedException``
chained to it (``EBADF`` from an fd closed behind the channel's back included).
A channel closed with ``close()`` says so instead.

A channel knows nothing of pollers: whoever watches it may ask to be called back
when it closes (``add_close_callback``), which is how a ``Poller`` hears of a
close that epoll would silently forget.
"""

import abc
import contextlib
import functools
import logging
import os
import select
import socket
from typing import (
    Callable,
    Iterable,
    List,
    Optional,
    Protocol,
    Union,
    cast,
    runtime_checkable,
)

from ._errors import EndpointClosedException
from .buffering import BufferingArg, as_buffering

__all__ = [
    "BytesLike",
    "Channel",
    "ChannelLike",
    "CloseNotifier",
    "EndpointClosedException",
    "PipeChannel",
    "SocketChannel",
]

_LOGGER = logging.getLogger(__name__)

BytesLike = Union[bytes, bytearray, memoryview]
"""What ``write()`` accepts as a chunk (any C-contiguous buffer works at run time)."""

READ_SIZE = 64 * 1024
"""Bytes asked of the OS per read syscall."""

MAX_READ_PER_CALL = 256 * 1024
"""A ``read()`` stops asking the OS for more once it got this much, so one
call returns in bounded time even from a peer that never stops sending."""


@runtime_checkable
class ChannelLike(Protocol):
    """What a ``Poller`` and applications rely on: the 0.2 channel interface.

    Any object with these members can be registered with a ``Poller``; it
    need not inherit from ``Channel``.
    """

    @property
    def buffering(self) -> str:
        """``'line'`` for line-framed channels, ``'bytes'`` otherwise."""

    def read(self) -> bytes:
        """Return the next frame without blocking (``b''`` when none)."""

    def write(self, *chunks: bytes) -> None:
        """Write the chunks in order, as one stream."""

    def close(self) -> None:
        """Close the channel; calling it again does nothing."""

    def get_fd(self) -> int:
        """Return the fd to poll for reading."""


@runtime_checkable
class CloseNotifier(Protocol):
    """A channel that calls back its watchers when ``close()`` is called.

    The callbacks run before the channel releases its fd, so a watcher can
    still unregister that fd from an epoll/kqueue selector. ``Channel``
    implements this; a custom channel without it is still reported closed by
    a ``Poller`` once its fd reports EOF or an error.
    """

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the channel is closed."""

    def remove_close_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""


def _as_views(chunks: Iterable[object]) -> List[memoryview]:
    """Check every chunk before anything is written, so a bad one writes nothing."""
    views = []
    for chunk in chunks:
        if isinstance(chunk, str):
            raise TypeError("write() takes bytes-like chunks, not str (encode it first)")
        try:
            # Anything with the buffer protocol goes; memoryview() checks that.
            views.append(memoryview(cast(BytesLike, chunk)).cast("B"))
        except TypeError as exc:
            raise TypeError(f"write() takes bytes-like chunks, not {type(chunk).__name__}") from exc
    return views


def _wait_writable(fd: int) -> None:
    """Block until ``fd`` can take more data (or has failed, which send reports)."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        poller.poll()
    else:  # Windows has no poll(); select() takes any socket there.
        select.select([], [fd], [fd])


def _receive(recv: Callable[[int], bytes], at_eof: str) -> bytes:
    """One read syscall: the bytes there are, ``b''`` if none yet.

    The one translator of read errors: an ``OSError`` means that end is gone.
    """
    try:
        data = recv(READ_SIZE)
    except BlockingIOError:
        return b""
    except OSError as exc:
        raise EndpointClosedException(f"reading failed: {exc}") from exc
    if not data:
        raise EndpointClosedException(at_eof)
    return data


def _deliver(
    channel: object, send: Callable[[memoryview], int], fd: int, views: List[memoryview]
) -> None:
    """Send every view, in order, waiting whenever the OS takes none.

    The one translator of write errors: an ``OSError`` means that end is gone.
    Slicing a memoryview copies nothing, so a long chunk taken in many small
    pieces costs no more than one taken at once.
    """
    try:
        for view in views:
            rest = view
            while rest:
                try:
                    sent = send(rest)
                except BlockingIOError:
                    _wait_writable(fd)
                    continue
                rest = rest[sent:]
    except OSError as exc:
        raise EndpointClosedException(f"write to {channel!r} failed: {exc}") from exc


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
        os.fstat(fd)
    except OSError as exc:
        raise ValueError(f"PipeChannel {role} {fd} is not an open fd: {exc.strerror}") from exc
    return fd


class Channel(abc.ABC):
    """Base class of channels: owns the framer, so subclasses get framing free.

    A subclass implements ``_read()`` (return the bytes available now, ``b''``
    when none; raise ``EndpointClosedException`` at end of stream), ``write()``,
    ``close()`` (calling ``super().close()`` first, then releasing its
    resources) and, if it can be polled, ``get_fd()``. This is the 0.2 subclass
    contract, so 0.2 subclasses keep working.

    ``read()`` returns the next frame of the ``buffering`` strategy: every
    byte available (``'bytes'``) or one complete line (``'line'``).
    """

    def __init__(self, *, buffering: BufferingArg = "bytes") -> None:
        strategy = as_buffering(buffering)
        self._buffering = strategy.name
        self._framer = strategy.new_framer()
        self._closed = False
        # Why reading ended (peer closed, OS error, closed here); None while open.
        self._end: Optional[str] = None
        self._end_cause: Optional[BaseException] = None
        self._close_callbacks: List[Callable[[], None]] = []

    @property
    def buffering(self) -> str:
        """The framing strategy's name: ``'line'``, ``'bytes'``, or a custom one."""
        return self._buffering

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    def read(self) -> bytes:
        """Return the next frame without blocking; ``b''`` when there is none.

        After the other end closed, or after ``close()``, the frames still
        buffered are returned one by one (with line buffering, the final
        partial line last); then ``EndpointClosedException`` is raised.
        """
        framer = self._framer
        frame = framer.next_frame()
        if frame is not None:
            return frame
        if self._end is None:
            self._fill()
            frame = framer.next_frame()
            if frame is not None:
                return frame
            if self._end is None:
                return b""
        raise EndpointClosedException(f"{self!r}: {self._end}") from self._end_cause

    def _fill(self) -> None:
        """Feed the framer until the OS has nothing more now, or reading ended.

        Reading on until the OS has nothing left is what lets one call see both
        a final partial line and the close behind it.
        """
        framer = self._framer
        total = 0
        while total < MAX_READ_PER_CALL:
            try:
                data = self._read()
            except EndpointClosedException as exc:
                self._end_reading(str(exc) or "the other end closed", exc.__cause__)
                return
            if not data:
                return
            framer.feed(data)
            total += len(data)

    def _end_reading(self, why: str, cause: Optional[BaseException]) -> None:
        if self._end is None:
            self._end = why
            self._end_cause = cause
            self._framer.feed_eof()

    @abc.abstractmethod
    def _read(self) -> bytes:
        """Return the bytes the OS has now (``b''`` if none); raise
        ``EndpointClosedException`` at end of stream."""

    @abc.abstractmethod
    def write(self, *chunks: BytesLike) -> None:
        """Write the chunks in order, as one stream."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the channel; calling it again does nothing.

        The base implementation marks the channel closed, ends reading (frames
        already buffered stay readable) and calls the close callbacks.
        Subclasses call it first, then release their fds.
        """
        if self._closed:
            return
        self._closed = True
        self._end_reading("the channel was closed", None)
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback()

    def get_fd(self) -> int:
        """Return the fd to poll for reading; ``-1`` once closed.

        Raises ``NotImplementedError`` if the channel cannot read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be polled for reading")

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the channel is closed, before its fd is."""
        self._close_callbacks.append(callback)

    def remove_close_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        with contextlib.suppress(ValueError):
            self._close_callbacks.remove(callback)


class PipeChannel(Channel):
    """A channel over file descriptors: a ``faucet`` to read, a ``sink`` to write.

    ``faucet`` is switched to non-blocking mode (as in 0.2) and restored to
    blocking mode when the channel closes it. ``sink`` keeps its mode: with a
    blocking sink, ``write()`` returns once the OS took everything; with a
    non-blocking one it waits for the sink to take more. Both given: a
    bi-directional channel. The channel owns the fds and closes them.
    """

    def __init__(
        self,
        faucet: Optional[int] = None,
        sink: Optional[int] = None,
        *,
        buffering: BufferingArg = "bytes",
    ) -> None:
        if faucet is None and sink is None:
            raise ValueError("PipeChannel needs a faucet fd, a sink fd, or both; got neither")
        if faucet is not None:
            _check_fd(faucet, "faucet")
        if sink is not None:
            _check_fd(sink, "sink")
        super().__init__(buffering=buffering)
        self._can_read = faucet is not None
        self._can_write = sink is not None
        self._faucet = -1 if faucet is None else faucet
        self._sink = -1 if sink is None else sink
        self._faucet_was_blocking = False
        if faucet is not None:
            self._faucet_was_blocking = os.get_blocking(faucet)
            os.set_blocking(faucet, False)

    def _read(self) -> bytes:
        if not self._can_read:
            raise NotImplementedError(f"{self!r} has no faucet: it cannot read")
        if self._faucet < 0:
            raise EndpointClosedException("the channel was closed")
        return _receive(functools.partial(os.read, self._faucet), "the writer closed the pipe")

    def write(self, *chunks: BytesLike) -> None:
        """Write the chunks in order; raise ``EndpointClosedException`` if the
        reader is gone or the channel was closed."""
        views = _as_views(chunks)
        if not self._can_write:
            raise NotImplementedError(f"{self!r} has no sink: it cannot write")
        if self._sink < 0:
            raise EndpointClosedException(f"write to {self!r}: the channel was closed")
        _deliver(self, functools.partial(os.write, self._sink), self._sink, views)

    def close(self) -> None:
        """Close the channel and its fds; calling it again does nothing."""
        if self._closed:
            return
        try:
            super().close()
        finally:
            faucet, sink = self._faucet, self._sink
            self._faucet = self._sink = -1
            if faucet >= 0:
                if self._faucet_was_blocking:
                    # A bad fd is reported by _close_fd just below.
                    with contextlib.suppress(OSError):
                        os.set_blocking(faucet, True)
                _close_fd(faucet, "PipeChannel faucet")
            if sink >= 0 and sink != faucet:
                _close_fd(sink, "PipeChannel sink")

    def get_fd(self) -> int:
        """Return the faucet fd (``-1`` once closed).

        Raises ``NotImplementedError`` for a write-only channel.
        """
        if not self._can_read:
            raise NotImplementedError(f"{self!r} has no faucet: it cannot be polled for reading")
        return self._faucet

    def __repr__(self) -> str:
        if self._closed:
            where = "closed"
        else:
            where = " ".join(
                f"{role}={fd}"
                for role, fd in (("faucet", self._faucet), ("sink", self._sink))
                if fd >= 0
            )
        return f"<PipeChannel {where} buffering={self._buffering!r}>"


def _check_stream_socket(sock: object, user: str) -> socket.socket:
    if not isinstance(sock, socket.socket):
        raise TypeError(f"{user} takes a socket.socket, not {type(sock).__name__}")
    if sock.fileno() < 0:
        raise ValueError(f"{user} takes an open socket; {sock!r} is closed")
    if sock.type != socket.SOCK_STREAM:
        raise ValueError(f"{user} takes a stream socket (SOCK_STREAM), not {sock.type!r}")
    return sock


def _is_listening(sock: socket.socket) -> bool:
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:  # pragma: no cover - platforms without SO_ACCEPTCONN
        return False
    return bool(sock.getsockopt(socket.SOL_SOCKET, option))


class SocketChannel(Channel):
    """A channel over a connected stream socket (TCP, Unix, ``socketpair``).

    The socket is made non-blocking; the channel owns it and closes it.
    """

    def __init__(self, sock: socket.socket, *, buffering: BufferingArg = "bytes") -> None:
        _check_stream_socket(sock, "SocketChannel")
        if _is_listening(sock):
            raise ValueError(
                "SocketChannel takes a connected socket; this one is listening"
                " (pass it to Poller.add_server)"
            )
        super().__init__(buffering=buffering)
        self._sock = sock
        sock.setblocking(False)

    @property
    def sock(self) -> socket.socket:
        """The wrapped socket."""
        return self._sock

    def _read(self) -> bytes:
        if self._closed:
            raise EndpointClosedException("the channel was closed")
        return _receive(self._sock.recv, "the peer closed the connection")

    def write(self, *chunks: BytesLike) -> None:
        """Write the chunks in order; raise ``EndpointClosedException`` if the
        peer is gone or the channel was closed."""
        views = _as_views(chunks)
        if self._closed:
            raise EndpointClosedException(f"write to {self!r}: the channel was closed")
        _deliver(self, self._sock.send, self._sock.fileno(), views)

    def close(self) -> None:
        """Close the channel and its socket; calling it again does nothing."""
        if self._closed:
            return
        try:
            super().close()
        finally:
            try:
                self._sock.close()
            except OSError as exc:
                _LOGGER.warning("closing the socket of %r failed: %s", self, exc)

    def get_fd(self) -> int:
        """Return the socket's fd (``-1`` once closed)."""
        return self._sock.fileno()

    def __repr__(self) -> str:
        where = "closed" if self._closed else f"fd={self._sock.fileno()}"
        return f"<{type(self).__name__} {where} buffering={self._buffering!r}>"
