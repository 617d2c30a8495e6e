"""File descriptor probes and the syscalls a signal handler must not cut in two.

Is an fd open, what is it, can it be read or written now; and the reads and
closes that keep their result in one C call (``receive_into``,
``close_each``). Standard library only, no state. Windows sockets are not fds to ``os.fstat``,
and Windows has no ``select.poll()``: each helper says what it does there.
Waiting here never allocates an fd (``select.poll()`` objects are not fds),
so a process that ran out of fds can still deliver its queued output.
"""

import collections
import itertools
import logging
import os
import select
import selectors
import stat
import sys
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

from ._checks import MAX_WAIT
from ._errors import EndpointClosedException, not_from_the_os

__all__ = [
    "POSIX_SELECT_LIMIT",
    "WINDOWS_SELECT_LIMIT",
    "FdWaiter",
    "Identity",
    "check_select_limit",
    "close_each",
    "current_pid",
    "fd_is_open",
    "fd_ready",
    "identity_of",
    "is_always_ready",
    "receive_into",
    "restore_blocking",
]

_LOGGER = logging.getLogger("channels.channel")

Identity = Optional[int]
"""What an fd refers to, device and inode (hashed); None when it is closed
(or on Windows)."""

_IDENTITY_BITS = (1 << 60) - 1  # (an int of two 30-bit digits: 32 bytes, not 48)

_pid = os.getpid()


def current_pid() -> int:
    """This process's id, kept up to date across ``fork()`` at no syscall:
    what a channel or Poller compares with its creator's to know it was
    inherited by a child."""
    return _pid


def _forked() -> None:
    global _pid  # noqa: PLW0603 (one process-wide fact, updated by the fork hook)
    _pid = os.getpid()


if sys.platform != "win32":
    os.register_at_fork(after_in_child=_forked)

WINDOWS_SELECT_LIMIT = 512
"""Sockets ``select()`` takes on Windows (CPython's FD_SETSIZE there)."""

POSIX_SELECT_LIMIT = 1024
"""``select()`` takes fds below this (FD_SETSIZE) elsewhere; past it, it fails obscurely."""


def identity_of(fd: int) -> Identity:
    """What the fd refers to, to notice it was closed or reused: device and
    inode hashed into one 60-bit int (one small object per record, not three;
    two files share one only by a 1 in 2**60 chance)."""
    if sys.platform == "win32":
        return None
    else:  # (an else: for mypy --platform win32)
        try:
            info = os.fstat(fd)
        except OSError as exc:
            if exc.errno is None:  # a signal handler's: it propagates
                raise
            return None
        return hash((info.st_dev, info.st_ino)) & _IDENTITY_BITS


def is_always_ready(fd: int) -> bool:
    """True for an fd open on a regular file or a character device that
    epoll refuses (``/dev/null``): always ready, so nothing to wait for."""
    try:
        mode = os.fstat(fd).st_mode
        return stat.S_ISREG(mode) or stat.S_ISCHR(mode)
    except OSError as exc:
        if exc.errno is None:  # a signal handler's: it propagates
            raise
        return False


def fd_is_open(fd: int) -> bool:
    """True while ``fd`` is an open file descriptor (a socket on Windows)."""
    try:
        if sys.platform == "win32":
            select.select([fd], [], [], 0)
        else:
            os.fstat(fd)
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno is None:  # a signal handler's
            raise
        return False
    return True


def fd_ready(fd: int, *, writing: bool, timeout: Optional[float] = 0.0) -> bool:
    """Wait at most ``timeout`` seconds (None: no limit) until a read (or a
    write of ``PIPE_BUF`` bytes) on ``fd`` would not block, or it failed, which
    the next read or write then reports. Windows has no ``poll()``: there it
    waits with ``select()``, which takes sockets only."""
    if sys.platform == "win32":
        if timeout is not None and timeout > MAX_WAIT:
            timeout = MAX_WAIT
        readable, writable, failed = select.select(
            [] if writing else [fd], [fd] if writing else [], [fd], timeout
        )
        return bool(readable or writable or failed)
    else:
        poller = select.poll()
        poller.register(fd, select.POLLOUT if writing else select.POLLIN)
        return bool(poller.poll(None if timeout is None else _milliseconds(timeout)))


