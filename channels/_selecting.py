"""The calls a Registry makes on its selector, made to survive a raise.

``selectors`` keeps a map of fds and the kernel keeps its own set (epoll,
poll, kqueue); a ``register()`` or ``modify()`` updates one, then the
other. A signal handler that raises in between leaves them disagreeing:
the kernel watches an fd the map forgot (the next ``register()`` of that
number fails with ``EEXIST``), or the map holds a key the kernel lacks.
``select_fd`` repairs the first when it meets it; ``forget_fd`` drops an fd
from both, whatever each says, so the Registry can redo what a raise cut
short (``Registry.settle``). No other module calls the selector.
"""

import selectors
from typing import Callable, Optional

from ._errors import not_from_the_os

__all__ = ["forget_fd", "select_fd", "unselect_fd"]


def select_fd(
    selector: selectors.BaseSelector,
    fd: int,
    events: int,
    data: object,
    evict: Callable[[int], None],
) -> None:
    """Have ``fd`` selected for ``events`` (0: not at all) with ``data``;
    ``evict(fd)`` first if another record holds that number."""
    key = selector.get_map().get(fd)
    selected = key is not None and key.data is data
    if events and selected:
        if key is not None and key.events != events:
            try:
                selector.modify(fd, events, data)
            except FileNotFoundError:  # the kernel had lost it: the map has too now
                forget_fd(selector, fd, data)
                selector.register(fd, events, data)
    elif events:
        evict(fd)
        try:
            selector.register(fd, events, data)
        except FileExistsError:  # the kernel kept it when the map let go
            forget_fd(selector, fd, data)
            selector.register(fd, events, data)

    elif selected:
        _unregister(selector, fd)


def unselect_fd(selector: selectors.BaseSelector, fd: int, data: object) -> None:
    """Remove ``fd`` from the selector if it is still there for ``data``."""
    key = selector.get_map().get(fd)
    if key is not None and key.data is data:
        _unregister(selector, fd)


_MAP_ONLY: Optional[Callable[[selectors.BaseSelector, int], object]] = getattr(
    getattr(selectors, "_BaseSelectorImpl", None), "unregister", None
)


def _unregister(selector: selectors.BaseSelector, fd: int) -> None:
    """``selector.unregister(fd)``, but an exception a signal handler raises
    in there propagates: the stdlib's epoll and poll selectors drop every
    ``OSError`` of the kernel call, a handler's ``TimeoutError`` too."""
    unregister = getattr(getattr(selector, "_selector", None), "unregister", None)
    if unregister is None or _MAP_ONLY is None:
        selector.unregister(fd)
        return
    _MAP_ONLY(selector, fd)
    try:
        unregister(fd)
    except OSError as exc:  # (closed since it was registered: nothing to do)
        if not_from_the_os(exc):
            raise


def forget_fd(selector: selectors.BaseSelector, fd: int, data: object) -> None:
    """Drop ``fd`` from the selector's map and from the kernel's set, unless
    another record than ``data`` holds it now (nothing if ``data`` is None)."""
    key = selector.get_map().get(fd)
    if data is None or (key is not None and key.data is not data):
        return
    if key is not None:
        _unregister(selector, fd)
    # (epoll, poll and devpoll selectors keep the kernel object there; a
    # kqueue forgets an fd by itself, select() keeps nothing)
    kernel: Optional[object] = getattr(selector, "_selector", None)
    unregister = getattr(kernel, "unregister", None)
    if unregister is not None:
        try:
            unregister(fd)
        except (KeyError, OSError, ValueError) as exc:  # it was not there
            if not_from_the_os(exc):
                raise
