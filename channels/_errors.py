"""Exceptions raised by channels.

The tree::

    Exception
     └── ChannelError                  base of the errors about a channel's state
          ├── EndpointClosedException  an end of the channel is gone: the peer
          │    │                       closed or broke the connection, or the
          │    │                       channel itself was closed; raised by
          │    │                       read() once nothing buffered is left, and
          │    │                       by write() and flush(). ``undelivered``
          │    │                       counts the written bytes that were lost.
          │    └── LineTooLong         a line grew past the line strategy's
          │                            max_length: the channel is finished
          └── WriteBufferFullError     a write() would take the queued output
                                       past the channel's high-water mark;
                                       nothing of that write was queued (also a
                                       BufferError)

Programming errors are never turned into these: a wrong argument type is a
``TypeError``, a wrong value a ``ValueError``, an operation a channel cannot do
(reading a write-only pipe) a ``NotImplementedError``.

When the end is gone because the OS said so, the ``OSError`` is chained as
``__cause__``.
"""

import signal
from types import CodeType
from typing import Set

__all__ = [
    "BAD_CHANNEL_ERRORS",
    "ChannelError",
    "EndpointClosedException",
    "LineTooLong",
    "WriteBufferFullError",
    "not_from_the_os",
    "raised_by_a_signal_handler",
]

BAD_CHANNEL_ERRORS = (OSError, ValueError, KeyError)
"""What a broken custom channel may raise from ``read()`` or ``flush()``: a
Poller logs it and reports that channel closed (or ends its delivery) rather
than raising, so one bad channel cannot stop a server."""


def not_from_the_os(exc: BaseException) -> bool:
    """True for an exception that is the application's own, not the OS's nor
    a channel's: an ``OSError`` without an errno (``raise TimeoutError`` in a
    ``SIGALRM`` handler, say), or anything a signal handler raised. It
    propagates instead of being taken for a broken connection or channel.
    (Only called on error paths: it looks at the handlers installed.)"""
    if isinstance(exc, OSError) and exc.errno is None:
        return True
    return raised_by_a_signal_handler(exc)


def raised_by_a_signal_handler(exc: BaseException) -> bool:
    """True if a Python signal handler installed now is in ``exc``'s traceback."""
    tb = exc.__traceback__
    if tb is None:
        return False
    codes: Set[CodeType] = set()
    for signum in signal.valid_signals():
        try:
            handler = signal.getsignal(signum)
        except ValueError:  # (a number the platform lists but will not look up)
            continue
        code = getattr(handler, "__code__", None) or getattr(
            getattr(handler, "__func__", None), "__code__", None
        )
        if code is not None:
            codes.add(code)
    while tb is not None:
        if tb.tb_frame.f_code in codes:
            return True
        tb = tb.tb_next
    return False


class ChannelError(Exception):
    """Base class of the errors about a channel's state (not about arguments)."""


class EndpointClosedException(ChannelError):
    """Raised when a channel can no longer be read or written.

    ``read()`` raises it once the other end closed (or the channel was closed)
    and every buffered frame has been returned; ``write()`` and ``flush()``
    raise it when the data can no longer be delivered.

    ``undelivered`` is how many bytes that earlier ``write()`` calls accepted
    were lost when the connection broke (0 when none were, or for reads).
    """

    def __init__(self, *args: object, undelivered: int = 0) -> None:
        super().__init__(*args)
        self.undelivered = undelivered


class LineTooLong(EndpointClosedException):
    """Raised by ``read()`` when a line grows past the strategy's ``max_length``.

    The peer sent more than ``max_length`` bytes without a delimiter (or a
    longer line): the buffered data is dropped and the channel is finished,
    as if the peer had closed, so a handler of ``EndpointClosedException``
    treats it as done. ``max_length`` is the limit, ``length`` the bytes seen.
    """

    def __init__(self, max_length: int, length: int, *, source: str = "") -> None:
        super().__init__(
            f"{source}{': ' if source else ''}line longer than max_length={max_length}"
            f" bytes ({length} bytes without a delimiter)"
        )
        self.max_length = max_length
        self.length = length


class WriteBufferFullError(ChannelError, BufferError):
    """Raised by ``write()`` when its data would take the channel's queued
    output past the high-water mark.

    Nothing of that ``write()`` was queued: the caller still holds all of it.
    Wait until the channel drains (``flush()``, or a ``Poller`` doing it in
    ``poll()``), and stop reading from whatever produces the data meanwhile.
    """

    def __init__(self, message: str, *, size: int, queued: int, high_water: int) -> None:
        super().__init__(message)
        self.size = size
        self.queued = queued
        self.high_water = high_water
