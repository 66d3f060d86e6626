"""Validators of values deepzip did not make itself (a file's header, a stream's description).

They live once, here at the bottom, so the container, the coders and the runtime's policy judge
an untrusted number the same way.
"""
from __future__ import annotations

from typing import Any


def is_uint(value: Any, below: int | None = None) -> bool:
    """A JSON value that is a non-negative integer (bools excluded), optionally below a bound.

    Args:
        value: anything parsed from JSON.
        below: an exclusive upper bound, or None.

    Example:
        >>> is_uint(3), is_uint(True), is_uint(-1), is_uint(7, below=7)
        (True, False, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0 and (below is None or value < below)
