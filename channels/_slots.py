"""The attributes every channel has, as slots.

``ReadingSide`` and ``WritingSide`` both derive from ``ChannelSlots``: two
bases that each had slots of their own could not be combined in ``Channel``.
Each side declares the types of the attributes it uses.
"""

__all__ = ["ChannelSlots"]


class ChannelSlots:
    """The slots of a channel's state (no ``__dict__`` per channel until an
    application sets an attribute of its own, which a 0.2 one may)."""

    __slots__ = (
        "__dict__",
        "__weakref__",
        "_at",
        "_close_agents",
        "_close_callbacks",
        "_closed",
        "_end",
        "_end_cause",
        "_eof",
        "_framer",
        "_handed_over",
        "_held",
        "_high_water",
        "_linger",
        "_low_water",
        "_outbox",
        "_pid",
        "_strategy",
        "_unreleased",
        "_watcher",
    )
