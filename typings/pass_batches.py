"""poll_batches(): a line server that takes each channel's lines as one list,
with exhaustive handling of BatchEvent (mypy and pyright alike)."""

from typing import List

from typing_extensions import assert_never

from channels import (
    BatchEvent,
    BulkFramer,
    ChannelClosed,
    ClientAccepted,
    FramesReceived,
    LineBuffering,
    Poller,
    Writable,
)


def handle(event: BatchEvent) -> int:
    if isinstance(event, FramesReceived):
        lines: List[bytes] = event.frames
        event.channel.write(b"".join(line.upper() for line in lines))
        return len(lines)
    if isinstance(event, ChannelClosed):
        return 0
    if isinstance(event, ClientAccepted):
        print("accepted", event.address)
        return 0
    if isinstance(event, Writable):
        return 0
    assert_never(event)


def serve(poller: Poller) -> int:
    return sum(handle(event) for event in poller.poll_batches(timeout=0.5))


def bulk_take(strategy: LineBuffering) -> List[bytes]:
    framer = strategy.new_framer()
    framer.feed(b"a\nb\n")
    if isinstance(framer, BulkFramer):  # the built-in framers are
        waiting: bool = framer.error_waiting
        return [] if waiting else framer.take_frames()
    frame = framer.next_frame()
    return [] if frame is None else [frame]
