"""How ``poll()`` hands out what it read: bounded, fair, in order.

A call returns at most ``HAND_OUT`` frames; past that, what was read goes
out in rounds that give every channel with frames an equal share, so
several flooding peers are all served within a few calls, and a quiet
peer's line is never stuck behind a flood. A call reads at most
``READS_PER_POLL`` of the channels the selector reported. A channel's own
items keep their order, its close after its last frame.
"""

import array
import contextlib
import selectors
import socket
import sys
import threading
import time
from selectors import SelectorKey
from typing import Callable, Dict, List, NoReturn, Optional, Set, Tuple, Type

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import channels._turns
import channels.poller
from channels import Poller, SocketChannel
from channels._reading import READ_SIZE
from channels._turns import PEEK_BUDGET
from channels.events import (
    MIN_SHARE,
    Batches,
    ChannelClosed,
    CloseReason,
    Collected,
    Held,
    frames_held,
    hand_out,
)
from channels.poller import CALL_READ, DEFAULT_READ_BUDGET, HAND_OUT, READS_PER_POLL
from channels.testing import TestChannel

from .conftest import DEADLINE, posix_only


class Named:
    """A stand-in channel for ``split_at``, which only looks at identity."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _per_channel(items: List[Collected]) -> Dict[str, List[object]]:
    seen: Dict[str, List[object]] = {}
    for item in items:
        if isinstance(item, tuple):
            seen.setdefault(repr(item[1]), []).extend(item[0])
        else:
            seen.setdefault(repr(item.channel), []).append("closed")
    return seen


def _frames(items: List[Collected]) -> int:
    return sum(len(item[0]) if isinstance(item, tuple) else 1 for item in items)


def _senders(items: List[Held]) -> Set[int]:
    return {id(item[1]) for item in items if isinstance(item, tuple)}


@settings(max_examples=300)
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 90), st.booleans(), st.integers(0, 3)),
        max_size=30,
    ),
    limit=st.integers(1, 200),
)
def test_every_frame_comes_once_in_order_with_the_close_last(
    steps: List[Tuple[int, int, bool, int]], limit: int
) -> None:
    """Reads and closes of three channels arrive between calls: each call
    hands out at most ``limit`` frames, a round serves every channel that
    had frames when it began, and each channel's frames come once, in
    order, its close last."""
    channels = [Named(name) for name in "abc"]
    sent = {name: 0 for name in "abc"}
    closed: Set[str] = set()
    arrived: List[Collected] = []
    handed: List[Collected] = []
    batches: Batches = []
    rest: List[Held] = []
    backlog: Set[int] = set()
    for which, count, close, calls in [*steps, (0, 0, False, 10_000)]:
        channel = channels[which]
        if channel.name not in closed and count:
            frames = [
                b"%s%d" % (channel.name.encode(), sent[channel.name] + n) for n in range(count)
            ]
            sent[channel.name] += count
            arrived.append((frames, channel))  # type: ignore[arg-type]
            rest = [*rest, arrived[-1]]
        if channel.name not in closed and close:
            closed.add(channel.name)
            arrived.append(ChannelClosed(channel, CloseReason.PEER_CLOSED, 0))  # type: ignore[arg-type]
            rest = [*rest, arrived[-1]]
        for _ in range(calls):
            if not (batches or rest):
                break
            waiting = _senders(rest) if not batches else None
            now, batches, rest, backlog = hand_out(batches, rest, backlog, limit)
            assert now, "a call with something waiting handed out nothing"
            assert _frames(now) <= limit, "more than the limit"
            if waiting is not None:  # a new round: everyone waiting is in it
                in_round = now + [item for batch in batches for item in batch]
                assert waiting <= _senders(in_round), "a round left a sender out"
                assert backlog == _senders(rest)
            handed += now
    assert not batches and not rest
    assert _per_channel(handed) == _per_channel(arrived)


def test_past_the_limit_every_sender_gets_its_share() -> None:
    """A quiet sender's line goes out, and the flood takes the rest of the
    call (what the quiet one leaves of its equal share is not wasted)."""
    flood, quiet = Named("flood"), Named("quiet")
    collected: List[Held] = [
        ([b"f%d" % n for n in range(5000)], flood),  # type: ignore[list-item]
        ([b"q0"], quiet),  # type: ignore[list-item]
        ChannelClosed(flood, CloseReason.PEER_CLOSED, 0),  # type: ignore[arg-type]
    ]
    now, batches, rest, backlog = hand_out([], collected, set(), 1024)
    # (1,024 less the quiet line and the close event, which counts one)
    assert now == [([b"f%d" % n for n in range(1022)], flood), ([b"q0"], quiet)]
    assert batches == []  # (two senders: the round is one call)
    assert rest[0] == (collected[0][0], flood, 1022)  # type: ignore[index]
    assert isinstance(rest[1], ChannelClosed)  # (after the flood's last frame)
    assert backlog == {id(flood)}


def test_what_a_sender_leaves_of_its_share_goes_to_the_others() -> None:
    """Senders of 10, 300 and 5,000 frames, 1,024 a call: the first two
    take all theirs (less than an equal share), the third the 714 left;
    two of 2,000 and one of 10 share equally what the small one leaves."""
    small, middle, large = Named("small"), Named("middle"), Named("large")
    collected: List[Held] = [
        ([b"s"] * 10, small),  # type: ignore[list-item]
        ([b"m"] * 300, middle),  # type: ignore[list-item]
        ([b"l"] * 5000, large),  # type: ignore[list-item]
    ]
    now, _, rest, _ = hand_out([], collected, set(), 1024)
    assert [len(item[0]) for item in now if isinstance(item, tuple)] == [10, 300, 714]
    assert rest == [(collected[2][0], large, 714)]  # type: ignore[index]
    other = Named("other")
    collected = [
        ([b"l"] * 2000, large),  # type: ignore[list-item]
        ([b"s"] * 10, small),  # type: ignore[list-item]
        ([b"o"] * 2000, other),  # type: ignore[list-item]
    ]
    now, _, _, _ = hand_out([], collected, set(), 1024)
    assert [len(item[0]) for item in now if isinstance(item, tuple)] == [507, 10, 507]


def test_a_round_of_many_senders_is_handed_out_over_calls() -> None:
    """100 senders: a round gives each MIN_SHARE frames, over calls of at
    most the limit (so poll() makes at most that many tuples a call), and
    no call in between makes a new round."""
    senders = [Named(f"c{n}") for n in range(100)]
    collected: List[Held] = [([b"x"] * 1000, sender) for sender in senders]  # type: ignore[misc]
    now, batches, rest, backlog = hand_out([], collected, set(), 1024)
    assert len(batches) == -(-100 * MIN_SHARE // 1024) - 1
    calls = [now, *batches]
    assert all(_frames(call) <= 1024 for call in calls)
    assert _senders([item for call in calls for item in call]) == _senders(collected)
    late = Named("late")
    rest = [*rest, ([b"late"], late)]  # type: ignore[list-item]
    for expected in batches:  # the round goes on; what came since waits for the next
        now, batches, rest, backlog = hand_out(batches, rest, backlog, 1024)
        assert now is expected
    now, batches, rest, backlog = hand_out(batches, rest, backlog, 1024)
    assert id(late) in _senders(now + [item for batch in batches for item in batch])


def test_poll_batches_takes_the_rest_of_a_round_and_everything_else() -> None:
    senders = [Named(f"c{n}") for n in range(40)]
    collected: List[Held] = [([b"%d" % n for n in range(100)], s) for s in senders]  # type: ignore[misc]
    first, batches, rest, backlog = hand_out([], collected, set(), 1024)
    assert batches and rest
    now, batches, rest, backlog = hand_out(batches, rest, backlog, sys.maxsize)
    assert (batches, rest, backlog) == ([], [], set())
    got = _per_channel(first + now)
    assert all(got[repr(s)] == [b"%d" % n for n in range(100)] for s in senders)


def test_what_waits_is_never_copied_again() -> None:
    """500 channels with 1,000 frames each: every call hands out about the
    limit, and what waits stays the read's own list with an offset (a copy
    of the rest per call made this quadratic: 0.07 M lines/s at a fan-in of
    1,000)."""
    senders = [Named(f"c{n}") for n in range(500)]
    reads = [[b"%d" % n for n in range(1000)] for _ in senders]
    originals = {id(read) for read in reads}
    rest: List[Held] = list(zip(reads, senders))  # type: ignore[arg-type]
    batches: Batches = []
    backlog: Set[int] = set()
    handed: Dict[int, List[bytes]] = {}
    for _ in range(10_000):
        if not (rest or batches):
            break
        now, batches, rest, backlog = hand_out(batches, rest, backlog, 1024)
        for item in now:
            assert isinstance(item, tuple)
            handed.setdefault(id(item[1]), []).extend(item[0])
        for item in rest:
            assert isinstance(item, tuple) and id(item[0]) in originals, "the rest was copied"
    assert not rest
    assert all(frames == reads[0] for frames in handed.values()) and len(handed) == 500


def _roomy_socketpair() -> Tuple[socket.socket, socket.socket]:
    """A socketpair whose buffers take about a MiB; the second end does not block."""
    mine, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    theirs.setblocking(False)
    return mine, theirs


def _flooded_pair(lines: int, tag: bytes) -> Tuple[SocketChannel, socket.socket]:
    mine, theirs = _roomy_socketpair()
    data = b"".join(b"%s %07d .........\n" % (tag, n) for n in range(lines))
    sent = theirs.send(data)
    assert sent > 200 * 1024, "the socket buffer took too little to test with"
    return SocketChannel(mine, buffering="line"), theirs


def _unread(sock: socket.socket) -> int:
    import fcntl  # noqa: PLC0415 - POSIX only
    import termios  # noqa: PLC0415 - POSIX only

    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


def _flooded_socketpair(size: int) -> Tuple[socket.socket, socket.socket, int]:
    """A socketpair with up to ``size`` bytes of 32-byte lines waiting in
    it (what its buffers take without blocking); and how many."""
    mine, theirs = _roomy_socketpair()
    data = memoryview(b"".join(b"%07d .......................\n" % n for n in range(size // 32)))
    sent = 0
    with contextlib.suppress(BlockingIOError):
        while sent < len(data):
            sent += theirs.send(data[sent:])
    assert _unread(mine) == sent
    return mine, theirs, sent


@posix_only
@pytest.mark.parametrize("call", ["poll", "poll_events", "poll_batches"])
@pytest.mark.parametrize("budget", [DEFAULT_READ_BUDGET, 10_000])
def test_one_busy_channel_is_read_its_whole_budget(
    selector_cls: Type[selectors.BaseSelector], call: str, budget: int
) -> None:
    """Alone, a flooding channel is read its whole ``read_budget`` a call by
    every kind of poll (fewer, larger reads: the kernel's cost is per read)."""
    mine, theirs, size = _flooded_socketpair(384 * 1024)
    if size <= budget:
        mine.close()
        theirs.close()
        pytest.skip(f"a socketpair here holds {size} bytes, not more than {budget}")
    with theirs, Poller(buffering="line", selector=selector_cls, read_budget=budget) as poller:
        channel = SocketChannel(mine, buffering="line")
        poller.register(channel)
        assert getattr(poller, call)(DEADLINE)
        assert size - _unread(mine) == budget
        channel.close()


@posix_only
@pytest.mark.parametrize(("call", "most"), [("poll", CALL_READ), ("poll_batches", None)])
def test_while_several_are_busy_poll_reads_each_what_a_call_hands_out(
    selector_cls: Type[selectors.BaseSelector], call: str, most: Optional[int]
) -> None:
    """With two flooding channels (both busy), ``poll()`` reads at most
    ``CALL_READ`` of one a call (it hands out ``HAND_OUT`` frames a call:
    more would only wait); ``poll_batches()``, which hands out all it read,
    still reads the whole budget."""
    pairs = [_flooded_socketpair(768 * 1024) for _ in range(2)]
    channels_ = [SocketChannel(mine, buffering="line") for mine, _, _ in pairs]
    try:
        with Poller(buffering="line", selector=selector_cls) as poller:
            for channel in channels_:
                poller.register(channel)
            reads_while_busy: List[int] = []
            for _ in range(200):  # (about 50 calls empty both with poll())
                both_busy = len(poller._registry.busy) >= 2
                before = [_unread(mine) for mine, _, _ in pairs]
                if not getattr(poller, call)(0) and not any(before):
                    break
                taken = [was - _unread(mine) for was, (mine, _, _) in zip(before, pairs)]
                if both_busy:
                    reads_while_busy += [count for count in taken if count]
            assert not any(_unread(mine) for mine, _, _ in pairs), "it stopped reading"
    finally:
        for channel in channels_:
            channel.close()
        for _, theirs, _ in pairs:
            theirs.close()
    assert reads_while_busy, "the two channels were never busy at once: no test"
    if most is None:
        assert max(reads_while_busy) == DEFAULT_READ_BUDGET
    else:
        assert max(reads_while_busy) <= most


def _turns(busy: int) -> int:
    """Calls within which each of ``busy`` channels is served: each call
    reads the next one in turn, unless what waits is between one and two
    calls' worth (then the next call has room, and reads)."""
    return 2 * (busy + 1) + 2


def test_several_flooders_are_served_in_turn(make_poller: Callable[..., Poller]) -> None:
    """Three flooders whose reads give many calls' worth: each is served
    within a few calls, again and again, calls are full, lines in order."""
    poller = make_poller(buffering="line")
    pairs = [_flooded_pair(40_000, b"%d" % n) for n in range(3)]
    for channel, _ in pairs:
        poller.register(channel)
    got: Dict[int, List[bytes]] = {id(channel): [] for channel, _ in pairs}
    last_served = dict.fromkeys(got, 0)
    calls = 4 * _turns(len(pairs))
    for call in range(1, calls + 1):
        results = poller.poll(DEADLINE)
        assert len(results) <= HAND_OUT
        for data, source in results:
            got[id(source)].append(data)
            last_served[id(source)] = call
        late = [key for key, served in last_served.items() if call - served >= _turns(len(pairs))]
        assert not late, f"{len(late)} flooders not served in {_turns(len(pairs))} calls"
    handed = sum(len(lines) for lines in got.values())
    assert handed >= 0.9 * calls * HAND_OUT, "calls handed out much less than they could"
    for channel, peer in pairs:  # each one's lines in order, none twice
        lines = got[id(channel)]
        numbers = [int(line.split()[1]) for line in lines]
        assert numbers == list(range(len(numbers)))
        channel.close()
        peer.close()


def test_a_quiet_line_is_not_stuck_behind_a_backlog(make_poller: Callable[..., Poller]) -> None:
    poller = make_poller(buffering="line")
    flood, flood_peer = _flooded_pair(40_000, b"f")
    quiet_end, quiet_peer = socket.socketpair()
    quiet = SocketChannel(quiet_end, buffering="line")
    poller.register(flood)
    poller.register(quiet)
    first = poller.poll(DEADLINE)
    assert all(source is flood for _, source in first)  # a backlog of the flood waits now
    quiet_peer.sendall(b"hello\n")
    for _ in range(2):  # (the next poll, or the one after if the line came late)
        if (b"hello\n", quiet) in poller.poll(DEADLINE):
            break
    else:
        raise AssertionError("the quiet line waited behind the flood's backlog")
    for closing in (flood, flood_peer, quiet, quiet_peer):
        closing.close()


def test_a_busy_channel_keeps_its_turn_and_the_quiet_one_gets_the_look(
    make_poller: Callable[..., Poller], monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a flood's backlog fills the calls, a channel whose last read
    was large (busy) is not read in 4 KiB looks (its reads would only be cut
    small): the look goes to the next one that is not busy, a quiet peer
    whose line then comes in that very call; the busy one is read whole
    once there is room, its lines in order."""
    poller = make_poller(buffering="line")
    busy_end, busy_peer = socket.socketpair()  # (made first: first in the ready list)
    busy = SocketChannel(busy_end, buffering="line")
    poller.register(busy)
    busy_peer.sendall(b"".join(b"b %05d\n" % n for n in range(200)))
    got_busy: List[bytes] = []
    deadline = time.monotonic() + DEADLINE
    while len(got_busy) < 200:  # (one read of 200 lines: it is busy now)
        assert time.monotonic() < deadline
        got_busy += [data for data, _ in poller.poll(DEADLINE)]
    quiet_end, quiet_peer = socket.socketpair()
    quiet = SocketChannel(quiet_end, buffering="line")
    poller.register(quiet)
    flood, flood_peer = _flooded_pair(40_000, b"f")
    poller.register(flood)
    reads: List[Tuple[object, int]] = []
    real_read = channels._turns.read_channel

    def recording(registry: object, watched: object, budget: int) -> int:
        reads.append((watched.channel, budget))  # type: ignore[attr-defined]
        return real_read(registry, watched, budget)  # type: ignore[arg-type]

    monkeypatch.setattr(channels._turns, "read_channel", recording)
    first = poller.poll(DEADLINE)  # the flood's read: many calls' worth waits now
    assert {id(source) for _, source in first} == {id(flood)}
    busy_peer.sendall(b"".join(b"b %05d\n" % n for n in range(200, 400)))
    quiet_peer.sendall(b"hello\n")
    assert busy_end.recv(16, socket.MSG_PEEK) and quiet_end.recv(16, socket.MSG_PEEK)
    reads.clear()
    second = poller.poll(DEADLINE)
    assert (b"hello\n", quiet) in second, "the quiet line waited behind the flood"
    assert (quiet, PEEK_BUDGET) in reads
    assert (busy, PEEK_BUDGET) not in reads, "a busy channel was cut into looks"
    while len(got_busy) < 400:  # the busy one is read whole in its turn, in order
        assert time.monotonic() < deadline, "the busy channel was never read again"
        got_busy += [data for data, source in poller.poll(DEADLINE) if source is busy]
    assert got_busy == [b"b %05d\n" % n for n in range(400)]
    for closing in (busy, busy_peer, quiet, quiet_peer, flood, flood_peer):
        closing.close()


def test_what_waits_stays_about_a_call_s_worth_however_many_flood(
    make_poller: Callable[..., Poller],
) -> None:
    """40 peers with 2,000 lines each waiting: no call leaves more than
    about two calls' worth and one read waiting (reading every ready
    channel left all 80,000 waiting, cut into shares again by every round),
    and every line comes once, in order."""
    poller = make_poller(buffering="line")
    pairs = []
    for n in range(40):
        mine, theirs = socket.socketpair()
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        theirs.sendall(b"".join(b"%02d %06d ...................\n" % (n, i) for i in range(2000)))
        pairs.append((SocketChannel(mine, buffering="line"), theirs))
        poller.register(pairs[-1][0])
    one_read = 2000  # (a peer's whole backlog: less than the read budget)
    peeks = 2 * (PEEK_BUDGET // 32 + 1)
    got: Dict[int, List[int]] = {id(channel): [] for channel, _ in pairs}
    deadline = time.monotonic() + DEADLINE
    while sum(map(len, got.values())) < 40 * 2000:
        assert time.monotonic() < deadline, "the lines stopped coming"
        for data, source in poller.poll(DEADLINE):
            got[id(source)].append(int(data.split()[1]))
        held = frames_held(poller._registry.results)
        assert held <= 2 * HAND_OUT + one_read + peeks, f"{held} frames wait"
    assert all(numbers == list(range(2000)) for numbers in got.values())
    _close_all(pairs)


# -- reads per poll: what select() reported is read over a few calls ---------


def _lined_pairs(count: int) -> List[Tuple[SocketChannel, socket.socket]]:
    pairs = []
    for n in range(count):
        mine, theirs = socket.socketpair()
        theirs.sendall(b"line %d\n" % n)
        assert mine.recv(64, socket.MSG_PEEK) == b"line %d\n" % n  # (there to be read)
        pairs.append((SocketChannel(mine, buffering="line"), theirs))
    return pairs


def _close_all(pairs: List[Tuple[SocketChannel, socket.socket]]) -> None:
    for channel, peer in pairs:
        channel.close()
        peer.close()


def test_a_poll_reads_a_bounded_number_of_ready_channels(
    make_poller: Callable[..., Poller],
) -> None:
    """Four times READS_PER_POLL channels with a line each, all ready at
    once: no call reads more than READS_PER_POLL of them, the next calls read
    the rest (without waiting), and every line comes once."""
    poller = make_poller(buffering="line")
    pairs = _lined_pairs(4 * READS_PER_POLL)
    for channel, _ in pairs:
        poller.register(channel)
    got: List[bytes] = []
    calls = 0
    while len(got) < len(pairs):
        results = poller.poll(DEADLINE)
        calls += 1
        assert 0 < len(results) <= READS_PER_POLL + 1, "a poll read too many channels"
        got += [data for data, _ in results]
        assert calls <= 8, "the rest of the ready list was not read"
    assert sorted(got) == sorted(b"line %d\n" % n for n in range(len(pairs)))
    assert poller.poll(0) == []
    _close_all(pairs)


def test_a_channel_gone_from_the_ready_list_is_not_read(
    make_poller: Callable[..., Poller],
) -> None:
    """Channels the first poll() left for the next one are unregistered,
    closed, and their fds reused by new channels before it: the next poll
    reads the new ones (their own data), never an old record."""
    poller = make_poller(buffering="line")
    pairs = _lined_pairs(3 * READS_PER_POLL)
    for channel, _ in pairs:
        poller.register(channel)
    first = {id(channel) for _, channel in poller.poll(DEADLINE)}
    assert len(first) <= READS_PER_POLL + 1
    left = [(channel, peer) for channel, peer in pairs if id(channel) not in first]
    fresh: List[Tuple[SocketChannel, socket.socket]] = []
    for channel, peer in left[::2]:  # unregistered, closed, its number taken by another
        poller.unregister(channel)
        channel.close()
        peer.close()
        mine, theirs = socket.socketpair()
        theirs.sendall(b"new %d\n" % mine.fileno())
        assert mine.recv(64, socket.MSG_PEEK).endswith(b"\n")
        fresh.append((SocketChannel(mine, buffering="line"), theirs))
        poller.register(fresh[-1][0])
    for channel, _ in left[1::2]:  # closed while registered
        channel.close()
    expected = {(b"new %d\n" % channel.get_fd(), id(channel)) for channel, _ in fresh}
    expected |= {(b"", id(channel)) for channel, _ in left[1::2]}
    seen = set()
    for _ in range(20):
        results = poller.poll(0)
        seen |= {(data, id(source)) for data, source in results}
        if not results and seen >= expected:
            break
    assert seen == expected
    _close_all(pairs + fresh)


def test_a_channel_paused_while_in_the_ready_list_is_not_read(
    make_poller: Callable[..., Poller],
) -> None:
    """Channels the first poll() left for the next one are paused before it,
    half of them with output queued (still selected, for writing only): no
    poll reads them, their queued output still goes out, and once resumed
    every line comes, once."""
    poller = make_poller(buffering="line")
    pairs = _lined_pairs(3 * READS_PER_POLL)
    for channel, _ in pairs:
        poller.register(channel)
    first = {id(channel) for _, channel in poller.poll(DEADLINE)}
    assert 0 < len(first) <= READS_PER_POLL + 1
    left = [(channel, peer) for channel, peer in pairs if id(channel) not in first]
    reply = b"r" * (256 * 1024)  # (past the socket buffers: some of it queues)
    for channel, _ in left:
        poller.pause_reading(channel)
    for channel, _ in left[::2]:
        channel.write(reply)
        assert channel.write_buffer_size > 0, "nothing queued: the write path is untested"
    got = {peer: bytearray() for channel, peer in left[::2]}
    deadline = time.monotonic() + DEADLINE
    while any(len(data) < len(reply) for data in got.values()):
        assert time.monotonic() < deadline, "the queued output of a paused channel stalled"
        assert poller.poll(0.01) == [], "a paused channel was read"
        for peer in got:
            with contextlib.suppress(BlockingIOError):
                got[peer] += peer.recv(1 << 20, socket.MSG_DONTWAIT)
    assert all(data == reply for data in got.values())
    for channel, _ in left:
        poller.resume_reading(channel)
    seen: List[bytes] = []
    while len(seen) < len(left):
        results = poller.poll(DEADLINE)
        assert results, "a resumed channel's line did not come"
        seen += [data for data, _ in results]
    expected = [b"line %d\n" % pairs.index(pair) for pair in left]
    assert sorted(seen) == sorted(expected)
    assert poller.poll(0) == []
    _close_all(pairs)


LINES = 12_000


def test_many_flooders_are_each_served_within_a_few_polls(
    make_poller: Callable[..., Poller],
) -> None:
    """More flooding channels than one call reads, and a quiet one: each is
    served within a bounded number of calls (its turn: see _turns), in
    order, nothing twice."""
    poller = make_poller(buffering="line")
    flooders = [_flooded_pair(LINES, b"%d" % n) for n in range(3 * READS_PER_POLL)]
    quiet_end, quiet_peer = socket.socketpair()
    quiet = SocketChannel(quiet_end, buffering="line")
    for channel, _ in flooders:
        poller.register(channel)
    poller.register(quiet)
    got: Dict[int, List[bytes]] = {id(channel): [] for channel, _ in flooders}
    last_served = {id(channel): 0 for channel, _ in flooders}
    bound = _turns(len(flooders) + 1)
    quiet_sent_at = None
    for call in range(1, 3 * bound):  # (the flooders have more than that to hand out)
        if call == 20:
            quiet_peer.sendall(b"hello\n")
            quiet_sent_at = call
        for data, source in poller.poll(DEADLINE):
            if source is quiet:
                assert quiet_sent_at is not None and call - quiet_sent_at <= bound
                quiet_sent_at = None
                continue
            got[id(source)].append(data)
            last_served[id(source)] = call
        waiting = [  # (one whose lines all came is served no more)
            key for key in last_served if call - last_served[key] > bound and len(got[key]) < LINES
        ]
        assert not waiting, f"{len(waiting)} flooders not served in {bound} polls"
    assert quiet_sent_at is None, "the quiet line never came"
    for channel, peer in flooders:
        numbers = [int(line.split()[1]) for line in got[id(channel)]]
        assert numbers == list(range(len(numbers))) and numbers
        channel.close()
        peer.close()
    quiet.close()
    quiet_peer.close()


class Interrupted(Exception):
    """Raised where a signal handler would, while a poll hands out."""


def test_what_waits_stays_bounded_while_handing_out_is_interrupted(
    make_poller: Callable[..., Poller], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that raises in every call while it hands out: what was
    read waits, and no channel is read again until it went out (it grew by
    a read per channel per call, and a raise every millisecond kept a poll
    with 40 busy channels from ever finishing). Then every line comes once."""
    poller = make_poller(buffering="line")
    pairs = [_flooded_pair(40_000, b"%d" % n) for n in range(4)]
    for channel, _ in pairs:
        poller.register(channel)

    def interrupted(items: object) -> NoReturn:
        raise Interrupted

    monkeypatch.setattr(channels.poller, "as_tuples", interrupted)
    for _ in range(20):
        with pytest.raises(Interrupted):
            poller.poll(DEADLINE)
    chunks_per_read = -(-poller.read_budget // READ_SIZE) + 1
    assert len(poller._registry.results) <= len(pairs) * chunks_per_read, "it kept reading"
    monkeypatch.undo()
    got: Dict[int, List[bytes]] = {id(channel): [] for channel, _ in pairs}
    for _ in range(1000):
        results = poller.poll(0)
        if not results:
            break
        for data, source in results:
            got[id(source)].append(data)
    for channel, peer in pairs:
        numbers = [int(line.split()[1]) for line in got[id(channel)]]
        assert numbers == list(range(len(numbers))) and len(numbers) > 1000
        channel.close()
        peer.close()


def test_a_read_cut_short_before_it_took_anything_is_done_again(
    make_poller: Callable[..., Poller],
) -> None:
    """A raise right after a channel was marked read (so not to be read
    again until its frames went out), before it read anything: the next
    poll() reads it, rather than wait its whole timeout for nothing."""
    poller = make_poller(buffering="line")
    mine, theirs = socket.socketpair()
    channel = SocketChannel(mine, buffering="line")
    poller.register(channel)
    theirs.sendall(b"line\n")

    class Cut(Set[int]):
        def add(self, key: int) -> None:
            super().add(key)
            raise Interrupted

    poller._registry.backlog = Cut()
    with pytest.raises(Interrupted):
        poller.poll(DEADLINE)
    assert poller.poll(DEADLINE) == [(b"line\n", channel)]
    channel.close()
    theirs.close()


def test_poll_without_a_timeout_wakes_for_a_busy_channel_that_ran_dry(
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    # A busy channel is not selected while its lines wait; once they are out
    # it is read again without select() and, found empty, must be selected
    # again before poll(None) waits: else its next line never wakes the call
    # (make bench stalled so, on one connection with a slower producer).
    blocking = threading.Event()

    class Announcing(selector_cls):  # type: ignore[valid-type,misc]
        def select(self, timeout: Optional[float] = None) -> List[Tuple[SelectorKey, int]]:
            if timeout is None or timeout > 0:
                blocking.set()
            return list(super().select(timeout))

    mine, theirs = socket.socketpair()
    done = threading.Event()
    stalled = threading.Event()
    with Poller(buffering="line", selector=Announcing) as poller:
        channel = SocketChannel(mine, buffering="line")
        poller.register(channel)

        def watchdog() -> None:
            if not done.wait(DEADLINE):
                stalled.set()
                poller.wakeup()

        for round_ in range(3):
            theirs.sendall(b"line\n" * (3 * HAND_OUT))  # busy: held back while they wait
            got = 0
            while got < 3 * HAND_OUT:
                got += len(poller.poll(DEADLINE))
            assert got == 3 * HAND_OUT
            blocking.clear()
            done.clear()
            sender = threading.Thread(
                target=lambda: blocking.wait(DEADLINE) and theirs.sendall(b"last\n")
            )
            guard = threading.Thread(target=watchdog)
            sender.start()
            guard.start()
            results = poller.poll()  # no timeout: only the line can end it
            done.set()
            sender.join(DEADLINE)
            guard.join(DEADLINE)
            assert not stalled.is_set(), f"round {round_}: poll() did not wake for the line"
            assert results == [(b"last\n", channel)]
    theirs.close()


def test_a_busy_channel_paused_while_its_lines_wait_is_not_read_nor_spun_on(
    selector_cls: Type[selectors.BaseSelector],
) -> None:
    # Paused while held back from select(): when its lines are out, poll()
    # neither reads it nor turns into a busy loop of select(0) calls; resumed,
    # it is read at once.
    calls: List[Optional[float]] = []

    class Counting(selector_cls):  # type: ignore[valid-type,misc]
        def select(self, timeout: Optional[float] = None) -> List[Tuple[SelectorKey, int]]:
            calls.append(timeout)
            return list(super().select(timeout))

    mine, theirs = socket.socketpair()
    with Poller(buffering="line", selector=Counting) as poller:
        channel = SocketChannel(mine, buffering="line")
        poller.register(channel)
        theirs.sendall(b"line\n" * (3 * HAND_OUT))
        got = len(poller.poll(DEADLINE))  # busy: held back while the rest waits
        poller.pause_reading(channel)
        theirs.sendall(b"more\n" * 10)
        while got < 3 * HAND_OUT:
            got += len(poller.poll(DEADLINE))
        assert got == 3 * HAND_OUT
        calls.clear()
        assert poller.poll(0.2) == []  # paused: its "more" stays unread
        assert len(calls) < 10, f"{len(calls)} select() calls in 0.2 s"
        poller.resume_reading(channel)
        assert poller.poll(DEADLINE) == [(b"more\n", channel)] * 10
    theirs.close()


def test_a_poller_keeps_nothing_of_the_busy_channels_that_ended(
    make_poller: Callable[..., Poller],
) -> None:
    """Clients whose last read gave ``MIN_SHARE`` lines or more and their
    close (a full read, then the end: one read of the Poller's): once each
    close is reported, the Poller's marks of busy and held-back channels
    hold none of them (a server living through many such clients must not
    keep a mark per client)."""
    poller = make_poller(buffering="line")
    registry = poller._registry
    clients = 50
    ended: List[SocketChannel] = []
    for number in range(clients):
        mine, theirs = socket.socketpair()
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)  # (it all fits:
        mine.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # macOS's are 8 KiB)
        with theirs:
            theirs.sendall(_numbered_block(number))
        ended.append(SocketChannel(mine, buffering="line"))
        poller.register(ended[-1])
    closed = lines = 0
    deadline = time.monotonic() + DEADLINE
    try:
        while closed < clients:
            assert time.monotonic() < deadline, f"{closed} of {clients} closes came"
            for data, _ in poller.poll(DEADLINE):
                closed += not data
                lines += bool(data)
        assert lines == clients * len(_numbered_block(0).splitlines())
        assert not registry.busy
        assert not registry.held_back
        assert not registry.unfinished
    finally:
        for channel in ended:
            channel.close()


def test_a_channel_read_to_its_end_in_one_read_is_not_kept_busy(
    make_poller: Callable[..., Poller],
) -> None:
    """A channel class that reads until there is nothing more (``TestChannel``,
    as custom channels may) meets its end in the read that gives its last
    lines: once the close is reported, no mark of it is left."""
    poller = make_poller(buffering="line")
    with TestChannel(buffering="line") as channel:
        poller.register(channel)
        channel.put(b"".join(b"%d\n" % line for line in range(2 * MIN_SHARE)))
        channel.put_eof()
        got: List[bytes] = []
        deadline = time.monotonic() + DEADLINE
        while b"" not in got:
            assert time.monotonic() < deadline, "the close never came"
            got += [data for data, _ in poller.poll(DEADLINE)]
        assert got == [b"%d\n" % line for line in range(2 * MIN_SHARE)] + [b""]
        registry = poller._registry
        assert not (registry.busy or registry.held_back or registry.unfinished)


def _numbered_block(number: int) -> bytes:
    """``READ_SIZE`` bytes of 32-byte lines that say whose they are."""
    block = b"".join(b"%15d %15d\n" % (number, line) for line in range(READ_SIZE // 32))
    assert len(block) == READ_SIZE and len(block) // 32 >= MIN_SHARE
    return block
