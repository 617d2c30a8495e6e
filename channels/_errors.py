"""Exceptions raised by channels.

The tree::

    Exception
     └── EndpointClosedException   an end of the channel is gone: the peer closed
                                   or broke the connection, or the channel itself
                                   was closed; raised by read() once nothing
                                   buffered is left, and by write()

Programming errors are never turned into ``EndpointClosedException``: a wrong
argument type is a ``TypeError``, a wrong value a ``ValueError``, an operation
a channel cannot do (reading a write-only pipe) a ``NotImplementedError``.

When the end is gone because the OS said so, the ``OSError`` is chained as
``__cause__``.
"""

__all__ = ["EndpointClosedException"]


class EndpointClosedException(Exception):
    """Raised when a channel can no longer be read or written.

    ``read()`` raises it once the other end closed (or the channel was closed)
    and every buffered frame has been returned; ``write()`` raises it when the
    data can no longer be delivered.
    """
