"""The lifecycle against a model: random steps, every byte and report counted.

A hypothesis state machine drives a Poller with channels of four kinds (TCP
sockets, pipes, TestChannel, and TCP with line framing and a line limit)
through random sequences of register, peer sends (and lines too long),
peer half-close and reset, application writes, close, unregister, pause and
resume, and polls. After every poll it checks what came against a
model: each channel's bytes arrive in order, none twice, none after its
report; a channel is reported at most once, never after it was unregistered,
with the reason its history calls for. At the end every peer ends its
stream, and every channel still registered must be reported exactly once,
with every byte its peer sent (0 lost, 0 duplicated) unless the application
closed it or the peer reset it, and every peer gets every byte written to it.
"""

import contextlib
import os
import random
import selectors
import socket
import struct
import sys
import time

if sys.platform != "win32":
    import fcntl
from typing import Callable, List, Optional

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import event as note_event
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from channels import (
    Channel,
    ChannelClosed,
    CloseReason,
    DataReceived,
    EndpointClosedException,
    LineBuffering,
    PipeChannel,
    Poller,
    SocketChannel,
)
from channels.buffering import BufferingArg
from channels.testing import TestChannel

from .conftest import SELECTOR_CLASSES, WINDOWS

SEND_LIMIT = 16 * 1024
"""Bytes a peer sends at most: under every OS buffer, so sends never block."""
WRITE_LIMIT = 96 * 1024
"""Bytes the application writes to a channel at most: past the buffers
towards the peer (shrunk to a few KiB), so output queues and a close has
something to deliver in the background."""
SMALL_BUFFER = 4096


class Model:
    """One channel, its peer, and what the model expects of them."""

    def __init__(self, kind: str, channel: Channel, peer: "PeerEnd") -> None:
        self.kind = kind
        self.channel = channel
        self.peer = peer
        self.sent = bytearray()
        self.received = bytearray()
        self.written = bytearray()
        self.peer_got = bytearray()
        self.registered = True
        self.paused = False
        self.reports = 0
        self.peer_ended = False
        self.peer_reset = False
        self.app_closed = False
        self.unregistered = False
        # TCP: closed with input unread, it sends a reset, which may drop what
        # the peer had not read yet (RFC 1122 4.2.2.13; Linux does so).
        self.may_reset_on_close = False
        # Line channels: a line too long was sent; what came before it.
        self.too_long_after: Optional[int] = None

    def __repr__(self) -> str:
        return f"<{self.kind} {self.channel!r}>"


class PeerEnd:
    """The other end: send, end (half-close), reset, receive, close."""

    def __init__(
        self,
        send: Callable[[bytes], None],
        end: Callable[[], None],
        recv: Callable[[], bytes],
        close: Callable[[], None],
        reset: Optional[Callable[[], None]] = None,
    ) -> None:
        self.send, self.end, self.recv, self.close, self.reset = send, end, recv, close, reset


def _tcp(buffering: BufferingArg = "bytes") -> "tuple[Channel, PeerEnd]":
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        peer = socket.socket()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
        peer.connect(listener.getsockname())
        mine, _ = listener.accept()
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    peer.setblocking(False)

    def recv() -> bytes:
        data = b""
        with contextlib.suppress(BlockingIOError, ConnectionError):
            while chunk := peer.recv(65536):
                data += chunk
        return data

    def reset() -> None:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.close()

    def end() -> None:
        with contextlib.suppress(OSError):  # (a reset from our side: gone already)
            peer.shutdown(socket.SHUT_WR)

    channel = SocketChannel(mine, buffering=buffering, linger=0.2)
    return channel, PeerEnd(peer.sendall, end, recv, peer.close, reset)


def _pipe() -> "tuple[Channel, PeerEnd]":
    faucet, writer = os.pipe()
    reader, sink = os.pipe()
    with contextlib.suppress(OSError, AttributeError):  # Linux: a pipe of one page
        fcntl.fcntl(sink, getattr(fcntl, "F_SETPIPE_SZ", 1031), SMALL_BUFFER)
    os.set_blocking(sink, False)
    os.set_blocking(reader, False)
    channel = PipeChannel(faucet, sink, linger=0.2)
    open_fds = {"writer": writer, "reader": reader}

    def send(data: bytes) -> None:
        os.write(open_fds["writer"], data)

    def end() -> None:
        os.close(open_fds.pop("writer"))

    def recv() -> bytes:
        data = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(reader, 65536):
                data += chunk
        return data

    def close() -> None:
        for fd in open_fds.values():
            os.close(fd)
        open_fds.clear()

    return channel, PeerEnd(send, end, recv, close)


def _tcp_lines() -> "tuple[Channel, PeerEnd]":
    return _tcp(LineBuffering(max_length=MAX_LINE))


def _test_channel() -> "tuple[Channel, PeerEnd]":
    channel = TestChannel(linger=0.2)
    channel.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER)
    return channel, PeerEnd(
        channel.put, channel.put_eof, channel.get, lambda: None, channel.reset_peer
    )


