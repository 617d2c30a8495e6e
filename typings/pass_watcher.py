"""A watcher of a channel: what a typed application writes to hear of its
output, its drain and its close through the one slot a Channel keeps."""

from typing import List, Optional

from channels import Channel, SocketChannel, Watcher


class Log:
    """Structurally a ``Watcher``: no inheritance needed."""

    def __init__(self) -> None:
        self.heard: List[str] = []

    def closed(self) -> None:
        self.heard.append("closed")

    def drained(self) -> None:
        self.heard.append("drained")

    def take_close(self) -> bool:
        return False

    def output_changed(self, pending: bool) -> None:
        self.heard.append("pending" if pending else "delivered")


def watch(channel: Channel) -> Log:
    log = Log()
    channel.set_watcher(log)
    current: Optional[Watcher] = channel.watcher
    assert current is log
    return log


def unwatch(channel: SocketChannel) -> None:
    channel.set_watcher(None)
