"""Recipes: every setting of a compression run, as frozen dataclasses that load from YAML.

Unknown keys and impossible values are rejected with the key's full path in the message, so a
typo in a recipe never silently falls back to a default.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import ConfigError
from ..files import write_text

PerLayer = float | dict[str, float] | None


@dataclass(frozen=True)
class TrainStage:
    epochs: float = 0
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        _check(self.epochs >= 0, "epochs must be ≥ 0")
        _check(self.lr > 0, "lr must be > 0")
        _check(self.batch_size >= 1, "batch_size must be ≥ 1")
        _check(self.weight_decay >= 0, "weight_decay must be ≥ 0")
        _check(self.optimizer in ("adam", "sgd"), "optimizer must be 'adam' or 'sgd'")


@dataclass(frozen=True)
class PruneStage:
    """How to prune; whichever schedule, the training budget is steps × retrain.epochs epochs.

    schedule "iterative": `steps` rounds, each pruning further along a cubic ramp to the target
    (Zhu & Gupta's curve, so early rounds take the most), then retraining `retrain.epochs`.
    schedule "agp": one run of steps × retrain.epochs epochs during which the masks follow the
    cubic ramp, updated every `every` optimizer steps, reaching the target at `ramp_end` of the run.
    schedule "direct": prune to the target at once, then retrain for the whole budget (the
    one-shot baseline that iterative pruning is compared against).
    """
    sparsity: PerLayer = None
    quality: PerLayer = None
    steps: int = 3
    retrain: TrainStage = field(default_factory=lambda: TrainStage(epochs=2, lr=5e-4))
    schedule: Literal["iterative", "agp", "direct"] = "iterative"
    ramp_end: float = 0.75
    every: int = 50
    scope: Literal["layer", "global"] = "layer"  # global: one magnitude threshold across all layers
    # Fraction of output units (neurons, filters) removed per layer before magnitude pruning;
    # the next layer's columns they fed go with them (prune/structured.py).
    units: PerLayer = None

    def __post_init__(self) -> None:
        _check(self.steps >= 1, "prune.steps must be ≥ 1")
        _check(0 < self.ramp_end <= 1, "prune.ramp_end must be in (0, 1]")
        _check(self.every >= 1, "prune.every must be ≥ 1")
        for value in (self.units.values() if isinstance(self.units, dict) else [self.units]):
            _check(value is None or 0 <= value < 1, "prune.units must be fractions in [0, 1)")
        _check(self.schedule != "agp" or self.quality is None, "the agp schedule takes sparsity, not quality")
        _check(self.scope == "layer" or isinstance(self.sparsity, (int, float)),
               "prune.scope global takes one sparsity for the whole model, not a per-layer one")
        _check((self.sparsity is None) != (self.quality is None) or (self.sparsity is None and self.quality is None),
               "prune takes sparsity or quality, not both")


@dataclass(frozen=True)
class ShareStage:
    """Weight sharing, then centroid fine-tuning. bias_bits shares each layer's biases too, with
    its own codebook of 2^bias_bits − 1 values, fine-tuned with the weights'; half_biases rounds
    the biases left unshared to float16 values afterwards, halving their bytes in the file, and
    half_codebooks the centroids (the accuracies reported are of the rounded model)."""
    bits: int | dict[str, int] | None = None
    init: Literal["linear", "density", "random"] = "linear"
    finetune: TrainStage = field(default_factory=lambda: TrainStage(epochs=1, lr=1e-4))
    half_biases: bool = False
    half_codebooks: bool = False
    bias_bits: int | dict[str, int] | None = None

    def __post_init__(self) -> None:
        for what, setting in (("share.bits", self.bits), ("share.bias_bits", self.bias_bits)):
            for b in (setting.values() if isinstance(setting, dict) else [setting]):
                _check(b is None or (isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 12),
                       f"{what} must be whole numbers from 1 to 12")


@dataclass(frozen=True)
class DistillStage:
    """Knowledge distillation from the dense model during every training after the dense stage
    (pruning's retraining and the centroid fine-tuning): `weight` of the loss is the KL term to
    the dense model's outputs softened by `temperature`, the rest cross-entropy on the labels."""
    weight: float = 0.5
    temperature: float = 4.0

    def __post_init__(self) -> None:
        _check(0 <= self.weight <= 1, "distill.weight must be in [0, 1]")
        _check(self.temperature > 0, "distill.temperature must be > 0")


@dataclass(frozen=True)
class Recipe:
    model: str = "lenet300"
    model_args: dict[str, Any] = field(default_factory=dict)  # size knobs of the model, e.g. {width: 0.5}
    dataset: str = "fashion-mnist"
    image_size: int | None = None  # resize the data set's images to this (e.g. 32 for CIFAR networks)
    seed: int = 0
    dense: TrainStage = field(default_factory=lambda: TrainStage(epochs=10, lr=1e-3))
    prune: PruneStage | None = field(default_factory=PruneStage)
    share: ShareStage | None = field(default_factory=ShareStage)
    distill: DistillStage | None = None
    coder: Literal["huffman", "ans", "auto"] = "huffman"
    index_bits: int | str | dict[str, int | str] | None = None

    def __post_init__(self) -> None:
        _check(self.coder in ("huffman", "ans", "auto"), "coder must be 'huffman', 'ans' or 'auto'")
        widths = self.index_bits.values() if isinstance(self.index_bits, dict) else [self.index_bits]
        _check(all(w is None or w == "auto" or (isinstance(w, int) and 1 <= w <= 16) for w in widths),
               "index_bits must be 1 to 16 or 'auto'")

    def replace(self, **changes: Any) -> Recipe:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def changes(self) -> dict[str, Any]:
        """Only the settings that differ from `Recipe()`'s, nested like to_dict: what a file
        records of its recipe (the full one costs ~3 % of a 10 KB LeNet file)."""
        return _diff(self.to_dict(), Recipe().to_dict())


def _diff(value: dict[str, Any], default: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, v in value.items():
        d = default.get(key)
        if isinstance(v, dict) and isinstance(d, dict) and key not in ("sparsity", "quality", "bits", "bias_bits", "units"):
            sub = _diff(v, d)
            if sub:
                out[key] = sub
        elif v != d:
            out[key] = v
    return out


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(f"Invalid recipe: {message}.")


def _build(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"Invalid recipe: {where or 'the recipe'} must be a mapping, not {type(data).__name__}.")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"Invalid recipe: unknown key {where + '.' if where else ''}{unknown[0]} "
                          f"(known: {', '.join(sorted(known))}).")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _value(hints[key], value, f"{where}.{key}" if where else key)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"Invalid recipe: {where or 'the recipe'}: {e}.") from None


def _value(hint: Any, value: Any, where: str) -> Any:
    """Check one recipe value against its field's type hint (unions of plain types, Literals,
    containers by their outer type, nested dataclasses)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    nested = [o for o in options if dataclasses.is_dataclass(o)]
    if nested:
        return None if value is None else _build(nested[0], value, where)
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
        if isinstance(base, type) and base is not type(None) and isinstance(value, base) \
                and not (base is int and isinstance(value, bool)):
            return value
        if base is not type(None):
            names.append(getattr(base, "__name__", str(base)))
    raise ConfigError(f"Invalid recipe: {where} must be {' or '.join(names)}, not {value!r}.")


def from_dict(data: dict[str, Any]) -> Recipe:
    return _build(Recipe, data, "")


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"Recipe file not found: {path}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Recipe {path} is not valid YAML: {str(e).splitlines()[0]}.") from None
    return from_dict(data or {})


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(recipe.to_dict(), sort_keys=False))




# deepzip's default recipe per model: the settings `deepzip compress` uses without --recipe.
_DEFAULTS: dict[str, dict[str, Any]] = {
    # Measured on Fashion-MNIST by `make demo` (README): 51.2× at −0.39 points from the dense model.
    "lenet300": {
        "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 12, "lr": 1e-3},
        "prune": {"sparsity": {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7}, "steps": 3,
                  "retrain": {"epochs": 3, "lr": 1e-3}},
        "share": {"bits": 5, "finetune": {"epochs": 2, "lr": 1e-4}},
    },
    # Measured on Fashion-MNIST (README): 58× at −0.38 points from the dense model.
    "lenet5": {
        "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 8, "lr": 1e-3},
        "prune": {"sparsity": {"conv1": 0.4, "conv2": 0.85, "fc1": 0.96, "fc2": 0.8}, "schedule": "agp",
                  "steps": 3, "retrain": {"epochs": 2, "lr": 1e-3}},
        "share": {"bits": {"conv": 8, "linear": 5}, "finetune": {"epochs": 1, "lr": 1e-4}, "half_biases": True},
    },
}


def default_recipe(model: str) -> Recipe:
    """deepzip's tuned recipe for a registry model, or generic settings for any other."""
    return from_dict({"model": model, **_DEFAULTS.get(model, {"prune": {"sparsity": {"linear": 0.9, "conv": 0.7}}})})
