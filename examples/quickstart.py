"""The README quick start: a line server and a client on one Poller."""

import os
import socket
import tempfile

from channels import Poller, SocketChannel

path = os.path.join(tempfile.mkdtemp(), "demo.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen()

poller = Poller(buffering="line")  # every accepted client reads lines
poller.add_server(server)

client_sock = socket.socket(socket.AF_UNIX)
client_sock.connect(path)
client = SocketChannel(client_sock, buffering="line")
poller.register(client)
client.write(b"hello\n", b"world\n")

replies = []
while len(replies) < 2:
    for data, source in poller.poll(timeout=5):
        if not isinstance(data, bytes):  # ((addr, channel), server): accepted
            print("accepted a client")
        elif source is client:  # the server's answer reached the client
            replies.append(data)
        elif data:  # a line from a client: answer it
            source.write(data.upper())
        else:  # b'': that channel closed
            source.close()

print(replies)  # [b'HELLO\n', b'WORLD\n']
poller.close_all()
os.unlink(path)
