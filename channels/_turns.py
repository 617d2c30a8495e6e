"""Which of the channels ``select()`` reported one poll reads, and how much.

``poll()`` hands out at most a call's worth of frames (``HAND_OUT``); what it
reads past that waits for the next calls. Reading every ready channel anyway
made what waits grow with the number of busy peers (at 100 clients, all they
had sent: some 200,000 lines, far past the CPU's caches, cut into shares
again by every round: 0.48x asyncio's lines/s). So the channels take turns:

- a call reads the ready channels in turn while fewer than ``room`` frames
  wait (what earlier calls left, and what it read), ``READS_PER_POLL`` at
  most; the rest of the ready list is read first by the next calls, before
  they select again (``Turns``);
- once ``room`` frames wait, a call still looks at the next channel in turn
  that is not busy, reading only ``PEEK_BUDGET`` bytes of it: a quiet peer's
  line comes in the next call while another floods, and a flood grows what
  waits by less than a call hands out. A busy channel (its last read gave
  ``MIN_SHARE`` frames or more: ``registry.busy``) keeps its turn for a call
  with room; peeking at it again would only cut its reads small;
- channels read to their budget (``registry.unfinished``: more may wait,
  perhaps where ``select()`` cannot see it) are read first by a call with
  room; while two calls' worth waits, the first of them in turn gets a look
  per call (``read_unfinished``), so several flooders all progress.

``poll_batches()`` hands out everything it holds: its ``room`` is unbounded.
"""

import selectors
from typing import Callable, List, Optional

from ._closing import flush_output
from ._errors import not_from_the_os
from ._input import read_channel
from ._records import Record, Watched, record_of
from ._registry import Registry
from ._selecting import Ready, still_selected

__all__ = ["PEEK_BUDGET", "READS_PER_POLL", "Turns"]

READS_PER_POLL = 16
"""Channels one ``poll()`` reads at most of those ``select()`` reported; the
next call reads the others before it selects again."""

PEEK_BUDGET = 4096
"""Bytes a call reads from the channel whose turn it is while a call's worth
of frames waits already: a quiet peer's line comes in the next call, and a
flooding peer adds less than a call hands out."""


class Turns:
    """The rest of the last ``select()``'s list, read before selecting again,
    a few at a time (it may be long, and each is looked up again first: it
    may have been unregistered, or its number reused, since)."""

    __slots__ = ("rest",)

    def __init__(self) -> None:
        self.rest: List[Ready] = []

    def next_ready(
        self,
        selector: selectors.BaseSelector,
        timeout: Optional[float],
        failed: Callable[[BaseException], None],
    ) -> List[Ready]:
        """The next channels in turn: from the rest, or a new ``select()``
        (``failed(exc)`` if the OS refused it: an fd closed behind a
        channel's back)."""
        rest = self.rest
        if rest:
            self.rest = rest[READS_PER_POLL:]
            return still_selected(selector, rest[:READS_PER_POLL])
        try:
            return selector.select(timeout)
        except (OSError, ValueError) as exc:
            if not_from_the_os(exc):
                raise
            failed(exc)
            return []

    def take(
        self,
        registry: Registry,
        ready: List[Ready],
        waiting: int,
        room: int,
        *,
        budget: int,
        dispatch: Callable[[Record, int], None],
    ) -> None:
        """Read the channels of ``ready`` in turn (``budget`` bytes at most)
        while fewer than ``room`` frames wait (``waiting`` do already), then
        look at the next one that is not busy; flush those that can take
        output; ``dispatch()`` the rest (servers, the wakeup, pipe sinks).
        What is left of ``ready`` is next."""
        unfinished = registry.unfinished
        backlog = registry.backlog  # (read already: not again until handed out)
        busy = registry.busy
        reads = 0
        kept = 0  # (busy ones moved to the front of ready: read by a call with room)
        for index, (key, events) in enumerate(ready):
            record = key.data
            if type(record) is not Watched or not events & selectors.EVENT_READ:
                dispatch(record_of(key), events)
                continue
            channel_id = id(record.channel)
            if channel_id not in backlog and channel_id not in unfinished and record.ready:
                if waiting < room:
                    waiting += read_channel(registry, record, budget)
                    reads += 1
                elif channel_id in busy:
                    if events & selectors.EVENT_WRITE:
                        flush_output(registry, record)
                    ready[kept] = (key, selectors.EVENT_READ)
                    kept += 1
                    continue
                else:
                    read_channel(registry, record, PEEK_BUDGET)
                    reads = READS_PER_POLL
            if events & selectors.EVENT_WRITE:
                flush_output(registry, record)
            if reads == READS_PER_POLL:
                self.rest[:0] = ready[:kept] + ready[index + 1 :]
                return
        if kept:
            self.rest[:0] = ready[:kept]
