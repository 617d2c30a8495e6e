"""What an idle channel keeps: shared, empty state (issue #14's memory per
idle channel), and that sharing never leaks between channels; and the
channel classes' open layout, kept for 0.2 applications."""

import io
import os
import socket
import weakref
from typing import Dict, Iterator, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from channels import EndpointClosedException, PipeChannel, Poller, SocketChannel
from channels._outbox import IDLE_OUTBOX
from channels._rare import idle_state
from channels._records import _NOTHING_SET, Watched
from channels.testing import TestChannel

from .conftest import poll_until, posix_only
from .test_poller import BareChannel


@pytest.fixture
def pair() -> Iterator[List[socket.socket]]:
    socks = list(socket.socketpair())
    yield socks
    for sock in socks:
        sock.close()


class _Tagged:
    """A user's mixin with slots of its own."""

    __slots__ = ("tag",)


def test_channel_classes_keep_an_open_layout_as_in_0_2(pair: List[socket.socket]) -> None:
    """No slots on the channel classes (a decision: they would save 16-72 B
    per channel): a 0.2 class that combines a channel class with a base of
    its own layout (a C type such as ``io.RawIOBase``, a slotted mixin) can
    still be made, and an application may hang its own attributes on a
    channel and take weak references to it."""

    class RawSocketChannel(SocketChannel, io.RawIOBase):
        pass

    class TaggedPipeChannel(_Tagged, PipeChannel):
        pass

    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    tagged = TaggedPipeChannel(sink=write_fd)
    tagged.tag = "worker-1"
    raw = RawSocketChannel(pair[0], buffering="line")
    pair[1].sendall(b"line\n")
    assert poll_until_read(raw) == b"line\n"
    plain_pair = socket.socketpair()
    plain_pair[1].close()
    for channel in (raw, tagged, SocketChannel(plain_pair[0])):
        channel.name = "worker-1"  # type: ignore[union-attr]
        assert channel.name == "worker-1"  # type: ignore[union-attr]
        assert weakref.ref(channel)() is channel
        channel.close()
    assert tagged.tag == "worker-1"


def poll_until_read(channel: SocketChannel) -> bytes:
    with Poller() as poller:
        poller.register(channel)
        got = poll_until(poller, bool)
        poller.unregister(channel)
    return got[0][0]


def test_the_idle_outbox_is_shared_and_never_changes(poller: Poller) -> None:
    """A channel that never queued output keeps the shared idle outbox
    through everything that changes nothing (a flush, removing callbacks it
    never had, being watched and let go, a close); the shared one stays
    empty. Writing it is refused outright."""
    channel = TestChannel(buffering="line")
    poller.register(channel)
    assert channel.flush(0)
    channel.remove_output_callback(print)
    channel.remove_drain_callback(print)
    poller.unregister(channel)
    poller.register(channel)
    channel.put(b"line\n")
    assert poll_until(poller, bool) == [(b"line\n", channel)]
    channel.close()
    assert poll_until(poller, bool) == [(b"", channel)]
    assert channel._outbox is IDLE_OUTBOX
    assert (IDLE_OUTBOX.size, IDLE_OUTBOX.accepted, IDLE_OUTBOX.undelivered) == (0, 0, 0)
    assert IDLE_OUTBOX.failure is None and IDLE_OUTBOX.watcher is None
    assert not IDLE_OUTBOX.watched
    with pytest.raises(AssertionError, match="idle outbox"):
        IDLE_OUTBOX.size = 1


