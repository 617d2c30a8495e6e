"""What a channel seldom changes, kept out of every idle channel.

A channel's creator process, its linger, its low-water mark, its close
callbacks and agents, and the marks of a close under way: most channels
never change them from the defaults, so all such channels share one
read-only ``RareState`` (one per process: the creator's pid is in it). The
first change gives the channel a copy of its own. Each is read and written
as a plain attribute of the channel through a ``RareField``, so the code
that uses them does not know where they live (memory per idle channel:
each of these attributes would cost every channel 8 bytes or more).
"""

from typing import Callable, Dict, Generic, Optional, Tuple, TypeVar, cast, overload

from ._fds import current_pid

__all__ = ["RareField", "RareState", "Shareable", "idle_state"]

T = TypeVar("T")


_Copy = TypeVar("_Copy", bound="Shareable")


class Shareable:
    """Slotted state shared by many holders (``shared``: read-only, a change
    raises ``AssertionError``, so a path that forgot to copy fails loudly
    instead of changing every holder), or one holder's own copy."""

    __slots__ = ("shared",)
    shared: bool

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "shared", False):
            raise AssertionError(
                f"a shared {type(self).__name__} was to change ({name} = {value!r})"
            )
        object.__setattr__(self, name, value)

    def own_copy(self: _Copy) -> _Copy:
        """A copy for one holder, to change."""
        copy = object.__new__(type(self))
        for name in type(self).__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        object.__setattr__(copy, "shared", False)
        return copy


class RareState(Shareable):
    """The seldom changed state of a channel (``shared``: of many, read-only)."""

    __slots__ = (
        "close_agents",
        "close_callbacks",
        "end_cause",
        "handed_over",
        "linger",
        "low_water",
        "pid",
        "unreleased",
    )

    def __init__(self, pid: int, linger: float, shared: bool) -> None:
        self.pid = pid
        """The process that made the channel (a forked child's copy leaves the fds alone)."""
        self.linger = linger
        self.low_water: Optional[int] = None
        # (tuples, replaced on a change: none while nobody watches)
        self.close_callbacks: Tuple[Callable[[], None], ...] = ()
        self.close_agents: Tuple[Callable[[], bool], ...] = ()
        self.end_cause: Optional[BaseException] = None
        """What ended reading, if an error did."""
        self.handed_over = False
        """``close()`` left the rest of the delivery to an agent, which is not done."""
        self.unreleased = False
        """Closed, but a raise came before its fds were released for sure."""
        self.shared = shared


_IDLE: Dict[Tuple[int, float], RareState] = {}


def idle_state(linger: float, pid: Optional[int] = None) -> RareState:
    """The shared state of channels that changed nothing but their linger
    (the default one, or one an application gives all its channels), made
    by this process (or ``pid``)."""
    key = (current_pid() if pid is None else pid, linger)
    state = _IDLE.get(key)
    if state is None:
        if len(_IDLE) >= 16:  # (linger values by the thousand: no sharing for them)
            return RareState(key[0], linger, False)
        state = _IDLE[key] = RareState(key[0], linger, True)
    return state


class RareField(Generic[T]):
    """An attribute kept in a ``Shareable`` its holder keeps in ``holder``
    (under its name without the leading underscore): read as a plain
    attribute, and written so, after the holder got a copy of its own if it
    shared one."""

    def __init__(self, holder: str = "_rare") -> None:
        self._holder = holder
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name.lstrip("_")

    @overload
    def __get__(self, holder: None, owner: type) -> "RareField[T]": ...

    @overload
    def __get__(self, holder: object, owner: type) -> T: ...

    def __get__(self, holder: object, owner: type) -> "RareField[T] | T":
        # (a string: 3.9 reads no | at run time)
        if holder is None:
            return self
        return cast(T, getattr(getattr(holder, self._holder), self._name))

    def __set__(self, holder: object, value: T) -> None:
        state: Shareable = getattr(holder, self._holder)
        if state.shared:
            if getattr(state, self._name) is value:
                return  # (the same again: nothing to copy)
            state = state.own_copy()
            setattr(holder, self._holder, state)
        setattr(state, self._name, value)
