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

from ..checks import AMOUNT, check, check_each, is_amount, number, require_finite
from ..errors import ConfigError
from ..reparam import get_mask, is_shared, reattach_masks_, set_mask_
from ..selection import Filter, Weight, per_layer, select, unselected, weights
from .criteria import Criterion, Magnitude

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

    Examples:
        >>> prune_(model, MagnitudePruning(sparsity={"fc1": 0.95, "default": 0.8}))
    """

    quality: PerLayer = None
    sparsity: PerLayer = None
    scope: Literal["layer", "global"] = "layer"

    def __post_init__(self) -> None:
        check_each(self.sparsity, "sparsity", AMOUNT, is_amount)
        check_each(self.quality, "quality", "a finite number ≥ 0 (× the layer's std)", number(0))
        check(self.scope in ("layer", "global"), "scope", "'layer' or 'global'", self.scope)
        check(self.scope == "layer" or (self.sparsity is not None and not isinstance(self.sparsity, Mapping)),
              "scope", "layer when sparsity is per layer (global takes one sparsity for the whole model)", self.scope)
        check(self.sparsity is None or self.quality is None, "quality", "absent when sparsity is given", self.quality)
        if self.quality is None and self.sparsity is None:
            raise ConfigError("MagnitudePruning needs exactly one of quality= or sparsity=.")


def amount_of(sparsity: float, numel: int) -> int:
    """How many of `numel` items an amount means, by torch's rule: an int is a count, a float a fraction.

    Examples:
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

    Examples:
        >>> keep_largest(torch.tensor([0.3, -0.1, 0.2]), 1)
        tensor([ True, False,  True])
    """
    if prune_count <= 0:
        return torch.ones(weight.shape, dtype=torch.bool, device=weight.device)
    w = weight.detach().contiguous()  # C order, whatever the tensor's layout
    # The same mask as a stable argsort (everything below the cut, then the earliest ties at it),
    # without its int64 index of every weight (0.8 GB for a 100 M-weight layer): the cut is the
    # prune_count-th smallest magnitude, found by an in-place partition of one float copy.
    magnitude = w.abs().reshape(-1).cpu().numpy()
    magnitude.partition(prune_count - 1)
    cut = float(magnitude[prune_count - 1])
    del magnitude
    mask = (w > cut) | (w < -cut)
    ties = ((w == cut) | (w == -cut)).reshape(-1).nonzero().flatten()
    below = w.numel() - int(mask.sum()) - ties.numel()
    mask.view(-1)[ties[prune_count - below:]] = True
    return mask


def prune_(
    model: nn.Module,
    config: MagnitudePruning | None = None,
    *,
    sparsity: PerLayer = None,
    quality: PerLayer = None,
    scope: Literal["layer", "global"] = "layer",
    filter_fn: Filter | None = None,
    criterion: Criterion | None = None,
) -> None:
    """Prune `model` in place: attach masks to the weights of its compressible layers.

    Masks only ever shrink, so iterative pruning is a sequence of calls with rising targets.

    Args:
        model: the model, changed in place.
        config: a MagnitudePruning, or give the keywords instead.
        sparsity: as in MagnitudePruning.
        quality: as in MagnitudePruning.
        scope: as in MagnitudePruning.
        filter_fn: `filter_fn(module, name) -> bool` selects layers.
        criterion: what weights are ranked by (prune/criteria.py): Magnitude (None) or
            ActivationWeighted or one's own; with sparsity only (quality is |w| against a std).

    Examples:
        >>> dz.prune_(model, sparsity=0.9)
        >>> dz.prune_(model, quality={"fc1": 0.8, "fc2": 1.0})
    """
    if config is None:
        config = MagnitudePruning(quality=quality, sparsity=sparsity, scope=scope)
    elif sparsity is not None or quality is not None:
        raise ConfigError("pass either a MagnitudePruning config or sparsity=/quality=, not both.")
    if criterion is not None and config.quality is not None:
        raise ConfigError("a pruning criterion ranks weights for a sparsity; quality thresholds |w| itself.")
    criterion = criterion or Magnitude()
    setting = config.quality if config.quality is not None else config.sparsity
    reattach_masks_(model)
    layers = select(model, setting, "the pruning setting", filter_fn)
    shared = [w.name for w in layers if is_shared(w.module, w.param)]
    if shared:
        raise ConfigError(f"{', '.join(shared)} already share weights; prune before share_weights_, not after.")
    for w in layers:
        require_finite(w.value, w.name, "prune")
    if config.scope == "global":
        _prune_global(layers, config.sparsity, criterion)
        return
    for w in layers:
        weight = w.value.detach()
        old = get_mask(w.module, w.param)
        if config.quality is not None:
            mask = weight.abs() > per_layer(config.quality, w) * weight.float().std()
        else:
            mask = keep_largest(_scores(criterion, w), amount_of(per_layer(config.sparsity, w), weight.numel()))
        set_mask_(w.module, w.param, mask if old is None else mask & old)


def _scores(criterion: Criterion, w: Weight) -> torch.Tensor:
    """A criterion's scores for one layer, checked (its shape, finite, ≥ 0), with the weights
    already pruned scored 0: they are the first counted toward the target, whatever a
    criterion would make of a zero."""
    s = criterion.scores(w)
    if not isinstance(s, torch.Tensor) or tuple(s.shape) != tuple(w.value.shape):
        raise ConfigError(f"the {getattr(criterion, 'name', 'pruning')} criterion must score each weight of "
                          f"{w.name} (shape {tuple(w.value.shape)}).")
    if not bool(torch.isfinite(s).all()) or bool((s < 0).any()):
        raise ConfigError(f"the {getattr(criterion, 'name', 'pruning')} criterion gave {w.name} scores that are "
                          f"negative or not finite.")
    old = get_mask(w.module, w.param)
    return s.detach() if old is None else s.detach() * old


def _prune_global(layers: list[Weight], sparsity: float, criterion: Criterion) -> None:
    if not layers:
        return
    scored = [_scores(criterion, w).contiguous() for w in layers]
    magnitudes = torch.cat([s.flatten().float() for s in scored])
    count = amount_of(sparsity, magnitudes.numel())
    if count == 0:
        return
    # The count-th smallest magnitude, found once; ties at the cut are pruned layer by layer in order.
    cut = torch.kthvalue(magnitudes, count).values
    below = int((magnitudes < cut).sum())
    at_cut_budget = count - below
    for w, magnitude in zip(layers, scored):  # C order (contiguous): view(-1) below needs it
        mask = magnitude > cut
        ties = (magnitude == cut).flatten().nonzero().flatten()
        keep_ties = ties[at_cut_budget:]
        at_cut_budget = max(0, at_cut_budget - ties.numel())
        mask.view(-1)[keep_ties] = True
        old = get_mask(w.module, w.param)
        set_mask_(w.module, w.param, mask if old is None else mask & old)


def sparsity_of(model: nn.Module, filter_fn: Filter | None = None) -> dict[str, float]:
    """Fraction of exactly-zero weights per weight matrix, plus "total" over all of them.

    Every floating-point parameter of two or more dimensions counts, whether deepzip compresses
    it or not (those it does not select are listed by `deepzip.selection.unselected`), so the
    total never overstates what was pruned. A layer's single "weight" is keyed by the layer's
    name ("fc1"), any other parameter by its own ("lstm.weight_hh_l0").

    Args:
        model: any model; shared and masked weights count by their current values.
        filter_fn: only the weights `deepzip.selection.weights` selects with this filter.

    Examples:
        >>> dz.sparsity_of(model)["total"]
        0.92
    """
    out: dict[str, float] = {}
    zeros = total = 0
    chosen = list(weights(model, filter_fn)) + (unselected(model) if filter_fn is None else [])
    for key, value in ((w.layer if w.param == "weight" and w.layer else w.name, w.value) for w in chosen):
        w = value.detach()
        z = int((w == 0).sum())
        out[key] = z / max(1, w.numel())
        zeros += z
        total += w.numel()
    out["total"] = zeros / total if total else 0.0
    return out