def test_each_change_gets_the_channel_its_own_outbox(poller: Poller) -> None:
    """A write, an output or drain callback, and a broken connection each
    give the channel an outbox of its own (the watcher goes with it): what
    one channel queued or lost is never another's."""
    writer, listener, drained, broken = (TestChannel() for _ in range(4))
    poller.register(writer)
    writer.throttle_writes(0, 0)
    writer.write(b"queued")
    assert poller._registry.find(writer).writing  # type: ignore[union-attr]
    assert writer._outbox.watcher is writer.watcher is not None
    heard: List[bool] = []
    listener.add_output_callback(heard.append)
    listener.throttle_writes(0, 0)
    listener.write(b"x")
    assert heard == [True]
    drained.add_drain_callback(print)
    broken.reset_peer()
    with pytest.raises(EndpointClosedException):
        broken.read()
    for channel in (writer, listener, drained, broken):
        assert channel._outbox is not IDLE_OUTBOX
    assert (writer.write_buffer_size, listener.write_buffer_size) == (6, 1)
    assert drained.write_buffer_size == broken.write_buffer_size == 0
    assert IDLE_OUTBOX.size == 0 and not IDLE_OUTBOX.watched
    listener.remove_output_callback(heard.append)
    for channel in (writer, listener, drained, broken):
        channel.abort()
    assert writer.undelivered == 6 and listener.undelivered == 1
    assert IDLE_OUTBOX.undelivered == 0


