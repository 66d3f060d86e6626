"""Magnitude pruning: the paper's quality × std threshold, or a sparsity target.

Masks only ever shrink: a weight pruned once stays pruned, so iterative prune → retrain → prune
is a sequence of calls to `prune_` with rising targets.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..errors import ConfigError
from ..reparam import get_mask, is_shared, reattach_masks_, set_mask_
from ..selection import Filter, check_keys, compressible, per_layer

PerLayer = float | Mapping[str, float] | None


@dataclass(frozen=True)
class MagnitudePruning:
    """Prune the smallest-magnitude weights of every Linear/Conv/Embedding layer.

    Give exactly one of `quality` or `sparsity`; either may be a float for all layers or a dict
    keyed by layer name, kind ("conv", "linear", "embedding") or "default"; layers a dict does
    not cover are left alone.

    Args:
        quality: threshold = quality × std of the layer's weights (Han et al.; std over the whole
            tensor, zeros included, so repeating a step converges instead of pruning on).
        sparsity: fraction of each layer's weights to prune (a float), or a count (an int ≥ 1).
        scope: "layer", or "global" to rank all selected layers' weights together (sparsity only).

    Example:
        >>> prune_(model, MagnitudePruning(sparsity={"fc1": 0.95, "default": 0.8}))
    """

    quality: PerLayer = None
    sparsity: PerLayer = None
    scope: Literal["layer", "global"] = "layer"

    def __post_init__(self) -> None:
        if (self.quality is None) == (self.sparsity is None):
            raise ConfigError("MagnitudePruning needs exactly one of quality= or sparsity=.")
        if self.scope not in ("layer", "global"):
            raise ConfigError(f"scope must be 'layer' or 'global', not {self.scope!r}.")
        if self.scope == "global" and (self.sparsity is None or isinstance(self.sparsity, Mapping)):
            raise ConfigError("scope='global' needs a single sparsity value.")
        for value in _values(self.quality):
            if not value >= 0:
                raise ConfigError(f"quality must be ≥ 0, not {value}.")
        for value in _values(self.sparsity):
            count = isinstance(value, int) and not isinstance(value, bool)
            if isinstance(value, bool) or not (0 <= value <= 1 or (count and value >= 0)):
                raise ConfigError(f"sparsity must be a fraction in [0, 1] (float) or a count of weights (int), "
                                  f"not {value!r}.")


def _values(setting: PerLayer) -> list[float]:
    if setting is None:
        return []
    return list(setting.values()) if isinstance(setting, Mapping) else [setting]


def amount_of(sparsity: float, numel: int) -> int:
    """How many of `numel` items an amount means, by torch's rule: an int is a count, a float a fraction.

    Example:
        >>> amount_of(0.25, 10), amount_of(3, 10)
        (2, 3)
    """
    if isinstance(sparsity, int) and not isinstance(sparsity, bool):
        if sparsity > numel:
            raise ConfigError(f"cannot prune {sparsity} weights of a layer that has {numel}.")
        return sparsity
    return round(float(sparsity) * numel)


def keep_largest(weight: torch.Tensor, prune_count: int) -> torch.Tensor:
    """Mask keeping all but the `prune_count` smallest |w|; ties broken by position, so exact.

    Example:
        >>> keep_largest(torch.tensor([0.3, -0.1, 0.2]), 1)
        tensor([ True, False,  True])
    """
    mask = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    if prune_count > 0:
        order = torch.argsort(weight.detach().abs().flatten(), stable=True)
        mask[order[:prune_count]] = False
    return mask.view_as(weight)


def prune_(
    model: nn.Module,
    config: MagnitudePruning | None = None,
    *,
    sparsity: PerLayer = None,
    quality: PerLayer = None,
    scope: Literal["layer", "global"] = "layer",
    filter_fn: Filter | None = None,
) -> None:
    """Prune `model` in place: attach masks to the weights of its compressible layers.

    Masks only ever shrink, so iterative pruning is a sequence of calls with rising targets.

    Args:
        model: the model, changed in place.
        config: a MagnitudePruning, or give the keywords instead.
        sparsity, quality, scope: as in MagnitudePruning.
        filter_fn: `filter_fn(module, name) -> bool` selects layers.

    Example:
        >>> dz.prune_(model, sparsity=0.9)
        >>> dz.prune_(model, quality={"fc1": 0.8, "fc2": 1.0})
    """
    if config is None:
        config = MagnitudePruning(quality=quality, sparsity=sparsity, scope=scope)
    elif sparsity is not None or quality is not None:
        raise ConfigError("pass either a MagnitudePruning config or sparsity=/quality=, not both.")
    setting = config.quality if config.quality is not None else config.sparsity
    check_keys(setting, model, "the pruning setting")
    reattach_masks_(model)
    layers = [(name, module, kind) for name, module, kind in compressible(model, filter_fn)
              if per_layer(setting, name, kind, "pruning") is not None]
    shared = [name for name, module, _ in layers if is_shared(module)]
    if shared:
        raise ConfigError(f"{', '.join(shared)} already share weights; prune before share_weights_, not after.")
    if config.scope == "global":
        _prune_global(layers, config.sparsity)
        return
    for name, module, kind in layers:
        weight = module.weight.detach()
        old = get_mask(module, "weight")
        if config.quality is not None:
            threshold = per_layer(config.quality, name, kind, "quality") * weight.float().std()
            mask = weight.abs() > threshold
        else:
            mask = keep_largest(weight, amount_of(per_layer(config.sparsity, name, kind, "sparsity"), weight.numel()))
        set_mask_(module, "weight", mask if old is None else mask & old)


def _prune_global(layers: list[tuple[str, nn.Module, str]], sparsity: float) -> None:
    if not layers:
        return
    magnitudes = torch.cat([m.weight.detach().abs().flatten().float() for _, m, _ in layers])
    count = amount_of(sparsity, magnitudes.numel())
    if count == 0:
        return
    # The count-th smallest magnitude, found once; ties at the cut are pruned layer by layer in order.
    cut = torch.kthvalue(magnitudes, count).values
    below = int((magnitudes < cut).sum())
    at_cut_budget = count - below
    for _, module, _ in layers:
        w = module.weight.detach().abs().contiguous()  # a channels-last conv weight: view(-1) below needs C order
        mask = w > cut
        ties = (w == cut).flatten().nonzero().flatten()
        keep_ties = ties[at_cut_budget:]
        at_cut_budget = max(0, at_cut_budget - ties.numel())
        mask.view(-1)[keep_ties] = True
        old = get_mask(module, "weight")
        set_mask_(module, "weight", mask if old is None else mask & old)


def sparsity_of(model: nn.Module, filter_fn: Filter | None = None) -> dict[str, float]:
    """Fraction of exactly-zero weights per compressible layer, plus "total".

    Args:
        model: any model; shared and masked weights count by their current values.
        filter_fn: `filter_fn(module, name) -> bool` selects layers.

    Example:
        >>> dz.sparsity_of(model)["total"]
        0.92
    """
    out: dict[str, float] = {}
    zeros = total = 0
    for name, module, _ in compressible(model, filter_fn):
        w = module.weight.detach()
        z = int((w == 0).sum())
        out[name] = z / w.numel()
        zeros += z
        total += w.numel()
    out["total"] = zeros / total if total else 0.0
    return out

