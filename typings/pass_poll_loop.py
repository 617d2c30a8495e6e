"""A line server on loopback TCP: the poll loop a typed application writes."""

import socket
from typing import Dict

from channels import ChannelLike, EndpointClosedException, Poller, PollResult


def handle(item: PollResult, peers: Dict[int, ChannelLike]) -> None:
    data, source = item
    if isinstance(source, socket.socket):  # ((address, client), server): accepted
        assert not isinstance(data, bytes)
        address, client = data
        print("accepted", address, "on", source.getsockname())
        peers[id(client)] = client
        return
    assert isinstance(data, bytes)
    if not data:  # b'': that channel closed
        peers.pop(id(source), None)
        source.close()
        return
    for peer in peers.values():
        if peer is not source:
            try:
                peer.write(data)
            except EndpointClosedException:
                peer.close()


def serve(port: int, rounds: int) -> None:
    server = socket.create_server(("127.0.0.1", port))
    poller = Poller(buffering="line")
    poller.add_server(server)
    peers: Dict[int, ChannelLike] = {}
    try:
        for _ in range(rounds):
            for item in poller.poll(timeout=1.0):
                handle(item, peers)
    finally:
        poller.close_all()
