"""The fd audit: finding fds closed, or reused, behind a Poller's back
(and a Poller used by a process it was not made in: a forked child).

epoll forgets a closed fd silently, and a new file may take its number;
``FdAudit`` checks a slice of the registered fds per ``CHECK_INTERVAL``
against what they referred to when registered (no cost per poll), and after
``select()`` failed it finds which fd made it fail. What it finds goes to
``fd_went_bad``. The same slice finds output a channel queued but could not
tell of (a signal handler raised in ``write()`` before the channel told its
watcher): it is watched from then on, so it cannot wait forever.
"""

import sys
from typing import List, Union

from ._fds import current_pid, fd_is_open, identity_of
from ._records import Server, Watched, WriteSide, record_of
from ._registry import Registry
from ._selecting import drop_strays

__all__ = ["CHECK_INTERVAL", "FdAudit", "check_usable", "fd_went_bad"]

CHECK_INTERVAL = 0.25
"""Seconds between two slices of the fd audit."""
_CHECK_SLICE = 256


class FdAudit:
    """Checks a registry's fds, a slice at a time."""

    __slots__ = ("_cursor", "_registry")

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._cursor = 0

    def check_slice(self) -> None:
        """Check the next slice of fds against their identity when registered."""
        if sys.platform == "win32":  # no fstat() of sockets there: no identities
            return
        else:  # (an else: for mypy --platform win32)
            self._check_slice()

    def _check_slice(self) -> None:
        registry = self._registry
        records: List[Union[Watched, Server]] = [
            *registry.held.everything(),  # (dormant too: nothing to deliver, as far as we know)
            *registry.servers.values(),
        ]
        if not records:
            return
        start = self._cursor % len(records)
        chosen = records[start : start + _CHECK_SLICE]
        self._cursor = start + len(chosen)
        for record in chosen:
            now = identity_of(record.fd)
            if now != record.identity:
                fd_went_bad(registry, record, reused=now is not None)
            elif isinstance(record, Watched):
                _watch_untold_output(registry, record)

    def still_its_file(self, watched: Watched) -> bool:
        """Before a channel is read again without ``select()`` (its budget ran
        out): is its fd still the file it was? One ``fstat()``, per 256 KiB
        read at most; if not, the registry hears of it, and False."""
        now = identity_of(watched.fd)
        if now == watched.identity:
            return True
        fd_went_bad(self._registry, watched, reused=now is not None)
        return False

    def find_bad_fds(self, exc: BaseException) -> None:
        """After select() failed: deal with every record whose fd is gone.

        Only this error path scans every fd. If none is bad, the error was not
        about an fd and is raised again.
        """
        registry = self._registry
        bad = [
            record_of(key)
            for key in list(registry.selector.get_map().values())
            if not fd_is_open(key.fd)
        ]
        if not bad:
            if drop_strays(registry.selector):
                return
            raise exc
        for record in bad:
            if isinstance(record, (Watched, Server)):
                fd_went_bad(registry, record, reused=False)
            elif isinstance(record, WriteSide):
                fd_went_bad(registry, record.watched, reused=False)


def _watch_untold_output(registry: Registry, watched: Watched) -> None:
    """Output queued that the registry never heard of: watch it now."""
    writer = watched.writer
    if writer is not None and not watched.writing and writer.write_buffer_size:
        registry.output_changed(watched, True)


def fd_went_bad(registry: Registry, record: Union[Watched, Server], *, reused: bool) -> None:
    """The fd of ``record`` was closed (or ``reused`` by another file) behind our back."""
    if isinstance(record, Server):
        registry.drop_server(record, f"its fd {record.fd} was closed")
    else:
        # Closed: reading it reports what was buffered, then the end.
        # Reused by another file: it must not be read again.
        registry.move(record, "fd reused" if reused else "fd closed")


def check_usable(closed: bool, pid: int, action: str) -> None:
    """``ValueError`` for a closed Poller, ``RuntimeError`` for one made by
    process ``pid`` before this one was forked from it."""
    if closed:
        raise ValueError(f"{action} a closed Poller")
    if pid != current_pid():
        raise RuntimeError(
            f"{action} a Poller inherited from process {pid}: a forked child cannot"
            " use its parent's Poller (they may share one epoll instance); close it"
            " in the child, which leaves the parent's as it is, and make a new one"
        )
