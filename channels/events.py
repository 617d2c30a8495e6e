"""Typed events: what ``Poller.poll_events()`` returns.

``Poller.poll()`` keeps 0.2's tuples, whose two shapes a type checker can only
tell apart by ``isinstance`` on their first element (and pyright does not).
These frozen dataclasses carry the same news, and more of it — why a channel
closed, and how many written bytes it could not deliver — so ``isinstance``
(or ``match``) narrows each one, and ``assert_never`` checks that a handler
covers them all. ``poll_batches()`` gives all frames a channel had at once as
one ``FramesReceived``: no object per frame, the fastest way to consume lines.
All three methods come from one implementation: the Poller collects these
events (data as plain ``(frames, channel)`` tuples, the hot path) and each
method only converts.
"""

import dataclasses
import enum
import itertools
import socket
import sys
from typing import Dict, List, Set, Tuple, Union, cast

from ._protocols import ChannelLike
from .channel import SocketChannel

__all__ = [
    "AcceptEvent",
    "BatchEvent",
    "ChannelClosed",
    "ClientAccepted",
    "CloseReason",
    "DataEvent",
    "DataReceived",
    "FramesReceived",
    "PollEvent",
    "PollResult",
    "SocketAddress",
    "Writable",
]

SocketAddress = Union[Tuple[str, int], Tuple[str, int, int, int], str, bytes]


class CloseReason(enum.Enum):
    """Why a channel was reported closed."""

    PEER_CLOSED = "peer closed"
    """The peer ended its stream (it may still read: half-close)."""
    RESET = "reset"
    """The connection broke: reset by the peer, or the peer vanished while
    output was queued."""
    LINE_TOO_LONG = "line too long"
    """A line passed the line strategy's ``max_length``; the Poller closed it."""
    CLOSED_LOCALLY = "closed locally"
    """The application called ``close()`` (or ``close_all()``) while registered."""
    FD_LOST = "fd lost"
    """Its fd was closed or reused behind its back, or its ``read()`` failed."""


@dataclasses.dataclass(frozen=True)
class DataReceived:
    """A frame from a channel: ``(data, channel)`` in ``poll()``'s terms."""

    __slots__ = ("channel", "data")
    channel: ChannelLike
    data: bytes

    def as_tuple(self) -> Tuple[bytes, ChannelLike]:
        """The 0.2 form of this event."""
        return (self.data, self.channel)


@dataclasses.dataclass(frozen=True)
class FramesReceived:
    """Frames from a channel, oldest first: what ``poll_batches()`` gives
    instead of one ``DataReceived`` per frame. Never empty."""

    __slots__ = ("channel", "frames")
    channel: ChannelLike
    frames: List[bytes]


@dataclasses.dataclass(frozen=True)
class ChannelClosed:
    """A channel closed: ``(b'', channel)`` in ``poll()``'s terms.

    ``undelivered`` is how many bytes written to it were dropped by then.
    """

    __slots__ = ("channel", "reason", "undelivered")
    channel: ChannelLike
    reason: CloseReason
    undelivered: int

    def as_tuple(self) -> Tuple[bytes, ChannelLike]:
        """The 0.2 form of this event."""
        return (b"", self.channel)


@dataclasses.dataclass(frozen=True)
class Writable:
    """A channel whose ``write()`` was refused (``WriteBufferFullError``)
    drained to its ``low_water`` mark: write to it again (and resume reading
    what feeds it). ``poll()`` has no tuple for it: it returns (perhaps
    ``[]``, as after ``wakeup()``)."""

    __slots__ = ("channel",)
    channel: ChannelLike


@dataclasses.dataclass(frozen=True)
class ClientAccepted:
    """A client was accepted and registered: ``((address, channel), server)``."""

    __slots__ = ("address", "channel", "server")
    server: socket.socket
    channel: SocketChannel
    address: SocketAddress

    def as_tuple(self) -> Tuple[Tuple[SocketAddress, SocketChannel], socket.socket]:
        """The 0.2 form of this event."""
        return ((self.address, self.channel), self.server)


