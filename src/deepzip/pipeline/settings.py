"""Settings from YAML: a frozen dataclass built from a mapping, each value checked against its
field's type hint and the dataclass's own validation, every error naming the key's full path
(`Invalid recipe: share.bits.fc1 must be ...`). Recipes and added stages are read with it."""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from ..errors import ConfigError, InvalidSetting


def yaml_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and text.strip().lower() not in ("nan", "inf", "infinity") else None


def build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid recipe: {where or 'the recipe'} must be a mapping, not {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Invalid recipe: unknown key {where + '.' if where else ''}{unknown[0]} "
                          f"(known: {', '.join(sorted(known))}).")
    kwargs = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        factory = fields[key].default_factory
        if isinstance(value, dict) and factory is not dataclasses.MISSING:
            default = factory()
            if dataclasses.is_dataclass(default):  # `rate: {train: {lr: …}}` keeps train's default epochs
                value = {**dataclasses.asdict(default), **value}
        kwargs[key] = value_of(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"Invalid recipe: {where or 'the recipe'}: {e}.") from None
    except InvalidSetting as e:
        raise ConfigError(f"Invalid recipe: {where + '.' if where else ''}{e.key} must be {e.rule}, "
                          f"not {e.value!r}.") from None


def value_of(hint: Any, value: Any, where: str) -> Any:
    """Check one recipe value against its field's type hint (unions of plain types, Literals,
    containers by their outer type, nested dataclasses)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    nested = [o for o in options if dataclasses.is_dataclass(o)]
    if nested:
        return None if value is None else build(nested[0], value, where)
    if value is None and type(None) in options:
        return None
    names = []
    for option in options:
        if typing.get_origin(option) is Literal:
            if value in typing.get_args(option):
                return value
            names.append(" or ".join(map(repr, typing.get_args(option))))
            continue
        base = typing.get_origin(option) or option
        if base is float and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base is float and isinstance(value, str) and yaml_float(value) is not None:
            return yaml_float(value)  # YAML 1.1 reads 1e-5 (no dot) as a string
        if isinstance(base, type) and base is not type(None) and isinstance(value, base) \
                and not (base is int and isinstance(value, bool)):
            return value
        if base is not type(None):
            names.append(getattr(base, "__name__", str(base)))
    raise ConfigError(f"Invalid recipe: {where} must be {' or '.join(names)}, not {value!r}.")


def nested(cls: type) -> dict[str, type]:
    """The fields of a settings class that hold settings of their own (a stage, a training run),
    by name: a recipe's value for them is laid over the default's key by key."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        nested = [o for o in options if dataclasses.is_dataclass(o)]
        if nested:
            out[name] = nested[0]
    return out
