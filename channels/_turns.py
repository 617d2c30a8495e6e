"""Which of the channels ``select()`` reported one poll reads, and how much.

``poll()`` hands out at most a call's worth of frames (``HAND_OUT``); what it
reads past that waits for the next calls. Reading every ready channel anyway
made what waits grow with the number of busy peers (at 100 clients, all they
had sent: some 200,000 lines, far past the CPU's caches, cut into shares
again by every round: 0.48x asyncio's lines/s). So the channels take turns:

- a call reads the ready channels in turn while fewer than ``room`` frames
  wait (what earlier calls left, and what it read), ``READS_PER_POLL`` at
  most; the rest of the ready list is read first by the next calls with
  room (``Turns``). Every call selects but one that read ``READS_PER_POLL``
  channels of that rest: what became ready since is seen by the next call;
- once ``room`` frames wait, a call still looks at one channel ``select()``
  reported that is not busy, reading only ``PEEK_BUDGET`` bytes of it: a
  quiet peer's line comes in the next call while another floods, and a
  flood grows what waits by less than a call hands out. Quiet ones take
  turns (``Turns.looked``). A busy channel (its last read gave
  ``MIN_SHARE`` frames or more: ``registry.busy``) keeps its turn for a
  call with room (it joins ``registry.unfinished``, which such a call reads
  first); peeking at it again would only cut its reads small;
- channels read to their budget (``registry.unfinished``: more may wait,
  perhaps where ``select()`` cannot see it) are read first by a call with
  room; while two calls' worth waits, the first of them in turn gets a look
  per call (``read_unfinished``), so several flooders all progress.

``poll_batches()`` hands out everything it holds: its ``room`` is unbounded.
"""

import selectors
from typing import List, Optional, Set

from ._accept import Acceptor
from ._closing import flush_output
from ._input import hold_back, read_channel
from ._records import Record, Server, Wakeup, Watched, WriteSide, record_of
from ._registry import Registry
from ._selecting import Ready

__all__ = ["PEEK_BUDGET", "READS_PER_POLL", "Turns"]

READS_PER_POLL = 16
"""Channels one ``poll()`` reads at most of those ``select()`` reported; the
next call reads the others first."""

PEEK_BUDGET = 4096
"""Bytes a call reads from the channel whose turn it is while a call's worth
of frames waits already: a quiet peer's line comes in the next call, and a
flooding peer adds less than a call hands out."""


_LOOKED_MAX = 1024  # (ids of channels gone since stay until a clear)

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class Turns:
    """Where a Poller is in the list of ready channels: the rest of the last
    ``select()``'s list, read by the next calls with room, a few at a time
    (it may be long, and each is looked up again first: it may have been
    unregistered, or its number reused, since); and which channels that are
    not busy were looked at lately (each gets its look in turn)."""

    __slots__ = ("_acceptor", "_budget", "_registry", "looked", "rest", "woken")

    def __init__(self, registry: Registry, acceptor: Acceptor, budget: int) -> None:
        self._registry = registry
        self._acceptor = acceptor
        self._budget = budget  # (bytes a read takes from one channel at most)
        self.rest: List[Ready] = []
        self.looked: Set[int] = set()  # (channels by identity, since all had a look)
        self.woken = False  # (the Poller's wakeup() was seen: poll() returns)

    def take_rest(self, waiting: int, room: int) -> Optional[int]:
        """``take()`` the rest of the last ``select()``'s list, a few at a
        time, while fewer than ``room`` frames wait (call it only then, and
        when there is a rest); return as ``take()``. Each item is looked up
        again first: one unregistered since, or whose number another record
        holds now, is left out, and only the events still selected count."""
        known = self._registry.selector.get_map()
        left: Optional[int] = waiting
        while left is not None and left < room and self.rest:
            rest = self.rest
            self.rest = rest[READS_PER_POLL:]
            still: List[Ready] = []
            for key, events in rest[:READS_PER_POLL]:
                current = known.get(key.fd)
                if current is not None and current.data is key.data and events & current.events:
                    still.append((current, events & current.events))
            left = self.take(still, left, room, earlier=True)
        return left

    def take(
        self,
        ready: List[Ready],
        waiting: int,
        room: int,
        earlier: bool = False,
    ) -> Optional[int]:
        """Read the channels of ``ready`` in turn while fewer than ``room``
        frames wait (``waiting`` do already); flush those that can take
        output, accept clients, note a wakeup. Return how many frames wait
        now, or None if the call had its turn: it read ``READS_PER_POLL``
        channels, what is left of ``ready`` is next, and the call selects no
        more.

        Once ``room`` frames wait, a fresh list is walked to its end: a busy
        channel joins ``registry.unfinished`` (the next call with room reads
        it first), and one that is not busy gets a ``PEEK_BUDGET`` look, the
        first not ``looked`` at lately. What is left of an ``earlier`` list
        (the rest of one) is left for a call with room instead."""
        registry = self._registry
        backlog = registry.backlog  # (read already: not again until handed out)
        unfinished = registry.unfinished
        reads = 0
        lookable: Optional[Watched] = None  # (not busy, found with no room)
        for item in ready:
            if earlier and waiting >= room:
                self.rest[:0] = ready[ready.index(item) :]
                return waiting
            key, events = item
            record = key.data
            if type(record) is not Watched or not events & _READ:
                self._dispatch(record_of(key), events)
                continue
            channel_id = id(record.channel)
            if channel_id not in backlog and channel_id not in unfinished and record.ready:
                if waiting < room:
                    waiting += read_channel(registry, record, self._budget)
                    reads += 1
                elif channel_id in registry.busy:
                    unfinished[channel_id] = record  # (it keeps its turn)
                    if channel_id not in registry.held_back:
                        hold_back(registry, record)
                elif lookable is None or (
                    lookable.key in self.looked and channel_id not in self.looked
                ):
                    lookable = record
                if events & _WRITE:
                    flush_output(registry, record)
                if reads == READS_PER_POLL:
                    self.rest[:0] = ready[ready.index(item) + 1 :]
                    return None
            elif events & _WRITE:
                flush_output(registry, record)
        if lookable is not None:
            self._look_at(lookable)
        return waiting

    def _look_at(self, watched: Watched) -> None:
        """Read ``PEEK_BUDGET`` of a channel that is not busy, with a call's
        worth waiting already: its line comes in this call."""
        looked = self.looked
        if watched.key in looked or len(looked) >= _LOOKED_MAX:
            looked.clear()  # (every one in sight had its look: again)
        looked.add(watched.key)
        read_channel(self._registry, watched, PEEK_BUDGET)

    def _dispatch(self, record: Record, events: int) -> None:
        """Act on one ready fd that is not a channel with input."""
        if isinstance(record, Wakeup):
            self.woken = True
            record.drain()
        elif isinstance(record, Server):
            if record.active:
                self._acceptor.accept(record)
        elif isinstance(record, WriteSide):
            flush_output(self._registry, record.watched)
        elif isinstance(record, Watched) and events & _WRITE:
            flush_output(self._registry, record)
