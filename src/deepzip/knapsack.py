"""The multiple-choice knapsack, exact, by dynamic programming over integer weights.

Two stages pick subsets under a budget with it: the sensitivity allocation (one sparsity per
layer, each with a drop in grid steps and a size in bits: the fewest bits within a summed drop)
and channel selection by knapsack (each channel group kept or left, a cost in integer units and
a value: the most value within a cost, as options "leave: (0, 0)", "take: (units, −value)").
Ties go to the earlier option, and a later one replaces it only when strictly better, so a
solution never depends on floating-point noise between equal candidates.
"""
from __future__ import annotations

import numpy as np


def solve(options: list[list[tuple[int, float]]], cap: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The least summed cost of choosing one option per item with summed weight ≤ k, for every
    k in 0 … cap, and the choice behind each (for `backtrack`).

    Args:
        options: per item, its options as (weight ≥ 0, an int; cost); an option heavier than
            `cap` is never chosen.
        cap: the largest summed weight.

    Returns (best, picks): best[k] the least cost within weight k (inf if none), picks[i][k]
    the option item i takes in it.

    Examples:
        >>> best, picks = solve([[(0, 5.0), (2, 1.0)], [(0, 3.0), (1, 2.0)]], 3)
        >>> best.tolist(), backtrack([[(0, 5.0), (2, 1.0)], [(0, 3.0), (1, 2.0)]], picks, 3)
        ([8.0, 7.0, 4.0, 3.0], [1, 1])
    """
    best = np.zeros(cap + 1)
    picks = []
    for opts in options:
        nxt = np.full(cap + 1, np.inf)
        pick = np.zeros(cap + 1, dtype=np.min_scalar_type(max(len(opts) - 1, 0)))
        for i, (weight, cost) in enumerate(opts):
            if weight > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[weight:] = best[:cap + 1 - weight] + cost
            better = cand < nxt
            nxt[better], pick[better] = cand[better], i
        best = nxt
        picks.append(pick)
    return best, picks


def backtrack(options: list[list[tuple[int, float]]], picks: list[np.ndarray], k: int) -> list[int]:
    """The option each item takes in `solve`'s best solution within weight k (which must be a
    weight `solve` found a solution for).

    Examples:
        >>> backtrack([[(0, 5.0), (2, 1.0)]], solve([[(0, 5.0), (2, 1.0)]], 2)[1], 2)
        [1]
    """
    if picks and not 0 <= k < len(picks[0]):
        raise ValueError(f"no solution within weight {k}")
    chosen = []
    for opts, pick in zip(reversed(options), reversed(picks)):
        i = int(pick[k])
        chosen.append(i)
        k -= opts[i][0]
        if k < 0:
            raise ValueError("backtrack was asked for a weight with no solution")
    return chosen[::-1]