PollEvent = Union[DataReceived, ChannelClosed, ClientAccepted, Writable]
"""One item of ``Poller.poll_events()``."""

BatchEvent = Union[FramesReceived, ChannelClosed, ClientAccepted, Writable]
"""One item of ``Poller.poll_batches()``."""

Collected = Union[Tuple[List[bytes], ChannelLike], ChannelClosed, ClientAccepted, Writable]
"""What a Poller hands out: the frames of one read as a plain tuple (the hot
path), the rest as events; the functions below convert a list of them."""

Held = Union[Collected, Tuple[List[bytes], ChannelLike, int]]
"""What a Poller holds: ``Collected``, or the frames of a read handed out in
part, with where the rest starts (``split_at()``: no copy of the rest)."""


def as_tuples(collected: List[Collected]) -> "List[PollResult]":
    """``poll()``'s 0.2 tuples: one ``(frame, channel)`` per frame."""
    if len(collected) == 1 and type(collected[0]) is tuple:  # one channel's lines
        frames, channel = collected[0]
        return list(zip(frames, itertools.repeat(channel)))
    results: List[PollResult] = []
    for item in collected:
        if isinstance(item, tuple):
            results += zip(item[0], itertools.repeat(item[1]))
        elif not isinstance(item, Writable):  # (no 0.2 form: poll() just returns)
            results.append(item.as_tuple())
    return results


_new = object.__new__
_set_channel = vars(DataReceived)["channel"].__set__  # (the slots' descriptors)
_set_data = vars(DataReceived)["data"].__set__


def _data_received(channel: ChannelLike, frame: bytes) -> DataReceived:
    """``DataReceived(channel, frame)`` in a fifth of the time (no frozen ``__init__``)."""
    event = _new(DataReceived)
    _set_channel(event, channel)
    _set_data(event, frame)
    return event


def as_events(collected: List[Collected]) -> List[PollEvent]:
    """``poll_events()``'s items: one ``DataReceived`` per frame."""
    events: List[PollEvent] = []
    for item in collected:
        if isinstance(item, tuple):
            events += map(_data_received, itertools.repeat(item[1]), item[0])
        else:
            events.append(item)
    return events


def as_batches(collected: List[Collected]) -> List[BatchEvent]:
    """``poll_batches()``'s items: one ``FramesReceived`` per read."""
    return [
        FramesReceived(item[1], item[0]) if isinstance(item, tuple) else item for item in collected
    ]


MIN_SHARE = 64
"""Frames each channel with frames waiting gets per round at least: with
up to ``limit // MIN_SHARE`` senders a round is one call; with more, it is
handed out over several calls of about ``limit`` frames each (finer shares
cost a walk of every waiting read per frame or two)."""

Batches = List[List[Collected]]
"""A round made by ``split_at()``, one list per call, oldest first."""


def hand_out(
    batches: Batches, collected: List[Held], backlog: Set[int], limit: int
) -> Tuple[List[Collected], Batches, List[Held], Set[int]]:
    """What one call hands out, and what is left: the rest of the round
    under way, what waits for the next round, the channels (by ``id``) with
    frames waiting (a new set: the poll loop adds those it reads). A round
    under way is finished first (everything, if ``limit`` is
    ``sys.maxsize``); then ``collected`` makes a new one."""
    if len(collected) == 1 and not batches:  # (the usual case, quickly)
        item = collected[0]
        if type(item) is not tuple or (len(item) == 2 and len(item[0]) <= limit):
            return cast("List[Collected]", collected), batches, [], set()
    if batches:
        if limit < sys.maxsize:
            return batches[0], batches[1:], collected, backlog
        now = [item for batch in [*batches, *split_at(collected, limit)[0]] for item in batch]
        return now, [], [], set()
    made, kept, held = split_at(collected, limit)
    return (made[0] if made else []), made[1:], kept, held


