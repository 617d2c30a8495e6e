"""A line server on a Unix socket: the poll loop a typed application writes."""

import socket
from typing import Dict

from channels import ChannelLike, EndpointClosedException, Poller, PollResult, SocketChannel


def handle(item: PollResult, peers: Dict[int, ChannelLike]) -> None:
    if isinstance(item[0], bytes):
        data, channel = item
        if not data:
            peers.pop(id(channel), None)
            channel.close()
            return
        for peer in peers.values():
            if peer is not channel:
                try:
                    peer.write(data)
                except EndpointClosedException:
                    peer.close()
    else:
        (address, client), server = item
        assert isinstance(client, SocketChannel)
        assert isinstance(server, socket.socket)
        print("accepted", address, "on", server.getsockname())
        peers[id(client)] = client


def serve(path: str, rounds: int) -> None:
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
    poller = Poller(buffering="line")
    poller.add_server(server)
    peers: Dict[int, ChannelLike] = {}
    try:
        for _ in range(rounds):
            for item in poller.poll(timeout=1.0):
                handle(item, peers)
    finally:
        poller.close_all()
