"""``channels._selecting.key_of``: what the selector's map says of an fd.

It reads a stdlib selector's own index instead of going through its
mapping (whose miss raises and catches a ``KeyError``); whatever the
selector, it must answer exactly as ``selector.get_map().get(fd)``.
"""

import selectors
import socket
from typing import Iterator, List, Mapping, Optional, Type

import pytest

from channels._selecting import key_of


@pytest.fixture
def sockets() -> Iterator[List[socket.socket]]:
    made: List[socket.socket] = []
    for _ in range(3):
        made.extend(socket.socketpair())
    yield made
    for sock in made:
        sock.close()


def test_it_answers_as_the_map_for_every_fd(
    selector_cls: Type[selectors.BaseSelector], sockets: List[socket.socket]
) -> None:
    selector = selector_cls()
    try:
        watched = sockets[::2]
        for events, sock in zip((1, 2, 3), watched):
            selector.register(sock, events, f"data {events}")
        selector.unregister(watched[-1])
        fds = [sock.fileno() for sock in sockets] + [max(s.fileno() for s in sockets) + 100]
        for fd in fds:
            assert key_of(selector, fd) == selector.get_map().get(fd), fd
        found = [key_of(selector, sock.fileno()) for sock in watched]
        assert [key.data if key else None for key in found] == ["data 1", "data 2", None]
        with pytest.raises(ValueError, match="-1"):  # (as the map: no such fd)
            key_of(selector, -1)
    finally:
        selector.close()


class _RenamingMap(Mapping[int, selectors.SelectorKey]):
    """A map that says every key holds other data than the index has."""

    def __init__(self, inner: Mapping[int, selectors.SelectorKey]) -> None:
        self._inner = inner

    def __getitem__(self, fd: int) -> selectors.SelectorKey:
        return self._inner[fd]._replace(data="from the map")

    def __iter__(self) -> Iterator[int]:
        return iter(self._inner)

    def __len__(self) -> int:
        return len(self._inner)


def test_a_selector_not_of_the_stdlib_is_asked_its_map(sockets: List[socket.socket]) -> None:
    class Custom(selectors.SelectSelector):
        def get_map(self) -> Mapping[int, selectors.SelectorKey]:
            return _RenamingMap(super().get_map())

    selector = Custom()
    try:
        selector.register(sockets[0], selectors.EVENT_READ, "from the index")
        found: Optional[selectors.SelectorKey] = key_of(selector, sockets[0].fileno())
        assert found is not None and found.data == "from the map"
        assert key_of(selector, sockets[1].fileno()) is None
    finally:
        selector.close()
