"""Endings: reporting channels that closed, and closing channels ourselves.

The chores of a Poller about ending, each over its registry:

- ``report_pending``: a channel closed by the application while registered,
  or whose fd was lost, is reported by the next ``poll()``, after the frames
  it still had (none for a STALE one: its fd is someone else's now; none
  for a paused one: the application reads them with ``read()`` if it wants);
- ``finish_closing``: a CLOSING channel (the Poller closes it: a line too
  long) is closed, and a close the registry took (``close()`` with output
  queued) is finished once the output is delivered, or dropped once the
  channel's ``linger`` is over, without ever blocking the loop;
- ``flush_output``: a channel's queued output, sent as its fd takes it; a
  write that fails ends the channel;
- at exit, closes the registry took and did not finish yet are finished;
- ``close_every_channel``: ``Poller.close_all()``: the one linger loop
  (``_outbox.deliver``) for all channels at once, within one deadline, then
  every channel closed, whatever fails on the way.
"""

import atexit
import logging
import socket
from typing import Callable, List, Optional, Tuple

from ._errors import BAD_CHANNEL_ERRORS, EndpointClosedException, not_from_the_os
from ._fds import current_pid
from ._outbox import deliver
from ._protocols import AGAIN
from ._records import State, Watched
from ._registry import UNFINISHED, Registry

__all__ = [
    "close_every_channel",
    "close_every_server",
    "close_poller",
    "finish_closing",
    "finish_now",
    "flush_output",
    "report_pending",
]

_LOGGER = logging.getLogger("channels.poller")


_CLOSABLE = frozenset({State.OPEN, State.HALF_CLOSED, State.CLOSING, State.DELIVERING})


def report_pending(registry: Registry, budget: int) -> None:
    """Report every CLOSED, LOST, STALE and BROKEN channel, after its last
    frames (at most ``budget`` bytes of them: a BROKEN one's peer may still
    be sending)."""
    for watched in list(registry.pending.values()):
        # A paused channel is not read, even now: its frames stay in it.
        if watched.state is not State.STALE and not watched.paused:
            _read_to_the_end(registry, watched, budget)
        registry.move(watched, "report")


def _read_to_the_end(registry: Registry, watched: Watched, budget: int) -> None:
    channel = watched.channel
    try:
        state = AGAIN
        while state == AGAIN:  # (AGAIN: the end, or an error, is what the next call gives)
            state = watched.source.read_frames_into(registry.results, budget)
    except EndpointClosedException:
        pass  # the end: its report follows
    except BAD_CHANNEL_ERRORS as exc:
        if not_from_the_os(exc):
            raise
        _LOGGER.exception("read() of %r failed; reporting it closed", channel)


def flush_output(registry: Registry, watched: Watched) -> None:
    """Send what the OS takes now of a channel's queued output (its write fd
    is ready). A failed write ends the channel; a close taken by the
    registry whose output is all delivered is finished, and reported by
    this very poll."""
    writer = watched.writer
    if writer is None or not watched.writing:
        return
    try:
        writer.flush(0)
    except (EndpointClosedException, *BAD_CHANNEL_ERRORS) as exc:
        if not_from_the_os(exc):
            raise
        if not isinstance(exc, EndpointClosedException):
            _LOGGER.exception("flush() of %r failed; reporting it closed", writer)
        if watched.taken:  # its output is dropped: the close is over
            _LOGGER.warning("closing %r: %s", watched.channel, exc)
            finish_now(registry, watched)
        else:
            # The peer is gone: what it sent before is reported, then the end.
            registry.move(watched, "write failed")
        return
    if watched.taken and not writer.write_buffer_size:
        finish_now(registry, watched)


def finish_closing(registry: Registry, now: float, wait: Optional[float]) -> Optional[float]:
    """Close the CLOSING channels the Poller closes itself, and finish the
    closes it took, once their output is delivered or their linger is over;
    return ``wait`` (how long the poll would wait) shortened to when the next
    one is due, or 0 if one finished (its report is due now)."""
    wake: Optional[float] = None
    for watched in list(registry.closing.values()):
        writer = watched.writer
        queued = 0 if writer is None else writer.write_buffer_size
        # (a channel that can hand its close over is closed at once: it does)
        waits = watched.taken or watched.finisher is None
        if queued and waits and watched.deadline > now:
            if wake is None or watched.deadline < wake:
                wake = watched.deadline
            continue
        if watched.taken:
            finish_now(registry, watched)
        else:
            _close_itself(registry, watched, queued)
    if registry.pending:
        return 0
    if wake is not None and (wait is None or wake - now < wait):
        return wake - now if wake > now else 0.0
    return wait


