"""Layer widths after channel surgery: the record a file and a checkpoint keep, and how to give a
fresh, full-width module the same widths.

Structured pruning (deepzip.structured) removes output channels for real, so a slim model's
layers no longer match the architecture its registry name builds. The record says, for each
changed layer, its new width ({"layer1.0.body.0.0": {"out_channels": 24, "in_channels": 16}});
`apply_widths_` resizes those layers of a fresh instance (new, uninitialised tensors of the
recorded shapes), after which the stored weights fill it as usual. Which channels were kept does
not matter for that: only how many.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError

# The attributes a width record may set, per module type.
WIDTH_ATTRS = {
    nn.Linear: ("in_features", "out_features"),
    nn.modules.conv._ConvNd: ("in_channels", "out_channels", "groups"),
    nn.modules.batchnorm._BatchNorm: ("num_features",),
}


def _attrs(module: nn.Module) -> tuple[str, ...]:
    for cls, attrs in WIDTH_ATTRS.items():
        if isinstance(module, cls):
            return attrs
    return ()


def resize_(module: nn.Module, **widths: int) -> None:
    """Give `module` new widths, reallocating its parameters and buffers (values undefined).

    Examples:
        >>> resize_(conv, out_channels=24)
    """
    for attr, value in widths.items():
        setattr(module, attr, int(value))
    with torch.no_grad():
        if isinstance(module, nn.Linear):
            shapes = {"weight": (module.out_features, module.in_features), "bias": (module.out_features,)}
        elif isinstance(module, nn.modules.conv._ConvNd):
            if module.in_channels % module.groups or module.out_channels % module.groups:
                raise ConfigError(f"{module.in_channels} → {module.out_channels} channels cannot form "
                                  f"{module.groups} groups.")
            kernel = tuple(module.weight.shape[2:])
            shapes = {"weight": (module.out_channels, module.in_channels // module.groups, *kernel),
                      "bias": (module.out_channels,)}
        else:  # batch norm
            shapes = {name: (module.num_features,) for name in ("weight", "bias", "running_mean", "running_var")}
        for name, shape in shapes.items():
            for store in (module._parameters, module._buffers):
                old = store.get(name)
                if old is not None and tuple(old.shape) != shape:
                    new = torch.empty(shape, dtype=old.dtype, device=old.device)
                    store[name] = nn.Parameter(new, requires_grad=old.requires_grad) if store is module._parameters else new


def apply_widths_(model: nn.Module, widths: Any, where: str = "the width record") -> None:
    """Resize the layers a width record names; every value is checked first (a file's record is
    untrusted): known layer, known attribute, a whole number no larger than the layer has now.

    Examples:
        >>> apply_widths_(fresh, slim.deepzip_widths)
    """
    if not isinstance(widths, dict):
        raise ConfigError(f"{where} is not a mapping of layer names.")
    modules = dict(model.named_modules())
    plan = []
    for name, change in widths.items():
        module = modules.get(name)
        attrs = _attrs(module) if module is not None else ()
        if not attrs or not isinstance(change, dict) or not change:
            raise ConfigError(f"{where} names {name!r}, which is no Linear, convolution or batch norm of this model.")
        for attr, value in change.items():
            limit = getattr(module, attr, None) if attr in attrs else None
            if limit is None or isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f"{where} sets {name}.{attr} to {value!r}, which this model's layer "
                                  f"({attr} = {limit}) cannot take.")
        plan.append((module, change))
    for module, change in plan:
        resize_(module, **change)


def widths_of(model: nn.Module) -> dict[str, dict[str, int]]:
    """The width record a model carries (set by channel surgery), or {}."""
    return dict(getattr(model, "deepzip_widths", {}) or {})
