"""Framers: the per-channel state that cuts a byte stream into frames.

No IO in this module: a framer is fed bytes and end-of-stream, and hands out
complete frames. The strategies in ``channels.buffering`` make them, one
fresh framer per channel. A channel reads through one framer object only:
``bulk_framer()`` gives a framer that has just ``next_frame()`` the bulk
methods too (``OneByOne``), so ``read()`` and a Poller's ``read_frames()``
see the same frames and the same errors.
"""

import sys
from typing import List, Optional, Protocol, cast, runtime_checkable

from ._errors import LineTooLong

__all__ = ["BulkFramer", "BytesFramer", "Framer", "LineFramer", "OneByOne", "bulk_framer"]


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


class OneByOne:
    """A ``BulkFramer`` over a framer that only has ``next_frame()``.

    ``take_frames()`` calls it until it has no frame; an error after some
    frames is held and raised by the next call (of either method), so the
    frames before it are not lost and the error is not either.
    """

    __slots__ = ("_error", "_framer")

    def __init__(self, framer: Framer) -> None:
        self._framer = framer
        self._error: Optional[Exception] = None

    def feed(self, data: bytes) -> None:
        """Pass ``data`` on to the framer."""
        self._framer.feed(data)

    def feed_eof(self) -> None:
        """Pass the end of the stream on to the framer."""
        self._framer.feed_eof()

    def next_frame(self) -> Optional[bytes]:
        """The held error, if any, else the framer's next frame."""
        self._raise_held()
        return self._framer.next_frame()

    @property
    def error_waiting(self) -> bool:
        """True when the next call raises the error the framer raised."""
        return self._error is not None

    def take_frames(self) -> List[bytes]:
        """Every frame the framer has now; an error after some waits."""
        self._raise_held()
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

    def _raise_held(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def bulk_framer(framer: Framer) -> BulkFramer:
    """``framer`` itself if it has the bulk methods, else a ``OneByOne`` over it."""
    # (hasattr, not isinstance: a runtime protocol check is slow per client)
    if hasattr(framer, "take_frames") and hasattr(framer, "error_waiting"):
        return cast(BulkFramer, framer)
    return OneByOne(framer)


class BytesFramer:
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


class LineFramer:
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
