"""Validators of values deepzip did not make itself (a file's header, a stream's description).

They live once, here at the bottom, so the container, the coders and the runtime's policy judge
an untrusted number the same way.
"""
from __future__ import annotations

from typing import Any

import torch

from .errors import NumericsError


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


def require_finite(tensor: torch.Tensor, name: str, doing: str) -> None:
    """Raise NumericsError, naming `name`, if a floating-point `tensor` holds NaN or ±inf.

    Args:
        tensor: any tensor (integer ones always pass).
        name: what to call it ("fc1.weight").
        doing: what was refused ("prune", "share", "save").

    Example:
        >>> require_finite(model.fc1.weight, "fc1.weight", "prune")
    """
    if not tensor.is_floating_point():
        return
    bad = int((~torch.isfinite(tensor.detach())).sum())
    if bad:
        raise NumericsError(f"{name} holds {bad} non-finite value{'s' * (bad > 1)} (NaN or inf), so deepzip will not "
                            f"{doing} it; the model diverged or was damaged: retrain it (a lower learning rate) "
                            f"or repair those weights first.")
