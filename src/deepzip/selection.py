"""Which weights deepzip compresses, and which setting applies to each.

Every stage (pruning, weight sharing, encoding) asks the same two questions of a model: which
parameters are weight matrices to compress, and what setting applies to a given one. Both
answers live here so that "conv", "fc1" or "encoder.layers.0.self_attn.in_proj_weight" means the
same thing to every stage.

A weight is selected when it is
  - the weight of a Linear (or transformers' Conv1D), Conv1d/2d/3d or Embedding ("linear",
    "conv", "embedding"),
  - a projection of nn.MultiheadAttention: in_proj_weight, or q/k/v_proj_weight ("attention"),
  - an input or hidden weight of nn.RNN / LSTM / GRU: weight_ih_l*, weight_hh_l*, weight_hr_l*
    ("recurrent"),
  - any other floating-point parameter of two or more dimensions ("other") whose module a
    `filter_fn(module, name)` accepts, or that a per-layer setting names (by parameter or module).
A `filter_fn` also decides for the known kinds. Biases, norms and other 1-D tensors are stored
exactly as they are (deepzip.round_ and bias sharing are the ways to make them smaller).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from .errors import ConfigError
from .models.hf import is_conv1d
from .reparam import shared_names, sharing

T = TypeVar("T")

# The kind of a layer decides its paper defaults (8 bits for conv, 5 for fc).
_KINDS: tuple[tuple[type[nn.Module], str], ...] = (
    (nn.Linear, "linear"),
    (nn.Conv1d, "conv"),
    (nn.Conv2d, "conv"),
    (nn.Conv3d, "conv"),
    (nn.Embedding, "embedding"),
    (nn.MultiheadAttention, "attention"),
    (nn.RNNBase, "recurrent"),
)
KINDS = ("linear", "conv", "embedding", "attention", "recurrent", "other")

Filter = Callable[[nn.Module, str], bool]


def kind_of(module: nn.Module) -> str | None:
    """The kind of a module deepzip knows ("linear", "conv", …), or None. transformers' Conv1D
    (GPT-2's projections, a Linear stored transposed) is "linear".

    Examples:
        >>> kind_of(nn.Conv2d(1, 4, 3)), kind_of(nn.ReLU())
        ('conv', None)
    """
    for cls, kind in _KINDS:
        if isinstance(module, cls):
            return kind
    return "linear" if is_conv1d(module) else None


def _known_params(module: nn.Module, kind: str) -> list[str]:
    if kind == "attention":
        return [n for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
                if getattr(module, n, None) is not None]
    if kind == "recurrent":
        return [n for n in module._flat_weights_names if n.startswith("weight_")]
    return ["weight"]


def _matrices(module: nn.Module) -> list[str]:
    """The module's own floating-point parameters of two or more dimensions (shared ones included)."""
    own = [n for n, p in module._parameters.items() if p is not None and p.dim() >= 2 and p.is_floating_point()]
    return own + [n for n in shared_names(module) if sharing(module, n).assign.dim() >= 2]


@dataclass(frozen=True)
class Weight:
    """One selected weight: `layer` (its module's qualified name), `module`, `param` (the
    attribute, "weight", "in_proj_weight", …) and `kind`. `name` is the parameter's qualified name."""

    layer: str
    module: nn.Module
    param: str
    kind: str

    @property
    def name(self) -> str:
        return f"{self.layer}.{self.param}" if self.layer else self.param

    @property
    def value(self) -> torch.Tensor:
        return getattr(self.module, self.param)


def weights(model: nn.Module, filter_fn: Filter | None = None, named: Iterable[str] = ()) -> Iterator[Weight]:
    """Every weight deepzip compresses in `model`, each once (a module reachable by two names
    is visited under the first).

    Args:
        model: any module.
        filter_fn: `filter_fn(module, name) -> bool`: decides for known layers, and admits the
            matrices of modules deepzip does not know.
        named: parameter or module names that are selected whatever their module (the keys
            of a per-layer setting).

    Examples:
        >>> [w.name for w in weights(nn.LSTM(4, 8))]
        ['weight_ih_l0', 'weight_hh_l0']
    """
    named = set(named)
    for layer, module in _named_modules(model):
        kind = kind_of(module)
        params = _matrices(module)
        if not params:
            continue
        if kind is not None:
            chosen = [p for p in _known_params(module, kind) if p in params]
            if filter_fn is not None and not filter_fn(module, layer):
                chosen = []
        else:
            kind = "other"
            chosen = params if filter_fn is not None and filter_fn(module, layer) else []
        dot = f"{layer}." if layer else ""
        chosen += [p for p in params if p not in chosen and (layer in named or dot + p in named)]
        for p in sorted(chosen, key=params.index):
            yield Weight(layer, module, p, kind)


def _named_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """named_modules without torch's parametrization containers (their tensors are bookkeeping)."""
    for name, module in model.named_modules():
        if ".parametrizations." in f".{name}.":
            continue
        yield name, module


def unselected(model: nn.Module, filter_fn: Filter | None = None) -> list[Weight]:
    """The model's weight matrices (float, ≥ 2-D) that `weights` does not select.

    Examples:
        >>> [w.name for w in unselected(MyNet())]
        ['block.custom.kernel']
    """
    chosen = {(id(w.module), w.param) for w in weights(model, filter_fn)}
    return [Weight(layer, module, p, kind_of(module) or "other") for layer, module in _named_modules(model)
            for p in _matrices(module) if (id(module), p) not in chosen]


def per_layer(setting: T | Mapping[str, T] | None, weight: Weight) -> T | None:
    """Resolve a setting that is a single value or a dict keyed by parameter name, layer name,
    kind, or "default", for one weight.

    A parameter's own name wins over its layer's, which wins over its kind, which wins over
    "default"; a weight no key names gets None (it is left alone by that stage).

    Examples:
        >>> per_layer({"fc1": 0.95, "linear": 0.9}, w)   # w: fc2's weight
        0.9
    """
    return lookup(setting, weight.name, weight.layer, weight.kind)


def lookup(setting: T | Mapping[str, T] | None, name: str, layer: str, kind: str | None) -> T | None:
    """per_layer by the names themselves (for tensors that are not a selected weight)."""
    if not isinstance(setting, Mapping):
        return setting
    for key in (name, layer, kind, "default"):
        if key is not None and key in setting:
            return setting[key]
    return None


def setting_names(setting: Any) -> list[str]:
    """The keys of a per-layer setting that name parameters or layers (not kinds, not "default")."""
    if not isinstance(setting, Mapping):
        return []
    return [k for k in setting if k not in KINDS and k != "default"]


def select(model: nn.Module, setting: Any, what: str, filter_fn: Filter | None = None) -> list[Weight]:
    """The weights a setting applies to, after refusing keys that name nothing.

    Args:
        model: the model.
        setting: a value for all weights, or a dict by parameter / layer name, kind, "default".
        what: how to name the setting in an error ("the pruning setting").
        filter_fn: as in `weights`.

    Examples:
        >>> [w.name for w in select(model, {"fc1": 0.9}, "sparsity")]
        ['fc1.weight']
    """
    named = setting_names(setting)
    all_matrices = {n for layer, m in _named_modules(model) for n in
                    [*(f"{layer}.{p}" if layer else p for p in _matrices(m)), layer] if _matrices(m)}
    bad = [k for k in named if k not in all_matrices]
    if bad:
        known = sorted({w.layer or w.name for w in weights(model, filter_fn)})
        raise ConfigError(
            f"{what} names {', '.join(map(repr, bad))}, which is neither a layer or weight of this model "
            f"({', '.join(known[:12]) or 'none'}{' …' if len(known) > 12 else ''}) nor a kind "
            f"({', '.join(KINDS)}) nor 'default'.")
    return [w for w in weights(model, filter_fn, named) if per_layer(setting, w) is not None]


def check_keys(setting: Any, model: nn.Module, what: str) -> None:
    """Reject dict keys that name no weight, no layer and no kind, so a typo never silently does nothing.

    Examples:
        >>> check_keys({"fc9": 0.9}, model, "prune.sparsity")
        ConfigError: prune.sparsity names 'fc9', which is neither a layer or weight of this model (…) …
    """
    select(model, setting, what)
