"""Framing strategies: how a channel cuts the incoming byte stream into frames.

No IO in this module: a framer is fed bytes and end-of-stream, and hands out
complete frames. A *strategy* (``Buffering``) is immutable configuration that
creates one fresh *framer* per channel, so one strategy given to a ``Poller``
serves every accepted client without them sharing a buffer.

Built in:

- ``BytesBuffering()`` (name ``'bytes'``): a frame is every byte buffered.
- ``LineBuffering(delimiter=b'\\n', max_length=1 MiB)`` (name ``'line'``): a
  frame is one line including its delimiter; at end of stream, the last
  partial line is a frame too, without a delimiter. A line longer than
  ``max_length`` raises ``LineTooLong`` instead of growing the buffer.

``as_buffering()`` turns what a constructor accepts into a strategy: a strategy
passes through, ``'line'`` is ``LineBuffering()``, and — as in 0.2 — any other
value means bytes.
"""

from typing import Optional, Protocol, Union, runtime_checkable

from ._framers import BulkFramer, BytesFramer, Framer, LineFramer

__all__ = [
    "BUILT_IN",
    "DEFAULT_MAX_LINE_LENGTH",
    "Buffering",
    "BufferingArg",
    "BulkFramer",
    "BytesBuffering",
    "Framer",
    "LineBuffering",
    "as_buffering",
]


@runtime_checkable
class Buffering(Protocol):
    """A framing strategy: immutable configuration that makes framers.

    ``name`` is what a channel's ``buffering`` property reports (``'line'`` or
    ``'bytes'`` for the built-in strategies).
    """

    @property
    def name(self) -> str:
        """The strategy's name, reported as the channel's ``buffering``."""
        ...

    def new_framer(self) -> Framer:
        """Return fresh framing state for one channel."""
        ...


DEFAULT_MAX_LINE_LENGTH = 1024 * 1024
"""The default ``max_length`` of ``LineBuffering``: 1 MiB, far above any sane
line of a line protocol, and small enough that a peer sending no delimiter
cannot make a server buffer without bound."""

BufferingArg = Union[str, Buffering, None]
"""What the ``buffering`` argument of channels and ``Poller`` accepts."""


class BytesBuffering:
    """The ``'bytes'`` strategy: ``read()`` returns every byte available."""

    __slots__ = ()

    name = "bytes"

    def new_framer(self) -> Framer:
        """Return fresh framing state for one channel."""
        return BytesFramer()

    def __repr__(self) -> str:
        return "BytesBuffering()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BytesBuffering)

    def __hash__(self) -> int:
        return hash(BytesBuffering)


class LineBuffering:
    """The ``'line'`` strategy: ``read()`` returns one line at a time.

    A line ends with ``delimiter`` (default ``b'\\n'``; ``b'\\r\\n'`` and
    ``b'\\0'`` are common others) and is returned with it. When the stream
    ends, the last partial line is returned without a delimiter.

    ``max_length`` bounds a line, its delimiter not counted: a line of exactly
    ``max_length`` bytes is fine, a longer one (or that much data without a
    delimiter) makes ``read()`` raise ``LineTooLong`` and finishes the channel.
    Default 1 MiB (``DEFAULT_MAX_LINE_LENGTH``); ``None`` means no limit.
    """

    __slots__ = ("_delimiter", "_max_length")

    name = "line"

    def __init__(
        self, delimiter: bytes = b"\n", max_length: Optional[int] = DEFAULT_MAX_LINE_LENGTH
    ) -> None:
        if not isinstance(delimiter, bytes):
            raise TypeError(
                f"LineBuffering delimiter must be bytes, not {type(delimiter).__name__}"
            )
        if not delimiter:
            raise ValueError("LineBuffering delimiter must not be empty")
        if max_length is not None:
            if isinstance(max_length, bool) or not isinstance(max_length, int):
                raise TypeError(
                    "LineBuffering max_length must be an int or None,"
                    f" not {type(max_length).__name__}"
                )
            if max_length < 1:
                raise ValueError(f"LineBuffering max_length must be at least 1, not {max_length}")
        self._delimiter = delimiter
        self._max_length = max_length

    @property
    def delimiter(self) -> bytes:
        """The bytes that end a line."""
        return self._delimiter

    @property
    def max_length(self) -> Optional[int]:
        """The longest line accepted, delimiter not counted (None: no limit)."""
        return self._max_length

    def new_framer(self) -> Framer:
        """Return fresh framing state for one channel."""
        return LineFramer(self._delimiter, self._max_length)

    def __repr__(self) -> str:
        return f"LineBuffering(delimiter={self._delimiter!r}, max_length={self._max_length!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, LineBuffering)
            and other.delimiter == self._delimiter
            and other.max_length == self._max_length
        )

    def __hash__(self) -> int:
        return hash((LineBuffering, self._delimiter, self._max_length))


def as_buffering(buffering: object) -> Buffering:
    """Return the strategy that ``buffering`` names.

    A ``Buffering`` instance is returned as is; ``'line'`` gives
    ``LineBuffering()``; anything else (``'bytes'``, ``None``, ``''``, …)
    gives ``BytesBuffering()``, as 0.2 treated every value but ``'line'``.
    """
    if isinstance(buffering, str):
        return _LINES if buffering == "line" else _BYTES
    if isinstance(buffering, (LineBuffering, BytesBuffering, Buffering)):
        return buffering
    return _BYTES


_LINES = LineBuffering()
_BYTES = BytesBuffering()  # (strategies are immutable: every channel may share these)

BUILT_IN = (BytesBuffering, LineBuffering)
"""The strategies whose framers a channel makes when it first reads."""
