"""Argument checks shared by the constructors and setters: one message each."""

__all__ = ["seconds", "whole_number"]


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
