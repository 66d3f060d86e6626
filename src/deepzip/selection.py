"""Which layers deepzip compresses, and per-layer settings.

Every stage (pruning, weight sharing, encoding) asks the same two questions of a model:
which modules hold compressible weights, and what setting applies to a given one. Both answers
live here so that "conv" or "fc1" means the same thing to every stage.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from torch import nn

from .errors import ConfigError

T = TypeVar("T")

# The kind of a layer decides its paper defaults (8 bits for conv, 5 for fc).
_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Linear, "linear"),
    (nn.Conv1d, "conv"),
    (nn.Conv2d, "conv"),
    (nn.Conv3d, "conv"),
    (nn.Embedding, "embedding"),
)
KINDS = ("linear", "conv", "embedding")

Filter = Callable[[nn.Module, str], bool]


def kind_of(module: nn.Module) -> str | None:
    for cls, kind in _KINDS:
        if type(module) is cls or isinstance(module, cls):
            return kind
    return None


def compressible(model: nn.Module, filter_fn: Filter | None = None) -> Iterator[tuple[str, nn.Module, str]]:
    """Yield (qualified name, module, kind) for each layer whose weight deepzip compresses."""
    for name, module in model.named_modules():
        kind = kind_of(module)
        if kind is None:
            continue
        if filter_fn is not None and not filter_fn(module, name):
            continue
        yield name, module, kind


def per_layer(setting: T | Mapping[str, T] | None, name: str, kind: str, what: str) -> T | None:
    """Resolve a setting that is a single value or a dict keyed by layer name, kind, or "default".

    A layer's own name wins over its kind, which wins over "default"; a layer no key names gets None
    (it is left alone by that stage).
    """
    if not isinstance(setting, Mapping):
        return setting
    for key in (name, kind, "default"):
        if key in setting:
            return setting[key]
    return None


def check_keys(setting: Any, model: nn.Module, what: str) -> None:
    """Reject dict keys that name no layer and no kind, so a typo never silently does nothing."""
    if not isinstance(setting, Mapping):
        return
    names = {name for name, _, _ in compressible(model)}
    bad = [k for k in setting if k not in names and k not in KINDS and k != "default"]
    if bad:
        raise ConfigError(
            f"{what} names {', '.join(map(repr, bad))}, which is neither a compressible layer of this model "
            f"({', '.join(sorted(names)) or 'none'}) nor a kind ({', '.join(KINDS)}) nor 'default'."
        )
