"""Argument checks shared by the constructors and setters: one message each."""

import math
from typing import Optional

__all__ = ["MAX_WAIT", "seconds", "timeout", "whole_number"]

MAX_WAIT = 24 * 3600.0
"""The longest single wait handed to the OS (as asyncio clamps its selector
timeouts): a longer timeout is waited in slices of this, so any size works."""


def whole_number(value: object, what: str, minimum: int) -> int:
    """``value`` if it is an int (not a bool) of at least ``minimum``.

    ``TypeError`` names ``what`` for another type, ``ValueError`` for a smaller int.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{what} must be at least {minimum}, not {value}")
    return value


def seconds(value: object, what: str) -> float:
    """``value`` as a float if it is a number of seconds, 0 or more (not NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not value >= 0:  # (False for NaN too)
        raise ValueError(f"{what} must be 0 or more seconds, not {value}")
    return float(value)


def timeout(value: object, what: str) -> Optional[float]:
    """A timeout argument: None or ``inf`` wait forever (None), zero or less
    does not wait (0.0), any other number is seconds; ``TypeError`` for what
    is not a number, ``ValueError`` for NaN, both naming ``what``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{what} must be a number of seconds or None, not NaN")
    if value == math.inf:
        return None
    return float(value) if value > 0 else 0.0