def finish_now(registry: Registry, watched: Watched) -> None:
    """Finish a close taken by the registry: drop what is left, with a warning."""
    writer, finisher = watched.writer, watched.finisher
    queued = 0 if writer is None else writer.write_buffer_size
    if queued:
        _gave_up(watched, queued)
    if finisher is not None:
        try:
            finisher.finish_close()
        except Exception as exc:
            if not_from_the_os(exc):
                raise
            _LOGGER.exception("closing %r failed", watched.channel)
    watched.taken = False
    registry.move(watched, "closed")  # for a channel that does not call back


def _close_itself(registry: Registry, watched: Watched, queued: int) -> None:
    closer = watched.closer
    if queued and watched.finisher is None and closer is not None:
        _gave_up(watched, queued)
        closer.abort()
    try:
        watched.channel.close()
    except Exception as exc:
        if not_from_the_os(exc):
            raise
        _LOGGER.exception("closing %r failed", watched.channel)
    if not watched.taken:
        registry.move(watched, "closed")  # for a channel that does not call back


def _gave_up(watched: Watched, queued: int) -> None:
    closer = watched.closer
    _LOGGER.warning(
        "closing %r: the reader did not take its output within the linger (%.1f s);"
        " %d queued bytes dropped",
        watched.channel,
        0.0 if closer is None else closer.linger,
        queued,
    )


def close_every_server(registry: Registry) -> List[BaseException]:
    """Close and forget every server; return the errors closing raised. A
    server is forgotten once closed: a raise in between (a signal handler's)
    leaves it to the next call."""
    errors: List[BaseException] = []
    for server in list(registry.servers.values()):
        registry.unselect(server.fd, server)
        try:
            server.sock.close()
        except OSError as exc:
            if not_from_the_os(exc):
                raise
            errors.append(exc)
        registry.drop_server(server)
    return errors


def close_poller(
    close_all: Callable[[], None], registry: Registry, wakeup: Tuple[socket.socket, socket.socket]
) -> None:
    """``Poller.close()``: ``close_all()``, then the selector and the wakeup
    pair, the socket that tells the Poller is closed last. A signal handler's
    raise (``KeyboardInterrupt`` included) leaves the Poller open, for the
    next call to finish; any other error releases all the same, then
    propagates."""
    error: Optional[BaseException] = None
    try:
        close_all()
    except BaseException as exc:
        if _interrupted(exc):
            raise  # (the next call does the rest)
        error = exc  # (raised once the Poller's own fds are released)
    try:
        registry.close()
        wakeup[0].close()
    except BaseException as exc:
        if not _interrupted(exc):
            for sock in wakeup:
                sock.close()
        raise
    wakeup[1].close()
    if error is not None:
        raise error


def _interrupted(exc: BaseException) -> bool:
    """A signal handler's raise: Python's own for SIGINT (``KeyboardInterrupt``
    from a handler in C), anything not an ``Exception``, or the application's."""
    return not isinstance(exc, Exception) or not_from_the_os(exc)


def close_every_channel(registry: Registry) -> List[BaseException]:
    """Deliver every channel's output at once, then close each one; return
    the errors its ``close()`` raised (the others were closed all the same)."""
    records = [watched for watched in registry.held.everything() if watched.state in _CLOSABLE]
    # Closed, by a close() a signal handler's raise cut short before its fds
    # were released: closed again, which finishes (its fds are closed once).
    records += [
        watched
        for watched in registry.pending.values()
        if watched.state is State.CLOSED
        and watched.native is not None
        and watched.native._unreleased  # pyright: ignore[reportPrivateUsage] (its own package)
        and watched not in records
    ]
    writers = [w.writer for w in records if w.writer is not None and w.writing]
    if registry.pid != current_pid():
        writers = []  # a forked child: the queues are its parent's to deliver
    for writer in deliver(writers, total=True):
        watched = registry.find(writer)
        if watched is not None and watched.closer is not None:
            watched.closer.abort()
    errors: List[BaseException] = []
    for watched in records:
        try:
            if watched.taken and watched.finisher is not None:
                watched.finisher.finish_close()
                watched.taken = False
            else:
                watched.channel.close()
        except Exception as exc:
            if not_from_the_os(exc):  # (a handler's: the record stays, to close again)
                raise
            errors.append(exc)
        registry.move(watched, "closed")  # for a channel that does not call back
    return errors


@atexit.register
def _finish_at_exit() -> None:
    """A process that exits soon after a ``close()`` the Poller took (never
    polling again) still delivers that output, within each channel's linger."""
    for registry in [r for r in UNFINISHED if r.pid == current_pid()]:
        records = [watched for watched in registry.closing.values() if watched.taken]
        deliver([w.writer for w in records if w.writer is not None], total=True)
        for watched in records:
            finish_now(registry, watched)
