"""Which of the channels ``select()`` reported one poll reads, and how much.

``poll()`` hands out at most a call's worth of frames (``HAND_OUT``); what it
reads past that waits for the next calls. Reading every ready channel anyway
made what waits grow with the number of busy peers (at 100 clients, all they
had sent: some 200,000 lines, far past the CPU's caches, cut into shares
again by every round: 0.48x asyncio's lines/s). So the channels take turns:

- a call reads the ready channels in turn while fewer than ``room`` frames
  wait (what earlier calls left, and what it read), ``READS_PER_POLL`` at
  most; the rest of the ready list is read first by the next calls, before
  they select again (``Turns``). A call that finds no turn in that rest
  (nothing there to read or look at) selects: what became ready since is
  seen by the next call;
- once ``room`` frames wait, a call still looks at the next channel in turn
  that is not busy, reading only ``PEEK_BUDGET`` bytes of it: a quiet peer's
  line comes in the next call while another floods, and a flood grows what
  waits by less than a call hands out. A busy channel (its last read gave
  ``MIN_SHARE`` frames or more: ``registry.busy``) keeps its turn for a call
  with room: it joins ``registry.unfinished``, which such a call reads
  first. Once ``poll()`` read it, it is not selected for reading at all
  while its frames wait and it stays busy (read in turn without
  ``select()``: ``channels._input._hold_back``), so the list of each
  ``select()`` holds the others, not every flooder again;
- channels read to their budget (``registry.unfinished``: more may wait,
  perhaps where ``select()`` cannot see it) are read first by a call with
  room; while two calls' worth waits, the first of them in turn gets a look
  per call (``read_unfinished``), so several flooders all progress.

A call with a ``room`` reads at most ``CALL_READ`` of a channel's read
budget while several channels are busy. ``poll_batches()`` hands out
everything it holds: its ``room`` is unbounded, and it reads the whole
budget.
"""

import selectors
import sys
from typing import List, Optional

from ._accept import Acceptor
from ._closing import flush_output
from ._input import read_channel
from ._records import Record, Server, Wakeup, Watched, WriteSide, record_of
from ._registry import Registry
from ._selecting import Ready, key_of

__all__ = ["CALL_READ", "PEEK_BUDGET", "READS_PER_POLL", "Turns"]

READS_PER_POLL = 16
"""Channels one ``poll()`` reads at most of those ``select()`` reported; the
next call reads the others first."""

CALL_READ = 64 * 1024
"""Bytes ``poll()`` and ``poll_events()`` read from one channel in a call
at most while several channels are busy (``read_budget`` if it is
smaller): they hand out ``HAND_OUT`` frames a call, so more only waits,
and while two calls' worth waits every call also looks at another channel
in a small read (``PEEK_BUDGET``), the costliest read there is per line.
At 100 busy clients: 3% more lines/s than reads of 256 KiB (32 KiB: no
better than 256). ``poll_batches()`` reads the whole ``read_budget``."""

PEEK_BUDGET = 4096
"""Bytes a call reads from the channel whose turn it is while a call's worth
of frames waits already: a quiet peer's line comes in the next call, and a
flooding peer adds less than a call hands out."""


_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


class Turns:
    """Where a Poller is in the list of ready channels: the rest of the last
    ``select()``'s list is taken before selecting again, a few at a time (it
    may be long, and each is looked up again first: it may have been
    unregistered, or its number reused, since)."""

    __slots__ = ("_acceptor", "_budget", "_call_budget", "_registry", "rest", "woken")

    def __init__(self, registry: Registry, acceptor: Acceptor, budget: int) -> None:
        self._registry = registry
        self._acceptor = acceptor
        self._budget = budget  # (bytes a read takes from one channel at most)
        self._call_budget = budget if budget < CALL_READ else CALL_READ
        self.rest: List[Ready] = []
        self.woken = False  # (the Poller's wakeup() was seen: poll() returns)

    def budget(self, room: int) -> int:
        """Bytes a read takes from one channel at most in a call that hands
        out ``room`` frames (``sys.maxsize``: all it holds): ``CALL_READ``
        while several channels are busy, the whole budget otherwise (one
        busy channel read 64 KiB at a time gives calls of ~330 200-byte
        lines: about 20% fewer lines/s over TCP)."""
        if room == sys.maxsize or len(self._registry.busy) < 2:
            return self._budget
        return self._call_budget

    def take_rest(self, waiting: int, room: int) -> Optional[int]:
        """``take()`` the rest of the last ``select()``'s list, a few at a
        time, until the call had its turn or the rest is gone (call it only
        when there is a rest); return as ``take()``."""
        selector = self._registry.selector
        left: Optional[int] = waiting
        while left is not None and self.rest:
            rest = self.rest
            self.rest = rest[READS_PER_POLL:]
            left = self.take(rest[:READS_PER_POLL], left, room, selector)
        return left

    def take(
        self,
        ready: List[Ready],
        waiting: int,
        room: int,
        selector: Optional[selectors.BaseSelector] = None,
    ) -> Optional[int]:
        """Read the channels of ``ready`` in turn while fewer than ``room``
        frames wait (``waiting`` do already), then look at the next one that
        is not busy; flush those that can take output, accept clients, note
        a wakeup. A busy one met with no room keeps its turn: it joins
        ``registry.unfinished``, which the next call with room reads first.
        Return how many frames wait now, or None if the call had its turn
        (it read ``READS_PER_POLL`` channels, or looked at one): what is
        left of ``ready`` is next, and the call selects no more. With the
        ``selector`` (``ready`` is an earlier list), each is looked up again
        as it comes: one unregistered since, or whose number another record
        holds now, is left out, and only the events still selected count."""
        registry = self._registry
        backlog = registry.backlog  # (read already: not again until handed out)
        unfinished = registry.unfinished
        budget = self.budget(room)
        reads = 0
        for item in ready:
            key, events = item
            record = key.data
            if selector is not None:
                current = key_of(selector, key.fd)
                if current is None or current.data is not record or not events & current.events:
                    continue
                key, events = current, events & current.events
            if type(record) is not Watched or not events & _READ:
                self._dispatch(record_of(key), events)
                continue
            channel_id = id(record.channel)
            if channel_id not in backlog and channel_id not in unfinished and record.ready:
                if waiting < room:
                    waiting += read_channel(registry, record, budget)
                    reads += 1
                elif channel_id in registry.busy:
                    unfinished[channel_id] = record
                else:
                    read_channel(registry, record, PEEK_BUDGET)
                    reads = READS_PER_POLL
                if events & _WRITE:
                    flush_output(registry, record)
                if reads == READS_PER_POLL:
                    self.rest[:0] = ready[ready.index(item) + 1 :]
                    return None
            elif events & _WRITE:
                flush_output(registry, record)
        return waiting

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