MAX_LINE = 64
"""The line limit of the ``lines`` kind."""

KINDS = {"tcp": _tcp, "test": _test_channel, "lines": _tcp_lines}
if not WINDOWS:
    KINDS["pipe"] = _pipe


class LifecycleMachine(RuleBasedStateMachine):
    """A Poller and its channels, checked against ``Model`` after every step."""

    selector: Callable[[], selectors.BaseSelector] = selectors.DefaultSelector

    channels = Bundle("channels")

    def __init__(self) -> None:
        super().__init__()
        self.poller = Poller(selector=self.selector)
        self.models: List[Model] = []

    # -- the application and the peers ---------------------------------------

    @rule(target=channels, kind=st.sampled_from(sorted(KINDS)))
    def add(self, kind: str) -> Model:
        channel, peer = KINDS[kind]()
        model = Model(kind, channel, peer)
        self.models.append(model)
        self.poller.register(channel)
        return model

    @rule(model=channels, data=st.binary(min_size=1, max_size=700))
    def peer_sends(self, model: Model, data: bytes) -> None:
        if model.peer_ended or model.peer_reset or len(model.sent) + len(data) > SEND_LIMIT:
            return
        if model.app_closed and model.kind not in ("tcp", "lines"):
            return  # (a TCP peer may go on sending after the close: see _peer_sends)
        if model.kind == "lines":  # lines well under the limit: none is too long
            data = b"".join(
                data[start : start + 32].replace(b"\n", b".") + b"\n"
                for start in range(0, len(data), 32)
            )
        if self._peer_sends(model, data):
            model.sent += data

    @rule(model=channels, length=st.integers(MAX_LINE + 1, 3 * MAX_LINE))
    def peer_sends_a_line_too_long(self, model: Model, length: int) -> None:
        if model.kind != "lines" or model.peer_ended or model.peer_reset:
            return
        if model.too_long_after is None:
            model.too_long_after = model.sent.rfind(b"\n") + 1
        data = b"L" * length
        if self._peer_sends(model, data):
            model.sent += data

    @staticmethod
    def _peer_sends(model: Model, data: bytes) -> bool:
        if model.app_closed:
            # A closed channel reads no more: it is closed with input unread,
            # a reset (as when the close began with input unread: _close).
            model.may_reset_on_close = True
        try:
            model.peer.send(data)
        except (BrokenPipeError, ConnectionResetError):
            # Closed (by the app, or by the Poller: a line too long) with input unread.
            assert model.too_long_after is not None or model.app_closed, (
                f"{model}: the peer could not send"
            )
            return False
        return True

    @rule(model=channels)
    def peer_ends(self, model: Model) -> None:
        if not (model.peer_ended or model.peer_reset):
            model.peer.end()
            model.peer_ended = True

    @rule(model=channels)
    def peer_resets(self, model: Model) -> None:
        if model.peer.reset is not None and not model.peer_reset and not model.app_closed:
            model.peer.reset()
            model.peer_reset = True

    @rule(model=channels)
    def peer_reads(self, model: Model) -> None:
        if not model.peer_reset:
            model.peer_got += model.peer.recv()

    @rule(
        model=channels,
        size=st.sampled_from([1, 700, 6000, 40_000]),
        seed=st.integers(0, 2**32),
    )
    def app_writes(self, model: Model, size: int, seed: int) -> None:
        # (up to more than the buffers towards the peer hold: output queues)
        data = random.Random(seed).randbytes(size)
        if model.app_closed or len(model.written) + len(data) > WRITE_LIMIT:
            return
        try:
            model.channel.write(data)
        except EndpointClosedException:
            assert model.peer_reset or model.too_long_after is not None, (
                f"write to {model} failed, but nothing broke it"
            )
            return
        model.written += data

    @rule(model=channels)
    def app_closes(self, model: Model) -> None:
        """Kept in the bundle: its peer may read while the close goes on."""
        self._close(model)

    @staticmethod
    def _close(model: Model) -> None:
        if model.kind in ("tcp", "lines") and model.sent != model.received:
            model.may_reset_on_close = True
        model.channel.close()
        model.app_closed = True
        if model.channel.closing:
            note_event("a close went on in the background")

    @rule(model=channels)
    def app_unregisters(self, model: Model) -> None:
        self.poller.unregister(model.channel)
        model.registered = False
        model.unregistered = True

    @rule(model=channels)
    def app_pauses(self, model: Model) -> None:
        self.poller.pause_reading(model.channel)
        model.paused = True

    @rule(model=channels)
    def app_resumes(self, model: Model) -> None:
        self.poller.resume_reading(model.channel)
        model.paused = False

    @rule(timeout=st.sampled_from([0, 0.001, 0.01]))
    def poll(self, timeout: float) -> None:
        self._account(self.poller.poll_events(timeout))

    # -- the checks -------------------------------------------------------------

    def _account(self, events: List[object]) -> None:
        by_channel = {id(model.channel): model for model in self.models}
        for event in events:
            assert isinstance(event, (DataReceived, ChannelClosed)), event
            model = by_channel[id(event.channel)]
            assert model.registered, f"{event} for {model}, which is not registered"
            if isinstance(event, DataReceived):
                assert not model.paused, f"{event} for {model}, which is paused"
                model.received += event.data
                assert model.sent.startswith(model.received), f"{model} got bytes not sent"
                if model.too_long_after is not None:
                    assert len(model.received) <= model.too_long_after, f"{model}: long line came"
            else:
                model.reports += 1
                model.registered = False
                assert event.reason in self._reasons(model), (event, model.__dict__)
                if event.reason is CloseReason.PEER_CLOSED:
                    assert model.received == model.sent, f"{model} lost bytes"
                if event.reason is CloseReason.CLOSED_LOCALLY:
                    assert not model.channel.closing, f"{model} reported before its close ended"
                    assert event.undelivered == model.channel.undelivered, (event, model)
                if event.reason is CloseReason.LINE_TOO_LONG:
                    assert model.received == model.sent[: model.too_long_after], (
                        f"{model}: the lines before the long one did not all come"
                    )
                    # The Poller closes it; with input unread, TCP sends a reset.
                    model.may_reset_on_close = True

    @staticmethod
    def _reasons(model: Model) -> "set[CloseReason]":
        if model.app_closed:
            return {CloseReason.CLOSED_LOCALLY}
        if model.too_long_after is not None and not model.peer_reset:
            return {CloseReason.LINE_TOO_LONG}
        if model.too_long_after is not None:  # which one the Poller saw first
            return {CloseReason.LINE_TOO_LONG, CloseReason.RESET}
        if model.peer_reset and model.peer_ended:  # the end may come first
            return {CloseReason.RESET, CloseReason.PEER_CLOSED}
        if model.peer_reset:
            return {CloseReason.RESET}
        return {CloseReason.PEER_CLOSED}

    @invariant()
    def reported_at_most_once(self) -> None:
        for model in self.models:
            assert model.reports <= 1, f"{model} reported {model.reports} times"

    @precondition(lambda self: bool(self.models))
    @invariant()
    def writes_arrive_in_order(self) -> None:
        for model in self.models:
            if not model.peer_reset:
                assert model.written.startswith(model.peer_got), f"{model}: peer got wrong bytes"

    def teardown(self) -> None:
        try:
            self._finish()
        finally:
            self.poller.close()
            for model in self.models:
                model.channel.close()
                model.peer.close()

    def _peers_read(self) -> None:
        for model in self.models:  # (closes in the background can deliver)
            if not model.peer_reset:
                model.peer_got += model.peer.recv()

    def _finish(self) -> None:
        """Every peer ends; every channel still registered is reported once,
        whole; every peer gets everything written to it."""
        for model in self.models:
            if model.registered and model.paused:
                self.poller.resume_reading(model.channel)
                model.paused = False
            if not (model.peer_ended or model.peer_reset):
                model.peer.end()
                model.peer_ended = True
        deadline = time.monotonic() + 5
        while any(model.registered for model in self.models):
            assert time.monotonic() < deadline, [m for m in self.models if m.registered]
            self._account(self.poller.poll_events(0.01))
            self._peers_read()
        for model in self.models:
            assert model.reports == (0 if model.unregistered else 1) or (
                model.unregistered and model.reports <= 1
            ), model
            ended_whole = not (model.app_closed or model.peer_reset or model.unregistered)
            if ended_whole and model.too_long_after is None:
                assert model.received == model.sent, f"{model} lost bytes"
            if model.peer_reset:
                continue
            if not model.app_closed:
                self._close(model)
            deadline = time.monotonic() + 5
            model.peer_got += model.peer.recv()
            undelivered = model.channel.undelivered
            while len(model.peer_got) + undelivered < len(model.written):
                if model.may_reset_on_close:
                    break
                assert time.monotonic() < deadline, f"{model}: written bytes did not arrive"
                self.poller.poll(0.01)
                model.peer_got += model.peer.recv()
                undelivered = model.channel.undelivered  # (the linger may end meanwhile)
            assert model.written.startswith(model.peer_got), f"{model}: peer got wrong bytes"
            if not model.may_reset_on_close:
                # Every byte written is counted once: delivered, or dropped.
                assert len(model.peer_got) + undelivered == len(model.written), (
                    f"{model}: {len(model.peer_got)} delivered + {undelivered} dropped"
                    f" != {len(model.written)} written"
                )


def _machine_for(selector: Callable[[], selectors.BaseSelector]) -> type:
    machine = type(
        f"LifecycleOn{getattr(selector, '__name__', 'Selector')}",
        (LifecycleMachine,),
        {"selector": selector},
    )
    case = machine.TestCase
    case.settings = settings(
        max_examples=int(os.environ.get("LIFECYCLE_EXAMPLES", "50")),
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    case.pytestmark = [pytest.mark.timeout(120)]
    return case


for _selector in SELECTOR_CLASSES:
    globals()[f"TestLifecycleOn{_selector.__name__}"] = _machine_for(_selector)
