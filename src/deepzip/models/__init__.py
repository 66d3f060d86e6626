"""Model registry: `create("lenet300")` builds a model that remembers how it was built.

A .dzip records the registry name and keyword arguments, so `deepzip.load` can rebuild the
architecture without the caller's code and without pickle; a user's own class and a Hugging
Face architecture are recorded too (sources.py, hf.py).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..errors import ConfigError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def create(name: str, **kwargs: Any) -> nn.Module:
    """Build registry model `name`; it records how it was built, so a .dzip can rebuild it.

    Args:
        name: one of `names()` ("lenet300", "lenet5", "vgg16", "resnet18", …).
        **kwargs: the model's arguments; every model takes in_channels, image_size and classes,
            the CIFAR-style ones a `width` too.

    Examples:
        >>> dz.create_model("resnet18", in_channels=1, image_size=32, classes=10, width=0.25)
    """
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown model {name!r}; known models: {', '.join(names())}.")
    try:
        model = _REGISTRY[name](**kwargs)
    except TypeError as e:
        raise ConfigError(f"Model {name!r} does not take these arguments: {e}.") from None
    # Plain JSON-able record of the recipe to rebuild it; deepzip.save writes it to the header.
    model.deepzip_arch = {"name": name, "kwargs": dict(kwargs)}
    return model


def from_spec(spec: str, kwargs: dict[str, Any] | None = None) -> nn.Module:
    """Build a user's module from "package.module:Class" or "path/to/file.py:Class" (with `kwargs`).

    This imports (runs) that code: it is only ever done when a user asks for it by name (the
    command line's --model-py), never because a file says so (models/sources.py).

    Examples:
        >>> from_spec("mynets.py:TinyNet")
    """
    from .sources import python_model

    return python_model(spec, kwargs)


def arch_of(model: nn.Module) -> dict[str, Any] | None:
    return getattr(model, "deepzip_arch", None)


from . import densenet, fire, lenet, resnet, squeezenet, vgg  # noqa: E402,F401  (register their models)
