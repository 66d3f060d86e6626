"""Validators, once, at the bottom: of values deepzip did not make itself (a file's header, a
stream's description), so the container, the coders and the runtime's policy judge an untrusted
number the same way; and the rules every setting is checked by (`check`, `check_each` and the
predicates), so the API and the recipe reader say the same thing about the same mistake.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .errors import ConfigError, InvalidSetting, NumericsError


def is_uint(value: Any, below: int | None = None) -> bool:
    """A JSON value that is a non-negative integer (bools excluded), optionally below a bound.

    Args:
        value: anything parsed from JSON.
        below: an exclusive upper bound, or None.

    Examples:
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

    Examples:
        >>> require_finite(model.fc1.weight, "fc1.weight", "prune")
    """
    if not tensor.is_floating_point():
        return
    bad = int((~torch.isfinite(tensor.detach())).sum())
    if bad:
        raise NumericsError(f"{name} holds {bad} non-finite value{'s' * (bad > 1)} (NaN or inf), so deepzip will not "
                            f"{doing} it; the model diverged or was damaged: retrain it (a lower learning rate) "
                            f"or repair those weights first.")


def check(cond: bool, key: str, rule: str, value: Any) -> None:
    """Raise InvalidSetting(key, rule, value) unless `cond`.

    Examples:
        >>> check(lr > 0, "lr", "a finite number > 0", lr)
    """
    if not cond:
        raise InvalidSetting(key, rule, value)


def check_each(setting: Any, key: str, rule: str, ok: Callable[[Any], bool]) -> None:
    """Check one value, or each value of a per-layer dict (naming its key: "bits.fc1"); None passes.

    Examples:
        >>> check_each({"fc1": 13}, "bits", "a whole number from 1 to 12", whole(1, 12))
        InvalidSetting: bits.fc1 must be a whole number from 1 to 12, not 13.
    """
    if setting is None:
        return
    items = setting.items() if isinstance(setting, Mapping) else [(None, setting)]
    for name, value in items:
        check(ok(value), key if name is None else f"{key}.{name}", rule, value)


def whole(low: int, high: int | None = None) -> Callable[[Any], bool]:
    """A rule: a whole number (not a bool) from `low` to `high` (no upper bound if None)."""
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low and (high is None or v <= high)


def number(low: float = -math.inf, high: float = math.inf, *, above: bool = False, below: bool = False
           ) -> Callable[[Any], bool]:
    """A rule: a finite real number (not a bool) in [low, high]; `above`/`below` make an end open."""
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > low if above else v >= low) and (v < high if below else v <= high)
    return ok


def is_amount(v: Any) -> bool:
    """torch's rule for an amount (of weights, units or channels to remove): a float fraction in
    [0, 1], or an int count ≥ 0."""
    if isinstance(v, bool):
        return False
    return (isinstance(v, int) and v >= 0) or (isinstance(v, float) and 0 <= v <= 1)


AMOUNT = "a fraction in [0, 1] (or a whole count of weights)"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """"auto" (CUDA when PyTorch sees a GPU, else the CPU), "cpu", "cuda" or "cuda:N", checked.

    Examples:
        >>> model.to(resolve_device("auto"))
    """
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} was asked for, but PyTorch sees no CUDA GPU here; use --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} does not exist: PyTorch sees {torch.cuda.device_count()} GPU(s).")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, not {name!r}.")
    return device
