"""How the poll loop reads a ready channel into the Poller's results.

A channel's frames go straight from it into ``registry.results`` (its
``read_frames_into()`` appends them with no call in between), so a signal
handler that raises here loses nothing: what was read is in the results or
still in the channel, and the next ``poll()`` returns it. A channel that
ends, breaks or fails is moved along its lifecycle (``channels._registry``).
"""

import errno
import logging
from typing import Callable

from ._errors import BAD_CHANNEL_ERRORS, EndpointClosedException, LineTooLong, not_from_the_os
from ._protocols import AGAIN, DRAINED
from ._records import Watched
from ._registry import Registry
from .events import MIN_SHARE, frames_held

__all__ = ["read_channel", "read_unfinished", "release_held_back"]

_LOGGER = logging.getLogger("channels.poller")

# A read failing with these: the fd was closed behind the channel's back.
_FD_GONE_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})


def read_channel(registry: Registry, watched: Watched, budget: int) -> int:
    """Read an OPEN channel: every frame it has, within ``budget`` bytes;
    return how many it gave (an event counts one), and mark it busy if that
    was ``MIN_SHARE`` or more, not busy if fewer but some (``channels._turns``;
    a dry read tells nothing of the peer's pace, but a held-back channel
    found dry is watched by ``select()`` again). It is not read again
    until the poll hands out what it had: if a signal handler keeps
    interrupting that, what waits cannot grow without bound."""
    channel = watched.channel
    read_into = watched.source.read_frames_into
    results = registry.results
    before = len(results)
    registry.backlog.add(id(channel))
    try:
        while True:
            state = read_into(results, budget)
            # (the field itself, not through Watched's property: the hot path)
            if state == DRAINED and not watched.seldom.always_readable:
                if registry.unfinished:
                    registry.unfinished.pop(id(channel), None)
                break
            if state != AGAIN:  # more may wait, where select() cannot see it
                registry.unfinished[id(channel)] = watched
                break
            # AGAIN: the end, or an error, is what the next call gives.
    except (EndpointClosedException, *BAD_CHANNEL_ERRORS) as exc:
        if not _ended(registry, watched, exc):
            raise
    if len(results) == before + 1:  # (one read's frames: the usual case)
        item = results[before]
        got = len(item[0]) if type(item) is tuple else 1
    else:
        got = frames_held(results[before:])
    _note_pace(registry, watched, got)
    return got


def _note_pace(registry: Registry, watched: Watched, got: int) -> None:
    """Mark a channel that just gave ``got`` frames busy or not, and hold it
    back from ``select()`` or watch it again (see ``read_channel()``)."""
    key = id(watched.channel)
    if got >= MIN_SHARE:
        if not watched.ready:  # (it ended in this read: its move forgot it, so do we)
            return
        registry.busy.add(key)
        if registry.holding and key not in registry.held_back:
            _hold_back(registry, watched)
    elif got:
        if registry.busy:
            registry.busy.discard(key)
    elif key in registry.held_back:  # (dry, read without select(): still busy)
        _select_again(registry, watched)


def _ended(registry: Registry, watched: Watched, exc: BaseException) -> bool:
    """Move a channel whose read raised ``exc`` along its lifecycle; False
    if ``exc`` is no channel's end but a programming error (to raise)."""
    channel = watched.channel
    if isinstance(exc, LineTooLong):
        _LOGGER.warning("closing %r: %s", channel, exc)
        registry.move(watched, "line too long")
    elif isinstance(exc, EndpointClosedException):
        cause = exc.__cause__
        if not isinstance(cause, OSError):
            registry.move(watched, "peer closed")
        elif cause.errno in _FD_GONE_ERRNOS:
            registry.move(watched, "read failed")  # closed behind its back
        else:
            registry.move(watched, "reset")
    elif not_from_the_os(exc):
        return False
    else:
        _LOGGER.exception("read() of %r failed; reporting it closed", channel)
        registry.move(watched, "read failed")
    return True


def read_unfinished(
    registry: Registry,
    still_its_file: Callable[[Watched], bool],
    budget: int,
    room: int,
    *,
    peek: int,
    reads: int,
) -> int:
    """Read the channels known to have more, without select() (read to
    their budget, resumed, or busy ones a call had no room for; those whose
    fd ``still_its_file``), in turn, while they gave fewer than ``room``
    frames, ``reads`` of them at most; return how many frames came. With no
    room at all, read the first in turn for ``peek`` bytes (if not 0). Each
    one read goes to the back of the line: each is served within a few
    calls however much waits."""
    if room <= 0 and not peek:
        return 0
    backlog = registry.backlog
    unfinished = registry.unfinished
    got = 0
    for watched in list(unfinished.values()):
        if watched.key not in backlog and watched.ready:
            if (got >= room and not (room <= 0 and peek)) or not reads:
                break
            if not still_its_file(watched):
                continue
            key = watched.key
            if got >= room:
                got = read_channel(registry, watched, peek)
                reads = 0
            else:
                got += read_channel(registry, watched, budget)
                reads -= 1
            if key in unfinished:  # (one call: a signal handler cannot cut it)
                unfinished.move_to_end(key)
    return got


def _hold_back(registry: Registry, watched: Watched) -> None:
    """Stop selecting a busy OPEN channel for reading while the poll loop
    knows it has input (frames waiting to be handed out, or more to read):
    ``select()`` would only report it again and again, at every call (at
    100 busy clients, 75 of them a call: 20-30 us). ``release_held_back()``
    ends it. Not while ``poll_batches()`` reads: it hands out everything
    each call, so nothing waits long enough to pay for the two selector
    calls."""
    registry.held_back[watched.key] = watched
    registry.sync(watched)


def release_held_back(registry: Registry) -> None:
    """For each held-back channel with nothing waiting or to read now: one
    still busy is read next without ``select()``, in turn (it joins
    ``registry.unfinished``); another is selected for reading again."""
    held_back = registry.held_back
    backlog = registry.backlog
    unfinished = registry.unfinished
    # (a list made by one comprehension: no set built from each of the three)
    for key in [key for key in held_back if key not in backlog and key not in unfinished]:
        watched = held_back[key]
        if key in registry.busy and watched.ready:
            registry.unfinished[key] = watched
        else:
            _select_again(registry, watched)


def _select_again(registry: Registry, watched: Watched) -> None:
    """End a channel's holding back: ``select()`` watches it again."""
    key = watched.key
    cut_short = key in registry.unsettled
    registry.unsettled[key] = watched  # (a raise from here: settle() selects it)
    del registry.held_back[key]
    registry.sync(watched, cut_short)
