"""The records a Poller holds, and how each is found again from its channel.

A ``Channel`` of this library leads back to its record: the record is its
watcher. Finding it costs no index of its own, so an idle registered
channel keeps one entry here, keyed by the record itself (no int made per
channel). Any other channel, or one whose watcher is another Poller's
record, is found by its identity, ``id()``: a closed socket's ``fileno()``
is -1, and epoll silently forgets a closed fd, so the fd is no key.

Dormant records (half-closed, nothing to deliver) are held weakly: only
their channel's watcher or callbacks keep them, so an application that drops
a channel reported closed lets the garbage collector have it.
"""

import weakref
from typing import Dict, List, Optional

from ._base import Channel
from ._records import State, Watched

__all__ = ["HeldRecords"]


class HeldRecords:
    """A registry's index of its records (every state but FORGOTTEN)."""

    def __init__(self) -> None:
        self.records: Dict[Watched, Watched] = {}
        """Held records, dormant ones aside (keyed by themselves)."""
        self.dormant: weakref.WeakValueDictionary[int, Watched] = weakref.WeakValueDictionary()
        """Dormant records, by channel identity."""
        # Held records their channel does not lead back to, by its identity.
        self._by_identity: Dict[int, Watched] = {}

    def find(self, channel: object, owner: object) -> Optional[Watched]:
        """The live record of ``channel`` that ``owner`` keeps; None if it has none."""
        if isinstance(channel, Channel):
            watcher = channel.watcher
            if type(watcher) is Watched and watcher.owner is owner and watcher.channel is channel:
                return watcher if watcher.state is not State.FORGOTTEN else None
        key = id(channel)
        watched = self._by_identity.get(key)
        if watched is None and self.dormant:  # (a miss raises and catches in there)
            watched = self.dormant.get(key)
        return watched if watched is not None and watched.channel is channel else None

    def hold(self, watched: Watched) -> None:
        """Hold ``watched`` (awake: out of the dormant ones)."""
        self.records[watched] = watched
        native = watched.native
        if native is None or native.watcher is not watched:
            self._by_identity[id(watched.channel)] = watched
        if self.dormant:  # (a miss costs its pop a KeyError raised and caught)
            self.dormant.pop(id(watched.channel), None)

    def rest(self, watched: Watched) -> None:
        """Hold ``watched`` weakly from now on: it is dormant."""
        self._unhold(watched)
        self.dormant[id(watched.channel)] = watched

    def let_go(self, watched: Watched) -> None:
        """Forget ``watched``, held or dormant."""
        self._unhold(watched)
        key = id(watched.channel)
        if self.dormant and self.dormant.get(key) is watched:
            del self.dormant[key]

    def _unhold(self, watched: Watched) -> None:
        self.records.pop(watched, None)
        key = id(watched.channel)
        if self._by_identity.get(key) is watched:
            del self._by_identity[key]

    def everything(self) -> List[Watched]:
        """Every record, held or dormant."""
        return [*self.records.values(), *self.dormant.values()]
