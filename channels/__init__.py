"""channels: uniform non-blocking IO over pipes and sockets, with a Poller.

The successor of ``yet-another-io-channels-library`` 0.2: the same names and
behaviour, built on ``selectors``, typed, with pluggable framing.
"""

from ._errors import ChannelError as ChannelError
from ._errors import EndpointClosedException as EndpointClosedException
from ._errors import LineTooLong as LineTooLong
from ._errors import WriteBufferFullError as WriteBufferFullError
from .buffering import Buffering as Buffering
from .buffering import BufferingArg as BufferingArg
from .buffering import BulkFramer as BulkFramer
from .buffering import BytesBuffering as BytesBuffering
from .buffering import Framer as Framer
from .buffering import LineBuffering as LineBuffering
from .channel import BytesLike as BytesLike
from .channel import Channel as Channel
from .channel import ChannelLike as ChannelLike
from .channel import CloseNotifier as CloseNotifier
from .channel import ClosesInBackground as ClosesInBackground
from .channel import DrainNotifier as DrainNotifier
from .channel import FrameSource as FrameSource
from .channel import Lingering as Lingering
from .channel import PipeChannel as PipeChannel
from .channel import QueuedWriter as QueuedWriter
from .channel import SocketChannel as SocketChannel
from .channel import Watcher as Watcher
from .events import BatchEvent as BatchEvent
from .events import ChannelClosed as ChannelClosed
from .events import ClientAccepted as ClientAccepted
from .events import CloseReason as CloseReason
from .events import DataReceived as DataReceived
from .events import FramesReceived as FramesReceived
from .events import PollEvent as PollEvent
from .events import Writable as Writable
from .poller import AcceptEvent as AcceptEvent
from .poller import DataEvent as DataEvent
from .poller import Poller as Poller
from .poller import PollResult as PollResult
from .poller import SocketAddress as SocketAddress

__all__ = [
    "AcceptEvent",
    "BatchEvent",
    "Buffering",
    "BufferingArg",
    "BulkFramer",
    "BytesBuffering",
    "BytesLike",
    "Channel",
    "ChannelClosed",
    "ChannelError",
    "ChannelLike",
    "ClientAccepted",
    "CloseNotifier",
    "CloseReason",
    "ClosesInBackground",
    "DataEvent",
    "DataReceived",
    "DrainNotifier",
    "EndpointClosedException",
    "FrameSource",
    "Framer",
    "FramesReceived",
    "LineBuffering",
    "LineTooLong",
    "Lingering",
    "PipeChannel",
    "PollEvent",
    "PollResult",
    "Poller",
    "QueuedWriter",
    "SocketAddress",
    "SocketChannel",
    "Watcher",
    "Writable",
    "WriteBufferFullError",
]

__version__ = "0.3.0.dev0"
