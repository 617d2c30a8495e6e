"""Endings: reporting channels that closed, and closing channels ourselves.

Three chores of a Poller, each over its registry:

- ``report_pending``: a channel closed by the application while registered,
  or whose fd was lost, is reported by the next ``poll()``, after the frames
  it still had (none for a STALE one: its fd is someone else's now);
- ``finish_closing``: a CLOSING channel (the Poller closes it: a line too
  long) is closed once its queued output is delivered, or aborted once its
  reader took nothing for its ``linger``, without ever blocking the loop;
- ``close_every_channel``: ``Poller.close_all()``: the one linger loop
  (``_outbox.deliver``) for all channels at once, then every channel closed,
  whatever fails on the way.
"""

import logging
from typing import List, Optional

from ._errors import BAD_CHANNEL_ERRORS, EndpointClosedException
from ._outbox import deliver
from ._records import State, Watched
from ._registry import Registry

__all__ = ["close_every_channel", "close_every_server", "finish_closing", "report_pending"]

_LOGGER = logging.getLogger("channels.poller")


_CLOSABLE = frozenset({State.OPEN, State.HALF_CLOSED, State.CLOSING})


def report_pending(registry: Registry, budget: int) -> None:
    """Report every CLOSED, LOST, STALE and BROKEN channel, after its last
    frames (at most ``budget`` bytes of them: a BROKEN one's peer may still
    be sending)."""
    for watched in list(registry.pending.values()):
        if watched.state is not State.STALE:
            _read_to_the_end(registry, watched, budget)
        registry.move(watched, "report")


def _read_to_the_end(registry: Registry, watched: Watched, budget: int) -> None:
    channel = watched.channel
    results = registry.results
    try:
        data = channel.read()
        while data:
            results.append(([data], channel))
            budget -= len(data)
            data = channel.read() if budget > 0 else b""
    except EndpointClosedException:
        pass  # the end: its report follows
    except BAD_CHANNEL_ERRORS:
        _LOGGER.exception("read() of %r failed; reporting it closed", channel)


def finish_closing(registry: Registry, now: float) -> Optional[float]:
    """Close the CLOSING channels that delivered their output, or whose reader
    took nothing for their linger; return when one is due next (None: none)."""
    wake: Optional[float] = None
    for watched in list(registry.closing.values()):
        writer, closer = watched.writer, watched.closer
        if writer is not None and writer.write_buffer_size:
            if watched.deadline > now:
                if wake is None or watched.deadline < wake:
                    wake = watched.deadline
                continue
            if closer is not None:
                _LOGGER.warning(
                    "closing %r: the reader took nothing for %.1f s; %d queued bytes dropped",
                    watched.channel,
                    closer.linger,
                    writer.write_buffer_size,
                )
                closer.abort()
        try:
            watched.channel.close()
        except Exception:
            _LOGGER.exception("closing %r failed", watched.channel)
        registry.move(watched, "closed")  # for a channel that does not call back
    return wake


def close_every_server(registry: Registry) -> List[BaseException]:
    """Forget and close every server; return the errors closing raised."""
    errors: List[BaseException] = []
    for server in list(registry.servers.values()):
        registry.drop_server(server)
        try:
            server.sock.close()
        except OSError as exc:
            errors.append(exc)
    return errors


def close_every_channel(registry: Registry) -> List[BaseException]:
    """Deliver every channel's output at once, then close each one; return
    the errors its ``close()`` raised (the others were closed all the same)."""
    records = [
        watched
        for watched in [*registry.channels.values(), *registry.dormant.values()]
        if watched.state in _CLOSABLE
    ]
    for writer in deliver([w.writer for w in records if w.writer is not None and w.writing]):
        watched = registry.find(writer)
        if watched is not None and watched.closer is not None:
            watched.closer.abort()
    errors: List[BaseException] = []
    for watched in records:
        try:
            watched.channel.close()
        except Exception as exc:
            errors.append(exc)
        registry.move(watched, "closed")  # for a channel that does not call back
    return errors
