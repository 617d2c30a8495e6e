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

import sys
from typing import List, Optional, Protocol, Union, runtime_checkable

from ._errors import LineTooLong

__all__ = [
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
class Framer(Protocol):
    """Per-channel framing state, created by ``Buffering.new_framer()``.

    The channel calls ``feed`` with every chunk it reads, ``feed_eof`` once the
    stream ended (or the channel was closed), and ``next_frame`` to take the
    next complete frame. ``feed_eof`` may be called more than once.
    """

    def feed(self, data: bytes) -> None:
        """Append ``data`` (never empty) to the buffered stream."""
        ...

    def feed_eof(self) -> None:
        """Mark the end of the stream: nothing more will be fed."""
        ...

    def next_frame(self) -> Optional[bytes]:
        """Remove and return the next complete frame, or None if there is none."""
        ...


@runtime_checkable
class BulkFramer(Framer, Protocol):
    """A framer that also hands out all its complete frames at once.

    Optional: a channel uses ``take_frames`` when its framer has it (the
    built-in ones do), which is what lets a ``Poller`` deliver many lines per
    read syscall without a Python call per line.
    """

    def take_frames(self) -> List[bytes]:
        """Remove and return every complete frame, oldest first (``[]`` if none).

        An error found after some frames (a line too long) is raised by the
        next call, so the frames before it are not lost.
        """
        ...

    @property
    def error_waiting(self) -> bool:
        """True when the next ``take_frames()`` raises the error it found."""
        ...


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


class OneByOne:
    """A ``BulkFramer`` view of a framer that only has ``next_frame()``.

    ``take_frames()`` calls it until it has no frame; an error after some
    frames waits for the next call, so the frames before it are not lost.
    """

    __slots__ = ("_error", "_framer")

    def __init__(self, framer: Framer) -> None:
        self._framer = framer
        self._error: Optional[Exception] = None

    def feed(self, data: bytes) -> None:
        self._framer.feed(data)

    def feed_eof(self) -> None:
        self._framer.feed_eof()

    def next_frame(self) -> Optional[bytes]:
        if self._error is not None:
            self.take_frames()  # (which raises it)
        return self._framer.next_frame()

    @property
    def error_waiting(self) -> bool:
        return self._error is not None

    def take_frames(self) -> List[bytes]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        frames: List[bytes] = []
        try:
            frame = self._framer.next_frame()
            while frame is not None:
                frames.append(frame)
                frame = self._framer.next_frame()
        except Exception as exc:
            if not frames:
                raise
            self._error = exc
        return frames


class _BytesFramer:
    """Frames are all bytes buffered so far, in one piece."""

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: List[bytes] = []

    def feed(self, data: bytes) -> None:
        self._chunks.append(data)

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        chunks = self._chunks
        if not chunks:
            return None
        frame = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return frame

    def take_frames(self) -> List[bytes]:
        frame = self.next_frame()
        return [] if frame is None else [frame]

    @property
    def error_waiting(self) -> bool:
        return False


class _LineFramer:
    """Frames are delimiter-terminated lines; the tail counts at end of stream.

    Complete lines are cut in bulk: one reverse search for the last delimiter
    in the buffer, one ``split`` of everything before it; ``take_frames()``
    hands out that list as it is, ``next_frame()`` steps through it. The
    partial tail stays in the
    buffer, and ``_searched`` remembers how far a search got without finding
    a delimiter, so a long line arriving in many small chunks is not rescanned
    from its start. A line longer than ``max_length`` (delimiter not counted)
    raises ``LineTooLong`` once the lines before it were taken; the buffer is
    then dropped and the framer takes no more data.
    """

    __slots__ = (
        "_buffer",
        "_delimiter",
        "_eof",
        "_error",
        "_failed",
        "_lines",
        "_max_length",
        "_next",
        "_searched",
        "_simple_up_to",
    )

    def __init__(self, delimiter: bytes, max_length: Optional[int]) -> None:
        self._buffer = bytearray()
        # Lines cut but not yet taken by next_frame(): _lines[_next:].
        self._lines: List[bytes] = []
        self._next = 0
        self._delimiter = delimiter
        self._max_length = max_length
        # Up to how many buffered bytes splitlines() cuts exactly what we
        # would: no line of them can pass the limit (-1: never, another delimiter).
        self._simple_up_to = -1
        if delimiter == b"\n":
            self._simple_up_to = sys.maxsize if max_length is None else max_length
        self._searched = 0
        self._eof = False
        self._failed = False
        self._error: Optional[LineTooLong] = None  # raised once the lines before it went

    def feed(self, data: bytes) -> None:
        if not self._failed:
            self._buffer += data

    def feed_eof(self) -> None:
        self._eof = True

    def next_frame(self) -> Optional[bytes]:
        if self._next >= len(self._lines):
            self._lines = self.take_frames()
            self._next = 0
            if not self._lines:
                return None
        self._next += 1
        return self._lines[self._next - 1]

    @property
    def error_waiting(self) -> bool:
        return self._error is not None

    def take_frames(self) -> List[bytes]:
        buffer = self._buffer
        if (  # the hot path: whole lines only, nothing else pending
            buffer.endswith(b"\n")
            and len(buffer) <= self._simple_up_to
            and self._next >= len(self._lines)
            and self._error is None
            and b"\r" not in buffer
        ):
            chunk = bytes(buffer)
            buffer.clear()
            self._searched = 0
            return chunk.splitlines(keepends=True)
        frames = self._lines[self._next :]  # left over by next_frame()
        self._lines = []
        self._next = 0
        if self._error is not None:
            if frames:
                return frames
            error, self._error = self._error, None
            raise error
        buffer = self._buffer
        delimiter = self._delimiter
        # A delimiter may straddle the old end of the buffer: step back over it.
        start = self._searched - len(delimiter) + 1
        start = start if start > 0 else 0
        last = buffer.rfind(delimiter, start)
        if last >= 0:
            end = last + len(delimiter)
            chunk = bytes(buffer[:end])
            del buffer[:end]  # O(1) at the front of a bytearray
            self._searched = 0
            lines = self._cut(chunk)
            if frames:
                frames += lines
            else:
                frames = lines
            if self.error_waiting:  # (_cut() found a line too long)
                return frames or self.take_frames()  # (which raises it)
        try:
            if self._eof and buffer:
                self._check_length(len(buffer))
                frames.append(bytes(buffer))
                buffer.clear()
                self._searched = 0
            elif not self._eof:
                # The tail may be the start of a delimiter, which the limit does not count.
                self._check_length(len(buffer) - len(delimiter) + 1)
                self._searched = len(buffer)
        except LineTooLong as error:
            if not frames:
                raise
            self._error = error
        return frames

    def _cut(self, chunk: bytes) -> List[bytes]:
        """Return the lines of ``chunk``, which ends with a delimiter."""
        delimiter = self._delimiter
        if delimiter == b"\n" and b"\r" not in chunk:
            lines = chunk.splitlines(keepends=True)  # exact here, and all in C
        else:
            parts = chunk.split(delimiter)
            rest = parts.pop()  # empty, unless the delimiter overlaps itself
            if rest:  # (b"\n\n" in b"\n\n\n": the split keeps the first one)
                self._buffer[0:0] = rest
            lines = [part + delimiter for part in parts]
        limit = self._max_length
        if limit is not None and len(chunk) > limit + len(delimiter):
            width = len(delimiter)
            for index, line in enumerate(lines):
                if len(line) - width > limit:
                    del lines[index:]
                    self._error = LineTooLong(limit, len(line) - width)
                    self._release()
                    break
        return lines

    def _check_length(self, length: int) -> None:
        if self._max_length is not None and length > self._max_length:
            self._release()
            raise LineTooLong(self._max_length, length)

    def _release(self) -> None:
        self._buffer = bytearray()  # release the memory
        self._failed = True
        self._eof = True


class BytesBuffering:
    """The ``'bytes'`` strategy: ``read()`` returns every byte available."""

    __slots__ = ()

    name = "bytes"

    def new_framer(self) -> Framer:
        """Return fresh framing state for one channel."""
        return _BytesFramer()

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
        return _LineFramer(self._delimiter, self._max_length)

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
        return LineBuffering() if buffering == "line" else BytesBuffering()
    if isinstance(buffering, (LineBuffering, BytesBuffering, Buffering)):
        return buffering
    return BytesBuffering()
