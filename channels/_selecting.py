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
from typing import Callable, Dict, FrozenSet, Optional, Set, Tuple, Type

from ._errors import not_from_the_os

__all__ = ["Ready", "drop_strays", "forget_fd", "key_of", "select_fd", "unselect_fd"]

Ready = Tuple[selectors.SelectorKey, int]
"""An item of ``select()``'s list: the key of a ready fd, and its events."""


_STDLIB_SELECTORS: FrozenSet[Type[selectors.BaseSelector]] = frozenset(
    getattr(selectors, name)
    for name in (
        "SelectSelector",
        "PollSelector",
        "EpollSelector",
        "DevpollSelector",
        "KqueueSelector",
    )
    if hasattr(selectors, name)
)


def key_of(selector: selectors.BaseSelector, fd: int) -> Optional[selectors.SelectorKey]:
    """``selector.get_map().get(fd)``: the key ``fd`` is selected with, or
    None. A selector of the stdlib's own is asked its index directly: its
    mapping's miss raises, formats and catches a ``KeyError`` (1.3 us, at
    every registration: 5% of a fan-in of short-lived clients)."""
    if type(selector) in _STDLIB_SELECTORS and type(fd) is int and fd >= 0:
        index: Optional[Dict[int, selectors.SelectorKey]] = getattr(selector, "_fd_to_key", None)
        if isinstance(index, dict):
            return index.get(fd)
    return selector.get_map().get(fd)


def select_fd(
    selector: selectors.BaseSelector,
    fd: int,
    events: int,
    data: object,
    evict: Callable[[int], None],
) -> None:
    """Have ``fd`` selected for ``events`` (0: not at all) with ``data``;
    ``evict(fd)`` first if another record holds that number."""
    key = key_of(selector, fd)
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
    key = key_of(selector, fd)
    if key is not None and key.data is data:
        _unregister(selector, fd)


_MAP_ONLY: Optional[Callable[[selectors.BaseSelector, int], object]] = getattr(
    getattr(selectors, "_BaseSelectorImpl", None), "unregister", None
)


_SELECT_SETS = ("_readers", "_writers")  # (SelectSelector's: what select() is given)


def _unselect_sets(selector: selectors.BaseSelector, fd: int) -> None:
    for name in _SELECT_SETS:
        watching: Optional[Set[int]] = getattr(selector, name, None)
        if watching is not None:
            watching.discard(fd)


def drop_strays(selector: selectors.BaseSelector) -> bool:
    """Drop from ``select()``'s sets the fds the map lost (a raise in the
    stdlib's ``modify()``, which unregisters and registers again); True if
    there were any."""
    known = selector.get_map()
    strays = {fd for name in _SELECT_SETS for fd in getattr(selector, name, ()) if fd not in known}
    for fd in strays:
        _unselect_sets(selector, fd)
    return bool(strays)


def _unregister(selector: selectors.BaseSelector, fd: int) -> None:
    """``selector.unregister(fd)``, the kernel's set (or ``select()``'s sets)
    first, the map last: a raise in between leaves the map's key, and the
    next ``select_fd()`` or ``unselect_fd()`` finishes. An exception a signal
    handler raises propagates (the stdlib's epoll and poll selectors drop
    every ``OSError`` of the kernel call, a handler's ``TimeoutError`` too)."""
    unregister = getattr(getattr(selector, "_selector", None), "unregister", None)
    if unregister is None or _MAP_ONLY is None:
        _unselect_sets(selector, fd)
        selector.unregister(fd)
        return
    try:
        unregister(fd)
    except (KeyError, OSError) as exc:  # (closed since, or a raise came after this)
        if not_from_the_os(exc):
            raise
    _MAP_ONLY(selector, fd)


def forget_fd(selector: selectors.BaseSelector, fd: int, data: object) -> None:
    """Drop ``fd`` from the selector's map and from the kernel's set, unless
    another record than ``data`` holds it now (nothing if ``data`` is None)."""
    key = key_of(selector, fd)
    if data is None or (key is not None and key.data is not data):
        return
    if key is not None:
        _unregister(selector, fd)
    # (epoll, poll and devpoll selectors keep the kernel object there; a
    # kqueue forgets an fd by itself; select()'s selector keeps two sets)
    kernel: Optional[object] = getattr(selector, "_selector", None)
    unregister = getattr(kernel, "unregister", None)
    if unregister is not None:
        try:
            unregister(fd)
        except (KeyError, OSError, ValueError) as exc:  # it was not there
            if not_from_the_os(exc):
                raise
    _unselect_sets(selector, fd)