def split_at(collected: List[Held], limit: int) -> Tuple[Batches, List[Held], Set[int]]:
    """A round of what ``collected`` holds, in calls of at most ``limit``
    frames (events count one), what waits for the next round, and the
    channels (by ``id``) with frames waiting.

    Past the limit each channel gets an equal share of the round, at least
    ``MIN_SHARE``, so one that floods cannot hold back another's line: with
    few senders the round is one call, with many it is handed out over
    several (the poll loop reads nothing in between, so every sender is
    served within ``senders * MIN_SHARE / limit`` calls). A call gets at
    most ``limit`` tuples from ``poll()``: CPython takes them from its free
    list, and the garbage collector does not walk them. Each channel's items
    stay in order (its close after its last frame). What waits of a read is
    kept as the read's list and an offset: each frame is copied once, when
    it is handed out, however many rounds it waits."""
    count = frames_held(collected)
    if count <= limit and not any(type(item) is tuple and len(item) == 3 for item in collected):
        return ([cast("List[Collected]", collected)] if collected else []), [], set()
    share = _share(limit, collected) if count > limit else limit
    given: Dict[int, int] = {}
    held: Set[int] = set()  # (what follows a channel's held frames is held too)
    now: List[Collected] = []
    later: List[Held] = []
    for item in collected:
        if type(item) is tuple:
            frames, channel = item[0], item[1]
            start = item[2] if len(item) == 3 else 0
            key = id(channel)
            room = share - given.get(key, 0)
            size = len(frames) - start
            if key not in held and size <= room:
                now.append((frames[start:], channel) if start else (frames, channel))
                given[key] = share - room + size
                continue
            if key not in held and room > 0:
                now.append((frames[start : start + room], channel))
                start += room
            held.add(key)
            later.append((frames, channel, start))
        else:
            assert not isinstance(item, tuple)
            (later if id(item.channel) in held else now).append(item)
    return _in_calls(now, limit), later, held


def frames_held(held: List[Held]) -> int:
    """How many frames ``held`` gives out (an event counts one)."""
    count = 0
    for item in held:
        if type(item) is not tuple:
            count += 1
        elif len(item) == 2:
            count += len(item[0])
        else:
            count += len(item[0]) - item[2]
    return count


def _share(limit: int, collected: List[Held]) -> int:
    """Frames each channel with frames in ``collected`` gets at most in a
    round of calls of ``limit``: an equal share, and what those with less
    than theirs leave to the others; at least ``MIN_SHARE``."""
    sizes: Dict[int, int] = {}
    left = limit
    for item in collected:
        if type(item) is tuple:
            key = id(item[1])
            sizes[key] = sizes.get(key, 0) + len(item[0]) - (item[2] if len(item) == 3 else 0)
        else:
            left -= 1  # (an event counts one)
    least = MIN_SHARE if limit > MIN_SHARE else limit
    senders = len(sizes)
    for size in sorted(sizes.values()):
        fair = left // senders if senders else left
        if size > fair:
            return fair if fair > least else least
        left -= size
        senders -= 1
    return limit


def _in_calls(items: List[Collected], limit: int) -> Batches:
    """``items`` cut into lists of at most ``limit`` frames (an item is
    never cut: each is at most a share, and a share at most ``limit``)."""
    batches: Batches = []
    batch: List[Collected] = []
    size = 0
    for item in items:
        count = len(item[0]) if type(item) is tuple else 1
        if batch and size + count > limit:
            batches.append(batch)
            batch = []
            size = 0
        batch.append(item)
        size += count
    if batch:
        batches.append(batch)
    return batches


DataEvent = Tuple[bytes, ChannelLike]
"""``(data, channel)``: a frame from a channel, or ``(b'', channel)`` once it closed."""

AcceptEvent = Tuple[Tuple[SocketAddress, SocketChannel], socket.socket]
"""``((addr, client_channel), server_sock)``: a client that was accepted and registered."""

PollResult = Union[DataEvent, AcceptEvent]
"""One item of ``Poller.poll()``; tell them apart with ``isinstance(item[0], bytes)``."""