def test_a_failed_end_of_writing_on_an_idle_channel_is_its_own(
    pair: List[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """write_eof() with nothing ever queued, whose shutdown fails: the
    failure is the channel's (its next write says so), not every idle one's."""
    channel = SocketChannel(pair[0])
    other = SocketChannel(pair[1])

    def refused() -> None:
        raise ConnectionResetError(104, "reset by the test")

    monkeypatch.setattr(channel, "_end_writing", refused)
    with pytest.raises(EndpointClosedException, match="reset by the test"):
        channel.write_eof()
    with pytest.raises(EndpointClosedException, match="reset by the test"):
        channel.write(b"more")
    other.write(b"fine")
    assert pair[0].recv(10) == b"fine"
    assert IDLE_OUTBOX.failure is None
    channel.close()
    other.close()


def test_a_plain_end_of_reading_keeps_the_idle_outbox(pair: List[socket.socket]) -> None:
    """The peer half-closes a channel that never wrote: it keeps the shared
    outbox (only a read error changes one), and can still write after."""
    channel = SocketChannel(pair[0], buffering="line")
    pair[1].shutdown(socket.SHUT_WR)
    with pytest.raises(EndpointClosedException):
        _read_to_the_end(channel)
    assert channel._outbox is IDLE_OUTBOX
    channel.write(b"after\n")
    assert channel._outbox is not IDLE_OUTBOX
    assert pair[1].recv(10) == b"after\n"
    channel.close()


def _read_to_the_end(channel: SocketChannel) -> None:
    with Poller() as poller:
        poller.register(channel)
        assert poll_until(poller, bool) == [(b"", channel)]
        poller.unregister(channel)
    channel.read()


def test_seldom_changed_state_is_shared_until_a_channel_changes_it(
    pair: List[socket.socket],
) -> None:
    """Linger, low water, close callbacks and agents, the creator's pid:
    channels that changed none share one read-only state (those that only
    set a linger share the one for it); each change is that channel's."""
    first, second, third = (TestChannel() for _ in range(3))
    assert first._rare is second._rare is idle_state(first.linger)
    assert first._rare.shared and first._rare.pid == os.getpid()
    first.linger = 0.5
    second.linger = 0.5
    assert first._rare is second._rare is idle_state(0.5) is not third._rare
    assert (first.linger, third.linger) == (0.5, 5.0)
    first.low_water = 10
    second.add_close_callback(print)
    for changed in (first, second):
        assert not changed._rare.shared and changed._rare is not idle_state(0.5)
    assert (first.low_water, second.low_water) == (10, second.high_water // 4)
    assert second._rare.close_callbacks == (print,) and first._rare.close_callbacks == ()
    first.linger = 2.0
    assert (first.linger, second.linger, first.low_water) == (2.0, 0.5, 10)
    assert not first._rare.shared
    for state in (idle_state(0.5), idle_state(5.0)):
        assert state.low_water is None and state.close_callbacks == ()
    second.remove_close_callback(print)
    for channel in (first, second, third):
        channel.close()
    assert idle_state(5.0).unreleased is idle_state(5.0).handed_over is False


@posix_only
def test_a_channel_made_in_a_forked_child_is_the_childs(pair: List[socket.socket]) -> None:
    """The shared state holds the creator's pid: a channel the child makes
    after fork() is its own (its close releases its fds), one it inherited
    is not (its close leaves the parent's fds alone)."""
    inherited = SocketChannel(pair[0])
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through its exit code)
        code = 1
        try:
            mine = SocketChannel(socket.socket(fileno=os.dup(pair[1].fileno())))
            ok = not mine._inherited() and inherited._inherited()
            ok = ok and mine._rare.pid == os.getpid() != inherited._rare.pid
            mine.close()
            ok = ok and mine.sock.fileno() == -1
            code = 0 if ok else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not inherited._inherited()
    inherited.close()


@posix_only
def test_what_few_records_set_is_shared_by_the_others(poller: Poller) -> None:
    """A record keeps a pause, a pipe's sink and a close in the background
    in a state of its own; the others share one that never changes."""
    idle, paused, closing = (TestChannel() for _ in range(3))
    read_fd, write_fd = os.pipe()
    piped = PipeChannel(faucet=read_fd, sink=os.dup(write_fd))
    for channel in (idle, paused, closing, piped):
        poller.register(channel)
    records = [poller._registry.find(c) for c in (idle, paused, closing, piped)]
    assert all(isinstance(record, Watched) for record in records)
    idle_r, paused_r, closing_r, piped_r = records
    assert idle_r.seldom is paused_r.seldom is closing_r.seldom is _NOTHING_SET  # type: ignore[union-attr]
    poller.pause_reading(paused)
    closing.throttle_writes(0, 0)
    closing.write(b"queued")
    closing.close()  # (the Poller finishes it: taken, with a deadline)
    assert piped_r.write_side is not None and piped_r.write_fd != piped_r.fd  # type: ignore[union-attr]
    assert paused_r.paused and closing_r.taken and closing_r.deadline > 0  # type: ignore[union-attr]
    for record in (paused_r, closing_r, piped_r):
        assert record.seldom is not _NOTHING_SET  # type: ignore[union-attr]
    assert idle_r.seldom is _NOTHING_SET and not idle_r.paused  # type: ignore[union-attr]
    assert idle_r.write_fd is idle_r.fd  # type: ignore[union-attr]
    nothing = _NOTHING_SET
    assert (nothing.paused, nothing.taken, nothing.deadline, nothing.write_side) == (
        False,
        False,
        0.0,
        None,
    )
    assert not nothing.always_readable
    poller.resume_reading(paused)
    os.close(write_fd)
    for channel in (idle, paused, closing, piped):
        channel.abort()


def test_the_shared_states_refuse_any_change() -> None:
    """A path that would change a shared state instead of copying it fails
    loudly (it would otherwise change every idle channel or record)."""
    with pytest.raises(AssertionError, match="shared RareState"):
        idle_state(5.0).linger = 1.0
    with pytest.raises(AssertionError, match="shared SeldomSet"):
        _NOTHING_SET.paused = True
    assert idle_state(5.0).linger == 5.0 and not _NOTHING_SET.paused


def test_a_channel_two_pollers_watch_is_found_by_each(pair: List[socket.socket]) -> None:
    """The first Poller's record is the channel's watcher (found through the
    channel); the second finds its own by the channel's identity. Each
    pauses, reads and lets go of the channel on its own, and one that let
    it go finds nothing."""
    channel = SocketChannel(pair[0], buffering="line")
    with Poller() as first, Poller() as second:
        first.register(channel)
        second.register(channel)
        mine, theirs = first._registry.find(channel), second._registry.find(channel)
        assert channel.watcher is mine is not None and theirs not in (None, mine)
        second.pause_reading(channel)
        pair[1].sendall(b"one\n")
        assert poll_until(first, bool) == [(b"one\n", channel)]
        assert second.poll(0) == []  # (paused there)
        first.unregister(channel)
        assert first._registry.find(channel) is None and channel.watcher is None
        second.resume_reading(channel)
        pair[1].sendall(b"two\n")
        assert poll_until(second, bool) == [(b"two\n", channel)]
        first.register(channel)  # (again: its record is the watcher again)
        assert channel.watcher is first._registry.find(channel) is not None
        second.unregister(channel)
        assert second._registry.find(channel) is None
        assert not second._registry.held.records and not second._registry.held.dormant
        pair[1].sendall(b"three\n")
        assert poll_until(first, bool) == [(b"three\n", channel)]
        first.unregister(channel)
    channel.close()


def test_a_record_is_found_through_its_channel_only_while_held(
    pair: List[socket.socket],
) -> None:
    """An idle Channel costs the index one entry and no int; once its record
    is let go, the watcher is gone and nothing finds it. A channel that is
    no Channel is found by its identity, and forgotten as well."""
    channel = SocketChannel(pair[0], buffering="line")
    bare = BareChannel()
    with Poller() as poller:
        poller.register(channel)
        poller.register(bare)
        held = poller._registry.held
        record, other = poller._registry.find(channel), poller._registry.find(bare)
        assert record is not None and other is not None
        assert list(held.records) == [record, other]
        assert held._by_identity == {id(bare): other}
        bare.peer.sendall(b"raw")
        assert poll_until(poller, bool) == [(b"raw", bare)]
        poller.unregister(channel)
        poller.unregister(bare)
        for gone, what in ((record, channel), (other, bare)):
            assert poller._registry.find(what) is None and gone not in held.records
            assert gone.state.value == "forgotten"
        assert channel.watcher is None and held._by_identity == {}
    channel.close()
    bare.close()


_OPS = st.lists(
    st.tuples(
        st.integers(0, 3),  # which channel
        st.sampled_from(["linger", "low_water", "add_callback", "remove_callback", "agent"]),
        st.sampled_from([0.5, 2.0, 5.0, 0, 7, 100]),
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_no_change_to_one_channel_reaches_another(ops: List[Tuple[int, str, float]]) -> None:
    """Channels share their seldom changed state until one changes it:
    whatever is changed, in any order, each channel reads back exactly what
    was set on it (a model of plain attributes), and the shared states stay
    as they were made."""
    channels = [TestChannel() for _ in range(4)]
    model: List[Dict[str, object]] = [
        {"linger": 5.0, "low_water": None, "callbacks": (), "agents": ()} for _ in channels
    ]
    callbacks = [lambda: None for _ in channels]
    agents = [lambda: False for _ in channels]
    try:
        for index, op, value in ops:
            channel, state = channels[index], model[index]
            if op == "linger":
                channel.linger = value
                state["linger"] = float(value)
            elif op == "low_water":
                channel.low_water = int(value)
                state["low_water"] = int(value)
            elif op == "add_callback":
                channel.add_close_callback(callbacks[index])
                state["callbacks"] = (*state["callbacks"], callbacks[index])  # type: ignore[misc]
            elif op == "remove_callback":  # (one of them, if any)
                channel.remove_close_callback(callbacks[index])
                state["callbacks"] = state["callbacks"][1:]  # type: ignore[index]
            else:
                channel.add_close_agent(agents[index])
                state["agents"] = (*state["agents"], agents[index])  # type: ignore[misc]
            for other, expected in zip(channels, model):
                assert other.linger == expected["linger"]
                assert other._low_water == expected["low_water"]
                assert other._close_callbacks == expected["callbacks"]
                assert other._close_agents == expected["agents"]
        for linger in (0.5, 2.0, 5.0, 0.0, 7.0, 100.0):
            shared = idle_state(linger)
            assert shared.linger == linger and shared.low_water is None
            assert shared.close_callbacks == () and shared.close_agents == ()
    finally:
        for channel in channels:
            channel.close()
