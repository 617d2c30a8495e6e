"""The lifecycle of a channel a Poller watches: its states and the table.

Lifecycle of a registered channel (``Watched.state``)::

    state        read   watched for writing   reported   held by the Poller
    OPEN         yes*   while output queued   no         yes
    HALF_CLOSED  no     while output queued   yes        while output queued
    CLOSING      no     while output queued   yes        yes, until closed
    DELIVERING   no     while output queued   no         yes, until closed
    CLOSED       once   no                    no         until the next poll
    LOST         once   no                    no         until the next poll
    STALE        never  no                    no         until the next poll
    BROKEN       once   no                    no         until the next poll
    FORGOTTEN    no     no                    -          no
    (* unless paused; once: the frames it had buffered are returned first)

Every change goes through ``move(watched, event)`` and this table, the only
place a report (``ChannelClosed``, ``(b'', channel)`` in ``poll()``) is made:

    state        event           new state     reports
    OPEN         peer closed     HALF_CLOSED   PEER_CLOSED
    OPEN         reset           HALF_CLOSED   RESET
    OPEN         line too long   CLOSING       LINE_TOO_LONG
    OPEN         read failed     FORGOTTEN     FD_LOST
    OPEN         closed          CLOSED        -
    OPEN         close taken     DELIVERING    -
    OPEN         fd closed       LOST          -
    OPEN         fd reused       STALE         -
    OPEN         write failed    BROKEN        -
    DELIVERING   closed          CLOSED        -
    DELIVERING   fd closed       LOST          -
    DELIVERING   fd reused       STALE         -
    CLOSED       report          FORGOTTEN     CLOSED_LOCALLY
    LOST         report          FORGOTTEN     FD_LOST
    STALE        report          FORGOTTEN     FD_LOST
    BROKEN       report          FORGOTTEN     RESET
    HALF_CLOSED  register        OPEN          -
    HALF_CLOSED  idle            FORGOTTEN     -
    HALF_CLOSED  close taken     CLOSING       -
    HALF_CLOSED  closed, fd closed, fd reused  FORGOTTEN  -
    CLOSING      closed, fd closed, fd reused  FORGOTTEN  -
    any          unregister      FORGOTTEN     -

Any other event leaves the state as it is (a second close, an fd found bad
after the close was seen, a failed write of a half-closed channel: its
output is dropped, and the application learns it from its next write).

A half-closed channel is held only while it has output to deliver: with
none, only the channel's own callbacks lead back to its record, so an
application that drops a channel reported closed lets the garbage collector
have it; ``idle``: one that cannot tell of new output is let go at once.

Closing in the background: the registry offers to finish the closes of
channels that can hand them over (``ClosesInBackground``): ``close()`` with
output queued returns at once (``close taken``), the poll loop delivers the
rest within the channel's ``linger`` in all, then finishes the close. One
closed while OPEN is DELIVERING, reported once finished with what it could
not deliver. CLOSING is where the Poller closes a channel itself (a line too
long, reported at once): the next ``poll()`` closes it, so replies to the
lines before the long one are delivered within its ``linger`` too. A record
whose close was taken and that leaves otherwise is finished then
(unregistered: its output delivered first, blocking, as a close would).
"""

from typing import Dict, Optional, Tuple

from ._records import State
from .events import CloseReason

__all__ = [
    "BROKEN",
    "CLOSED",
    "CLOSING",
    "DELIVERING",
    "GONE",
    "HALF",
    "LOST",
    "OPEN",
    "STALE",
    "TRANSITIONS",
]

OPEN, HALF, CLOSING = State.OPEN, State.HALF_CLOSED, State.CLOSING
DELIVERING = State.DELIVERING
CLOSED, LOST, STALE, GONE = State.CLOSED, State.LOST, State.STALE, State.FORGOTTEN
BROKEN = State.BROKEN

TRANSITIONS: Dict[Tuple[State, str], Tuple[State, Optional[CloseReason]]] = {
    (OPEN, "peer closed"): (HALF, CloseReason.PEER_CLOSED),
    (OPEN, "reset"): (HALF, CloseReason.RESET),
    (OPEN, "line too long"): (CLOSING, CloseReason.LINE_TOO_LONG),
    (OPEN, "read failed"): (GONE, CloseReason.FD_LOST),
    (OPEN, "closed"): (CLOSED, None),
    (OPEN, "fd closed"): (LOST, None),
    (OPEN, "fd reused"): (STALE, None),
    (OPEN, "write failed"): (BROKEN, None),
    (OPEN, "close taken"): (DELIVERING, None),
    (DELIVERING, "closed"): (CLOSED, None),
    (DELIVERING, "fd closed"): (LOST, None),
    (DELIVERING, "fd reused"): (STALE, None),
    (HALF, "close taken"): (CLOSING, None),
    (CLOSED, "report"): (GONE, CloseReason.CLOSED_LOCALLY),
    (LOST, "report"): (GONE, CloseReason.FD_LOST),
    (STALE, "report"): (GONE, CloseReason.FD_LOST),
    (BROKEN, "report"): (GONE, CloseReason.RESET),
    (HALF, "register"): (OPEN, None),
    (HALF, "idle"): (GONE, None),
    **{
        (state, event): (GONE, None)
        for state in (HALF, CLOSING)
        for event in ("closed", "fd closed", "fd reused")
    },
    **{(state, "unregister"): (GONE, None) for state in State if state is not GONE},
}
