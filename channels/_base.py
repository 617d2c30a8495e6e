"""The channel base class: framing on the way in, an outbox on the way out.

A channel reads without blocking and feeds what it read to its one framer
(``channels._framers``), which decides what ``read()`` returns;
``read_frames()`` takes every frame at once from that same framer, so both
see the same frames and the same errors. The writing side is
``channels._writing.WritingSide``: writing never loses data, what the OS
does not take at once waits in the channel's ``Outbox`` (in order) and is
delivered by ``flush()``, by a ``Poller`` during ``poll()``, by later writes,
or by ``close()``, through the one linger loop ``_outbox.deliver``.

A channel knows nothing of pollers: whoever watches it may ask to be called
back when it closes or when it starts or stops holding queued output. This
module makes no syscall and imports nothing POSIX-only, so ``import
channels`` works on Windows; the subclasses in ``channels.channel`` do the IO.
"""

import abc
import logging
from typing import Any, Callable, ClassVar, List, Optional, Tuple, TypeVar

from . import _checks
from ._fds import current_pid
from ._framers import intake
from ._outbox import IDLE_OUTBOX, deliver, without
from ._protocols import Watcher
from ._rare import RareField, RareState, idle_state
from ._reading import MAX_READ_PER_CALL, NOTHING_HELD, READ_SIZE, UNREAD, ReadingSide
from ._writing import DEFAULT_HIGH_WATER, WritingSide
from .buffering import BUILT_IN, BufferingArg, as_buffering

__all__ = ["DEFAULT_HIGH_WATER", "DEFAULT_LINGER", "MAX_READ_PER_CALL", "READ_SIZE", "Channel"]

DEFAULT_LINGER = 5.0
"""Seconds ``close()`` waits for a reader that makes no progress before it
drops the output still queued."""

_Self = TypeVar("_Self", bound="Channel")

_LOGGER = logging.getLogger("channels.channel")


