"""The search's per-layer budgets: sparsity, codebook bits and units removed for every layer as
a function of one number, the estimated ratio, around a reference allocation (a recipe's or the
sensitivity scan's); and the recipe a candidate at those budgets runs."""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ..selection import per_layer, weights
from .recipe import PruneStage, Recipe, ShareStage
from .sensitivity import INDEX_BITS, allocate, weight_bits

MAX_LAYER_SPARSITY = 0.999


class Budgets:
    """Per-layer budgets (sparsity, codebook bits, units removed) as a function of one number,
    the estimated ratio R, around a reference allocation R₀ that either a recipe or the
    sensitivity scan supplies.

    Sparsity: every layer's kept fraction times one factor, found by bisection so that the size
    model reaches R (layers capped at 99.9 % stop scaling), so the layers keep the reference's
    proportions. Units: the fraction of rows kept follows the fraction of weights kept,
    u = 1 − t(1 − u₀), so live rows stay as dense as the reference has them. Bits: the
    reference's at and above R₀; below it each halving of R buys every layer one bit more (up
    to 8), so that the lowest R approaches a nearly lossless model instead of stalling on the
    reference's codebooks.
    """

    def __init__(self, kind: str, layers: list[tuple[str, int, float, int, float]]) -> None:
        self.kind = kind
        self.layers = layers  # (layer, weights, reference sparsity, reference bits, reference units)
        self.dense = sum(32 * n for _, n, _, _, _ in layers)
        self.reference = self._ratio(1.0, {name: b for name, _, _, b, _ in layers})

    @classmethod
    def from_recipe(cls, recipe: Recipe, model: torch.nn.Module) -> Budgets:
        p, s = recipe.prune, recipe.share
        bits = s.bits if s is not None and s.bits is not None else {"conv": 8, "linear": 5}
        return cls("recipe", [(w.layer, w.value.numel(), per_layer(p.sparsity, w) or 0.0, per_layer(bits, w) or 32,
                               (per_layer(p.units, w) or 0.0) if p.units is not None else 0.0) for w in weights(model)])

    @classmethod
    def from_scan(cls, result: dict[str, Any], max_drop: float) -> Budgets:
        """The reference: the smallest estimated file whose summed per-layer losses before
        retraining stay within max_drop (sensitivity.allocate, an exact knapsack), with the
        fewest bits per layer that lose at most max_drop / 2 alone."""
        choice = allocate(result, max_drop=max_drop, bits_drop=max_drop / 2, bits_per_index=INDEX_BITS)
        return cls("sensitivity", [(name, row["weights"], choice["sparsity"][name], choice["bits"][name], 0.0)
                                   for name, row in result["layers"].items()])

    def _bits(self, ratio: float) -> dict[str, int]:
        extra = max(0, math.ceil(math.log2(self.reference / ratio) - 1e-9)) if ratio < self.reference else 0
        return {name: b if b >= 32 else min(8, b + extra) for name, _, _, b, _ in self.layers}

    def _sparsities(self, factor: float) -> dict[str, float]:
        return {name: min(MAX_LAYER_SPARSITY, max(0.0, 1.0 - (1.0 - s) * factor)) for name, _, s, _, _ in self.layers}

    def _ratio(self, factor: float, bits: dict[str, int]) -> float:
        s = self._sparsities(factor)
        size = sum(weight_bits(n, s[name], bits[name], INDEX_BITS) if bits[name] < 32 else 32 * n * (1 - s[name])
                   for name, n, _, _, _ in self.layers)
        return self.dense / max(size, 1e-9)

    @property
    def top(self) -> float:
        return self._ratio(0.0, self._bits(self.reference))

    def at(self, ratio: float) -> dict[str, Any]:
        bits = self._bits(ratio)
        low, high = 0.0, 1.0  # the factor on kept fractions; the ratio falls as it grows
        while self._ratio(high, bits) > ratio and high < 1e6:
            high *= 2
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if self._ratio(mid, bits) >= ratio else (low, mid)
        sparsity = {k: round(v, 6) for k, v in self._sparsities(low).items() if v > 0}
        units = {}
        for name, _, _, _, u0 in self.layers:
            u = 1 - low * (1 - u0) if u0 > 0 else 0.0
            if u > 0:
                units[name] = round(min(u, MAX_LAYER_SPARSITY), 6)
        return {"sparsity": sparsity or {"default": 0.0}, "bits": bits, "units": units or None,
                "estimated_ratio": round(self._ratio(low, bits), 2)}


def candidate_recipe(recipe: Recipe, budgets: dict[str, Any]) -> Recipe:
    """The recipe a candidate runs: the base recipe's stages with the budgets' per-layer
    sparsity, units and bits (a missing prune or share stage gets the defaults).

    Args:
        recipe: the search's recipe.
        budgets: what `Budgets.at` gave: {"sparsity", "bits", "units"}.

    Examples:
        >>> candidate_recipe(recipe, Budgets.from_recipe(recipe, model).at(120.0)).prune.sparsity
    """
    prune = recipe.prune or PruneStage()
    share = recipe.share or ShareStage()
    bits = {k: int(v) for k, v in budgets["bits"].items() if v < 32}
    return recipe.replace(
        prune=dataclasses.replace(prune, sparsity=budgets["sparsity"], quality=None, scope="layer",
                                  units=budgets["units"]),
        share=dataclasses.replace(share, bits=bits or None))
