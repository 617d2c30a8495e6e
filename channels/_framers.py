"""Framers: the per-channel state that cuts a byte stream into frames.

No IO in this module: a framer is fed bytes and end-of-stream, and hands out
complete frames. The strategies in ``channels.buffering`` make them, one
fresh framer per channel. A channel reads through one framer object only,
an ``Intake``: the built-in framers are one, ``intake()`` wraps any other
(``OneByOne``), so ``read()`` and a Poller's ``read_frames_into()`` see the
same frames and the same errors.
"""

import io
import sys
from typing import Any, List, Optional, Protocol, Tuple, cast, runtime_checkable

from ._errors import LineTooLong, raised_by_a_signal_handler

__all__ = ["BulkFramer", "BytesFramer", "Framer", "Intake", "LineFramer", "OneByOne", "intake"]


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


Frames = List[bytes]
Out = List[Tuple[Frames, Any]]
"""Where ``take_into()`` puts frames: ``(frames, owner)`` pairs, one per call."""


def _flat(out: Out) -> List[bytes]:
    """The frames of ``take_into()``'s pairs, in order."""
    return out[0][0] if len(out) == 1 else [frame for frames, _ in out for frame in frames]


class Intake(Protocol):
    """What a channel reads through: a framer with an ``inbox`` the channel
    appends raw chunks to (the read syscall and the keeping of its result
    are one C call, so a signal handler cannot come in between), and a
    ``take_into()`` that moves complete frames to the caller's list."""

    inbox: List[bytes]
    """Chunks read but not framed yet, oldest first (an empty one means nothing)."""

    def take_into(self, out: Out, owner: object) -> None:
        """Frame what the inbox holds and append ``(frames, owner)`` to ``out``
        (nothing if no frame is complete). Raises a framing error once the
        frames before it were taken, as ``BulkFramer.take_frames()`` does."""
        ...

    def feed_eof(self) -> None:
        """Mark the end of the stream."""
        ...

    @property
    def error_waiting(self) -> bool:
        """True when the next ``take_into()`` raises the error it found."""
        ...


