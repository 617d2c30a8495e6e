"""The README's backpressure recipe: relay a fast producer to a slow consumer.

Run by tests/test_drain.py over every selector class; the README shows the
function below as it is.
"""

from typing import List

from channels import (
    Channel,
    ChannelClosed,
    DataReceived,
    Poller,
    Writable,
    WriteBufferFullError,
)


def relay(poller: Poller, producer: Channel, consumer: Channel) -> None:
    """Pass everything the producer sends to the consumer, until it closes."""
    held: List[bytes] = []  # what the consumer refused, oldest first
    while True:
        for event in poller.poll_events():  # no timeout: no busy polling
            if isinstance(event, DataReceived) and event.channel is producer:
                if not held:
                    try:
                        consumer.write(event.data)
                        continue
                    except WriteBufferFullError:  # nothing of it was queued
                        poller.pause_reading(producer)
                held.append(event.data)
            elif isinstance(event, Writable) and event.channel is consumer:
                while held:
                    try:
                        consumer.write(held[0])
                    except WriteBufferFullError:
                        break  # another Writable comes once it fits
                    held.pop(0)
                if not held:
                    poller.resume_reading(producer)
            elif isinstance(event, ChannelClosed) and event.channel is producer:
                return
