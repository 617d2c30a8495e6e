"""How the poll loop reads a channel: through ``read_frames_into()``.

A ``Channel`` of this library has it. For any other channel, ``FramesInto``
makes it of the channel's ``read_frames()``, or of ``read()`` called until
it returns ``b''``. No IO here but the channel's own.
"""

from typing import Any, List, Optional, Protocol, Tuple, cast

from ._errors import not_from_the_os
from ._protocols import AGAIN, DRAINED, MORE, ChannelLike, FrameSource

__all__ = ["FramesInto", "FramesReader"]


class FramesReader(Protocol):
    """What the poll loop reads a channel through: the channel itself (a
    ``Channel``), or a ``FramesInto`` over it."""

    def read_frames_into(self, out: List[Any], max_bytes: int) -> int:
        """Append ``(frames, channel)`` to ``out``; ``DRAINED``, ``MORE`` or ``AGAIN``."""
        ...


class FramesInto:
    """``read_frames_into()`` for a channel that is no ``Channel``: through
    its ``read_frames()``, or for one that has only ``read()``, called until
    it returns ``b''`` or ``max_bytes`` came. An error after some frames is
    raised by the next call, so the frames before it are not lost. (Frames
    such a channel returned are lost if a signal handler raises before they
    are stored: README, Signals.)"""

    __slots__ = ("_channel", "_error", "_source")

    def __init__(self, channel: ChannelLike, frame_source: bool) -> None:
        self._channel = channel
        self._source = cast(FrameSource, channel) if frame_source else None
        self._error: Optional[Exception] = None

    def read_frames_into(self, out: List[Any], max_bytes: int) -> int:
        """Frames appended to ``out`` as ``(frames, channel)``, and
        ``DRAINED``, ``MORE`` or ``AGAIN``."""
        if self._source is not None:
            frames, state = self._source.read_frames(max_bytes)
        else:
            frames, state = self._read_frames(max_bytes)
        if frames:
            out.append((frames, self._channel))
        return state

    def _read_frames(self, max_bytes: int) -> Tuple[List[bytes], int]:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        frames: List[bytes] = []
        total = 0
        try:
            while total < max_bytes:
                data = self._channel.read()
                if not data:
                    return frames, DRAINED
                frames.append(data)
                total += len(data)
        except Exception as exc:
            if not frames or not_from_the_os(exc):
                raise
            self._error = exc
            return frames, AGAIN
        return frames, MORE
