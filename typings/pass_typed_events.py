"""The typed alternative to poll()'s tuples: every event narrows, and
assert_never proves the handler covers them all (mypy and pyright alike)."""

import socket
from typing import Dict

from typing_extensions import assert_never

from channels import (
    ChannelClosed,
    ChannelLike,
    ClientAccepted,
    CloseReason,
    DataReceived,
    Poller,
    PollEvent,
    Writable,
)


def handle(event: PollEvent, names: Dict[int, str]) -> None:
    if isinstance(event, DataReceived):
        event.channel.write(event.data.upper())
    elif isinstance(event, ChannelClosed):
        if event.reason is CloseReason.LINE_TOO_LONG:
            print("dropped a flooding client", names.pop(id(event.channel), "?"))
        elif event.undelivered:
            print(event.undelivered, "bytes never reached", event.channel)
    elif isinstance(event, ClientAccepted):
        names[id(event.channel)] = event.channel.peer
        server: socket.socket = event.server
        print("accepted", event.address, "on", server.getsockname())
    elif isinstance(event, Writable):
        print(event.channel, "takes writes again")
    else:
        assert_never(event)


def serve(poller: Poller) -> None:
    names: Dict[int, str] = {}
    for event in poller.poll_events(timeout=1.0):
        handle(event, names)
    channel: ChannelLike
    for event in poller.poll_events():
        if isinstance(event, DataReceived):
            channel = event.channel
            print(channel.buffering)