class Channel(ReadingSide, WritingSide, abc.ABC):
    """Base class of channels: framing and zero-loss writes for free.

    A subclass implements ``_read()`` (return the bytes available now, ``b''``
    when none; raise ``EndpointClosedException`` at end of stream), ``_release()``
    (release its fds once closed) and, if it can be polled, ``get_fd()``. A
    0.2 subclass may implement ``close()`` instead (calling ``super().close()``
    first, then releasing its resources): its ``close()`` then always waits
    for the delivery of queued output itself. To get queued
    writes it implements ``_send(queue)`` and ``_write_fd()``; a 0.2 subclass
    that overrides ``write()`` keeps its own.

    ``read()`` returns the next frame of the ``buffering`` strategy: every
    byte available (``'bytes'``) or one complete line (``'line'``).

    ``high_water`` bounds the queued output (see ``write()``); ``linger``
    bounds how long ``close()`` waits for a reader that makes no progress.
    """

    _background_close: ClassVar[bool] = True
    """False for a subclass with its own ``close()``: it releases its fds
    right after ``super().close()``, so that must not return before the
    output was delivered."""

    _rare: RareState
    _linger = RareField[float]()
    _close_callbacks = RareField[Tuple[Callable[[], None], ...]]()
    _close_agents = RareField[Tuple[Callable[[], bool], ...]]()
    _unreleased = RareField[bool]()
    _pid = RareField[int]()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "close" in cls.__dict__:
            cls._background_close = False

    def __init__(
        self,
        *,
        buffering: BufferingArg = "bytes",
        high_water: int = DEFAULT_HIGH_WATER,
        linger: float = DEFAULT_LINGER,
    ) -> None:
        strategy = as_buffering(buffering)
        self._strategy = strategy
        # (a built-in framer is made by the first read: an idle channel has none)
        self._framer = UNREAD if type(strategy) in BUILT_IN else intake(strategy.new_framer())
        # Frames read() took from the framer: held[0][0][_at:] comes next.
        self._held: List[Tuple[List[bytes], Any]] = NOTHING_HELD
        self._at = 0
        self._high_water = _checks.whole_number(high_water, "high_water (bytes)", 1)
        # (low water, linger, close callbacks and agents, the close's marks,
        # the pid: shared with other channels until one changes; see _rare)
        self._rare = idle_state(_checks.seconds(linger, "linger"))
        self._closed = False
        # Why reading ended (peer closed, OS error, closed here); None while open.
        self._end: Optional[str] = None
        self._watcher: Optional[Watcher] = None  # (told first, see set_watcher())
        self._outbox = IDLE_OUTBOX  # (its own from the first write: _own_outbox())
        # write_eof(): 1 once asked for, 2 once the write side was shut.
        self._eof = 0

    @property
    def buffering(self) -> str:
        """The framing strategy's name: ``'line'``, ``'bytes'``, or a custom one."""
        return self._strategy.name

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called."""
        return self._closed

    @property
    def linger(self) -> float:
        """Seconds ``close()`` waits for a reader that makes no progress."""
        return self._linger

    @linger.setter
    def linger(self, value: float) -> None:
        linger = _checks.seconds(value, "linger")
        state = self._rare
        if state.shared:  # (still all defaults: the state shared for that linger)
            self._rare = idle_state(linger, state.pid)
        else:
            self._linger = linger

    @abc.abstractmethod
    def _read(self) -> bytes:
        """Return the bytes the OS has now (``b''`` if none); raise
        ``EndpointClosedException`` at end of stream."""

    def _settle_writing(self, cause: Optional[BaseException]) -> Optional[BaseException]:
        # (only a read error changes an outbox with nothing queued: a plain
        # end leaves a half-closed idle channel the shared one)
        outbox = self._own_outbox() if isinstance(cause, OSError) else self._outbox
        return outbox.settle_end(cause, self._send_into)

    # -- closing ------------------------------------------------------------

    def close(self) -> None:
        """Close the channel; calling it again does nothing.

        Queued output is delivered first. A channel watched by a ``Poller``
        (one that offered to finish its closes: ``add_close_agent``) returns
        at once: the Poller delivers the rest in the background, within
        ``linger`` seconds in all, then releases the fds and reports the
        channel. Otherwise ``close()`` waits while the reader keeps taking
        data, and gives up once it took nothing for ``linger`` seconds. What
        is dropped is logged as a warning and counted in ``undelivered``.
        Frames already read stay readable; ``write()`` raises from now on.
        Then the close callbacks run and the fds are released. If a signal
        handler's exception came out of it, call it again: it finishes.
        """
        if self._closed:
            if self._unreleased and not self._handed_over:
                self._finish()  # (a raise cut the last close short)
            return
        if self._inherited():  # the parent delivers its own copy of the queue
            self._outbox.drop()
        self._before_close()
        outbox = self._outbox
        if outbox.size and outbox.failure is None:
            if self._background_close and self._hand_over():
                return
            if deliver([self]):
                outbox.drop()
        self._unreleased = True
        self._closed = True
        self._finish()

    def _hand_over(self) -> bool:
        """Let an agent finish this close; True if one took it."""
        agents = self._close_agents
        if self._watcher is not None:
            agents = (self._watcher.take_close, *agents)
        for agent in agents:
            if agent():
                self._closed = self._handed_over = True
                self._end_reading("the channel was closed", None)
                return True
        return False

    def _finish(self) -> None:
        """The end of a close: reading ends, the watchers hear, the fds go.
        Done again after a raise, it does what is left (a callback may run
        twice, none is skipped)."""
        self._unreleased = True
        self._handed_over = False
        try:
            self._end_reading("the channel was closed", None)
            self._outbox.announce()
            if self._watcher is not None:
                self._watcher.closed()  # (told again if a raise cuts this short)
            while self._close_callbacks:
                callback = self._close_callbacks[0]
                callback()
                callbacks = self._close_callbacks
                if callbacks and callbacks[0] is callback:  # (unless it removed itself)
                    self._close_callbacks = callbacks[1:]
        finally:
            self._release()
        self._unreleased = False

    def _inherited(self) -> bool:
        """True in a child forked after this channel was made: it closes its
        copy of the fds only, changing nothing its parent would see."""
        return self._pid != current_pid()

    def _before_close(self) -> None:
        """Called by ``close()`` before anything else (a subclass hook)."""

    def _release(self) -> None:
        """Release the fds, once the close is over (a subclass hook: a
        subclass with its own ``close()`` releases them there instead)."""

    def abort(self) -> None:
        """Close at once: queued output is dropped (and counted in ``undelivered``)."""
        if self._handed_over:
            self.finish_close()
        elif not self._closed:
            self._outbox.drop()
            self.close()

    # -- closing in the background (for the agent that took a close) ---------

    def add_close_agent(self, agent: Callable[[], bool]) -> None:
        """Offer to finish this channel's closes in the background: when
        ``close()`` finds output queued, ``agent()`` is asked, and if it
        returns True, ``close()`` returns at once; the agent then delivers
        with ``flush()`` and ends with ``finish_close()``."""
        self._close_agents += (agent,)

    def remove_close_agent(self, agent: Callable[[], bool]) -> None:
        """Withdraw the offer; does nothing if ``agent`` was not added."""
        self._close_agents = without(self._close_agents, agent)

    def finish_close(self) -> None:
        """For the agent of a close: drop what is still queued (counted in
        ``undelivered``: the agent says why), then release the fds and run
        the close callbacks. Does nothing unless an agent took the close."""
        if self._handed_over:
            self._outbox.drop()
            self._finish()

    @property
    def closing(self) -> bool:
        """True while a closed channel's queued output is still being
        delivered in the background (its fds are released after that)."""
        return self._handed_over

    def get_fd(self) -> int:
        """Return the fd to poll for reading; ``-1`` once closed.

        Raises ``NotImplementedError`` if the channel cannot read.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot be polled for reading")

    def __enter__(self: "_Self") -> "_Self":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- watchers -----------------------------------------------------------

    @property
    def watcher(self) -> Optional[Watcher]:
        """The watcher given by ``set_watcher()`` (None: none)."""
        return self._watcher

    def set_watcher(self, watcher: Optional[Watcher]) -> None:
        """Have ``watcher`` told what the close, output, drain callbacks and
        the close agents are, before them (None: no longer). One channel keeps
        one watcher, in a slot: a ``Poller`` registering it uses this, for a
        fraction of the memory of four callbacks; a second watcher adds
        callbacks instead."""
        outbox = self._outbox
        was_watched = self._output_watched()
        # (no call between the stores: a signal handler cannot split them;
        # the idle outbox has no watcher: an own one is made with the channel's)
        self._watcher = watcher
        if outbox is not IDLE_OUTBOX:
            outbox.watcher = watcher
        watched = self._output_watched()
        if watched is not was_watched:
            self._watched_changed(watched)

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once when the channel is closed, before its fd is."""
        self._close_callbacks += (callback,)

    def remove_close_callback(self, callback: Callable[[], None]) -> None:
        """Forget ``callback``; does nothing if it was not added."""
        self._close_callbacks = without(self._close_callbacks, callback)