def _milliseconds(timeout: float) -> int:
    # Round up, so a wait is never shorter than asked (as selectors does);
    # at most MAX_WAIT (the caller waits again if it must: inf fits no int).
    timeout = min(timeout, MAX_WAIT)
    return max(0, int(timeout * 1000) + 1) if timeout > 0 else 0


class FdWaiter:
    """Waits on many fds for writability at once, with no fd of its own.

    ``select.poll()`` needs no fd (epoll and kqueue do), so this works when
    the process is out of them; an fd closed behind our back comes back as
    ready with ``bad`` set (POLLNVAL) instead of failing the whole wait.
    """

    def __init__(self) -> None:
        self._fds: Dict[int, int] = {}
        if sys.platform != "win32":
            self._poll = select.poll()

    def add(self, fd: int) -> None:
        """Wait on ``fd`` too."""
        self._fds[fd] = fd
        if sys.platform != "win32":
            self._poll.register(fd, select.POLLOUT)

    def remove(self, fd: int) -> None:
        """Stop waiting on ``fd``."""
        if self._fds.pop(fd, None) is not None and sys.platform != "win32":
            self._poll.unregister(fd)

    def wait(self, timeout: float) -> List[Tuple[int, bool]]:
        """The fds that can take more data now, each with True if it is bad."""
        if sys.platform == "win32":
            fds = list(self._fds)
            try:
                _, writable, failed = select.select([], fds, fds, min(timeout, MAX_WAIT))
            except (OSError, ValueError) as exc:
                if not_from_the_os(exc):
                    raise
                return [(fd, not fd_is_open(fd)) for fd in fds]
            return [(fd, False) for fd in {*writable, *failed}]
        else:
            return [
                (fd, bool(flags & select.POLLNVAL))
                for fd, flags in self._poll.poll(_milliseconds(timeout))
            ]


def check_select_limit(selector: selectors.BaseSelector, fd: int, what: object) -> None:
    """Raise ``ValueError`` if ``selector`` is a ``SelectSelector`` that cannot take ``fd``."""
    if not isinstance(selector, selectors.SelectSelector):
        return
    if sys.platform == "win32":
        if len(selector.get_map()) >= WINDOWS_SELECT_LIMIT:
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


def receive_into(inbox: List[bytes], reading: Iterator[bytes], at_eof: str) -> int:
    """One read syscall, appended to ``inbox``; return how many bytes came.

    ``reading`` is ``map(syscall, args...)`` yielding that one read: running
    it inside ``list.extend()`` makes the read and the keeping of its result
    one C call, so a signal handler, which CPython runs only between
    bytecodes, cannot come in between and lose what the OS handed over.
    The one translator of read errors: an ``OSError`` means that end is gone.
    """
    try:
        inbox.extend(reading)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if exc.errno is None:  # a signal handler's, not the OS's: it propagates
            raise
        raise EndpointClosedException(f"reading failed: {exc}") from exc
    got = len(inbox[-1])
    if not got:
        del inbox[-1]
        raise EndpointClosedException(at_eof)
    return got


def restore_blocking(fd: int) -> None:
    """Make ``fd`` blocking again (an error: closing it will say so). POSIX only."""
    if sys.platform != "win32":
        try:
            os.set_blocking(fd, True)
        except OSError as exc:  # a bad fd: closing it says so
            if not_from_the_os(exc):
                raise


_DRAIN: Callable[[Iterable[None]], None] = collections.deque[None](maxlen=0).extend
"""Runs an iterator to its end in C."""


def close_each(fds: List[int], owner: str, count: int = -1) -> None:
    """Close the last ``count`` fds of ``fds`` (all: -1), removing them.

    Each leaves the list and is closed in one C call, so a signal handler
    raising in here neither leaves one open nor has one closed twice (by
    then its number may be someone else's): call it again to finish."""
    while fds and count:
        count -= 1
        fd = fds[-1]
        try:
            _DRAIN(map(os.close, itertools.islice(iter(fds.pop, None), 1)))
        except OSError as exc:
            if not_from_the_os(exc):
                raise
            # Closed either way; most likely closed behind the channel's
            # back, which the application should hear about.
            _LOGGER.warning("closing fd %d of %s failed: %s", fd, owner, exc)