class OneByOne:
    """An ``Intake`` over any framer (one with only ``next_frame()`` too).

    Chunks are fed to the framer one by one; an error after some frames is
    held and raised by the next call, so the frames before it are not lost
    and the error is not either. A custom framer runs Python code between
    the library's steps: a signal handler raising in there may repeat a
    chunk to it or lose frames it handed out (README: Signals).
    """

    __slots__ = ("_bulk", "_error", "_framer", "inbox")

    def __init__(self, framer: Framer) -> None:
        self._framer = framer
        # (hasattr, not isinstance: a runtime protocol check is slow per client)
        bulk = hasattr(framer, "take_frames") and hasattr(framer, "error_waiting")
        self._bulk = cast(BulkFramer, framer) if bulk else None
        self._error: Optional[Exception] = None
        self.inbox: List[bytes] = []

    def feed(self, data: bytes) -> None:
        """Pass ``data`` on to the framer."""
        self.inbox.append(data)

    def feed_eof(self) -> None:
        """Pass the end of the stream on to the framer."""
        self._absorb()
        self._framer.feed_eof()

    def next_frame(self) -> Optional[bytes]:
        """The held error, if any, else the framer's next frame."""
        self._raise_held()
        self._absorb()
        return self._framer.next_frame()

    @property
    def error_waiting(self) -> bool:
        """True when the next call raises the error the framer raised."""
        return self._error is not None or (self._bulk is not None and self._bulk.error_waiting)

    def take_frames(self) -> List[bytes]:
        """Every frame the framer has now; an error after some waits."""
        out: Out = []
        self.take_into(out, None)
        return _flat(out)

    def take_into(self, out: Out, owner: object) -> None:
        """``take_frames()`` into ``out`` as one ``(frames, owner)``."""
        self._raise_held()
        self._absorb()
        frames: List[bytes] = []
        if self._bulk is not None:
            frames = self._bulk.take_frames()
            if frames:
                out += ((frames, owner),)
            return
        try:
            frame = self._framer.next_frame()
            while frame is not None:
                frames.append(frame)
                frame = self._framer.next_frame()
        except Exception as exc:
            if not frames or raised_by_a_signal_handler(exc):
                raise
            self._error = exc
        if frames:
            out += ((frames, owner),)

    def _absorb(self) -> None:
        inbox = self.inbox
        while inbox:
            if inbox[0]:
                self._framer.feed(inbox[0])
            del inbox[0]

    def _raise_held(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def intake(framer: Framer) -> Intake:
    """``framer`` itself if it is one of ours (an ``Intake``), else a
    ``OneByOne`` over it."""
    if isinstance(framer, (BytesFramer, LineFramer)):
        return framer
    return OneByOne(framer)


class BytesFramer:
    """Frames are all bytes buffered so far, in one piece."""

    __slots__ = ("inbox",)

    def __init__(self) -> None:
        self.inbox: List[bytes] = []

    def feed(self, data: bytes) -> None:
        self.inbox.append(data)

    def feed_eof(self) -> None:
        pass

    def next_frame(self) -> Optional[bytes]:
        out: Out = []
        self.take_into(out, None)
        frames = _flat(out)
        return frames[0] if frames else None

    def take_frames(self) -> List[bytes]:
        out: Out = []
        self.take_into(out, None)
        return _flat(out)

    def take_into(self, out: Out, owner: object) -> None:
        inbox = self.inbox
        count = len(inbox)
        if not count:
            return
        frame = inbox[0] if count == 1 else b"".join(inbox)
        if frame:
            # (no call from here to the end: a signal handler cannot come in between)
            out += (([frame], owner),)
        del inbox[:count]

    @property
    def error_waiting(self) -> bool:
        return False


_NO_LINES: List[bytes] = []  # (shared, never changed: replaced, not filled)


def _lines_of(chunk: bytes) -> List[bytes]:
    """``chunk`` cut after every ``b'\\n'``, delimiters kept: in C, and 1.5x
    (32-byte lines) to 3.5x (200-byte lines) faster than
    ``splitlines(keepends=True)``, which also cuts at ``b'\\r'``."""
    return io.BytesIO(chunk).readlines()


class LineFramer:
    """Frames are delimiter-terminated lines; the tail counts at end of stream.

    Chunks wait in ``inbox`` until frames are taken, then are framed one at
    a time: a chunk that ends a line, with no partial line before it, is cut
    as it is (the hot path: one ``readlines``, no copy); otherwise one
    reverse search in the chunk finds its last delimiter, and the partial
    line buffered before, plus the chunk up to there, is cut in one
    ``split``; the rest is the new partial line. A line longer than
    ``max_length`` (delimiter not counted) raises ``LineTooLong`` once the
    lines before it were taken; the buffer is then dropped and the framer
    takes no more data.

    Each chunk is worked out first, then committed with stores and
    deletions only, no call in between: a signal handler (which CPython runs
    only at calls and loop jumps) finds a chunk either untouched or done.
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
        "_simple_up_to",
        "inbox",
    )

    def __init__(self, delimiter: bytes, max_length: Optional[int]) -> None:
        self.inbox: List[bytes] = []
        self._buffer = bytearray()
        # Lines cut but not yet taken by next_frame(): _lines[_next:].
        self._lines: List[bytes] = _NO_LINES
        self._next = 0
        self._delimiter = delimiter
        self._max_length = max_length
        # Up to how many bytes a chunk is cut as it is: no line of it can
        # pass the limit (-1: never, another delimiter).
        self._simple_up_to = -1
        if delimiter == b"\n":
            self._simple_up_to = sys.maxsize if max_length is None else max_length
        self._eof = False
        self._failed = False
        self._error: Optional[LineTooLong] = None  # raised once the lines before it went

    def feed(self, data: bytes) -> None:
        self.inbox.append(data)

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
        out: Out = []
        self.take_into(out, None)
        return _flat(out)

    def take_into(self, out: Out, owner: object) -> None:
        inbox = self.inbox
        if len(inbox) == 1 and not self._buffer and self._error is None and not self._lines:
            chunk = inbox[0]
            if (  # the hot path: one read of whole lines, nothing else pending
                chunk.endswith(b"\n") and len(chunk) <= self._simple_up_to and not self._failed
            ):
                lines = _lines_of(chunk)
                # No call from here to the end (see the class doc).
                out += ((lines, owner),)
                del inbox[0]
                return
        took = False  # (an error found now waits for the next call then)
        if self._next < len(self._lines):  # left over by next_frame()
            lines = self._lines[self._next :]
            out += ((lines, owner),)
            self._lines = _NO_LINES
            self._next = 0
            took = True
        # One chunk at a time: a step is short, so even a handler raising
        # every millisecond cannot keep interrupting the same one.
        while inbox:
            took = self._take_chunk(out, owner, took) or took
        self._take_tail(out, owner, took)

    def _take_chunk(self, out: Out, owner: object, took: bool) -> bool:
        """Frame the first chunk of the inbox; True if frames were taken.

        Everything is worked out first; then the frames go to ``out``, the
        buffer gets the new partial line and the chunk leaves the inbox,
        with no call in between."""
        inbox = self.inbox
        chunk = inbox[0]
        buffer = self._buffer
        if self._failed:
            del inbox[0]
            return False
        if chunk and len(buffer) + len(chunk) <= self._simple_up_to:  # (no line too long)
            # The hot path: cut as it is, no copy of the chunk; its partial
            # last line is the new buffer, the old one starts its first line.
            lines = _lines_of(chunk)
            tail = lines[-1]
            if tail.endswith(b"\n"):
                tail = b""
            else:
                del lines[-1]
            if not lines:
                buffer += chunk
                del inbox[0]
                return False
            if buffer:
                lines[0] = bytes(buffer) + lines[0]
            out += ((lines, owner),)
            buffer[:] = tail
            del inbox[0]
            return True
        delimiter = self._delimiter
        width = len(delimiter)
        overlap = 0
        if width == 1 or not buffer:
            found = chunk.rfind(delimiter)
        else:  # a delimiter may straddle the end of the buffer
            head = bytes(buffer[-(width - 1) :])
            found = (head + chunk).rfind(delimiter)
            overlap = len(head)
        if found < 0:
            buffer += chunk
            del inbox[0]
            return False
        cut = found - overlap + width
        lines, rest, error = self._cut(bytes(buffer) + chunk[:cut])
        tail = rest + chunk[cut:]
        taken = [(lines, owner)] if lines else []
        out += taken
        buffer[:] = tail
        del inbox[0]
        if error is not None:
            self._error = error
            self._release()
            del inbox[:]
            if not lines and not took:
                self.take_into(out, owner)  # (which raises it)
        return bool(lines)

    def _take_tail(self, out: Out, owner: object, took: bool) -> None:
        """At the end of the stream, the partial line is a frame; before it,
        a partial line already too long is an error. A waiting error is
        raised now, unless frames were taken in this call."""
        if self._error is not None:
            if took:
                return
            error, self._error = self._error, None
            raise error
        buffer = self._buffer
        length = len(buffer)
        try:
            if self._eof and length:
                self._check_length(length)
                out += (([bytes(buffer)], owner),)
                del buffer[:]
            elif not self._eof:
                # The tail may be the start of a delimiter, which the limit does not count.
                self._check_length(length - len(self._delimiter) + 1)
        except LineTooLong as error:
            if not took:
                raise
            self._error = error

    def _cut(self, chunk: bytes) -> Tuple[List[bytes], bytes, Optional[LineTooLong]]:
        """The lines of ``chunk`` (which ends with a delimiter) up to the first
        that is too long, what to put back, and that line's error."""
        delimiter = self._delimiter
        rest = b""
        if delimiter == b"\n":
            lines = _lines_of(chunk)
        else:
            parts = chunk.split(delimiter)
            rest = parts.pop()  # empty, unless the delimiter overlaps itself
            lines = [part + delimiter for part in parts]
        limit = self._max_length
        if limit is not None and len(chunk) > limit + len(delimiter):
            width = len(delimiter)
            for index, line in enumerate(lines):
                if len(line) - width > limit:
                    return lines[:index], b"", LineTooLong(limit, len(line) - width)
        return lines, rest, None

    def _check_length(self, length: int) -> None:
        if self._max_length is not None and length > self._max_length:
            self._release()
            raise LineTooLong(self._max_length, length)

    def _release(self) -> None:
        self._buffer = bytearray()  # release the memory
        self._failed = True
        self._eof = True
