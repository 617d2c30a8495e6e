"""A relay that respects backpressure: stop reading the producer while the
consumer's queue is full, resume once it drained."""

from channels import ChannelLike, Poller, SocketChannel, WriteBufferFullError


def relay(producer: ChannelLike, consumer: SocketChannel, rounds: int) -> None:
    poller = Poller()
    poller.register(producer)
    held = b""
    for _ in range(rounds):
        if held and consumer.flush(timeout=0):
            consumer.write(held)
            held = b""
            poller.register(producer)  # drained: read the producer again
        for data, source in poller.poll(timeout=1.0):
            if source is not producer or not isinstance(data, bytes) or not data:
                continue
            try:
                consumer.write(data)
            except WriteBufferFullError:
                held = data  # nothing of it was queued: keep it
                poller.unregister(producer)  # stop reading until the consumer drains


def close_in_background(poller: Poller, channel: SocketChannel) -> bool:
    """close() of a registered channel returns at once; ``closing`` says
    whether the Poller still delivers its output."""
    poller.register(channel)
    channel.write(b"bye\n")
    channel.close()
    still_delivering: bool = channel.closing
    return still_delivering
