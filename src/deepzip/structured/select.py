"""Which channel groups to remove, given their importance: per layer, globally, or by knapsack.

Groups are gathered into *clusters* by the layers that produce them: a plain conv's channels
form one cluster; the convolutions joined by a residual add form one cluster together, since
their channels go in pairs. An amount applies to a cluster (by the name or kind of its first
layer), and at least one channel of every cluster stays.

  rank      in every cluster, the `amount` least important groups (torch's rule: a float is a
            fraction, an int a count)
  global    one ranking across clusters, each group's importance divided by its cluster's mean
            (so layers of different scales compete fairly), the `amount` fraction of all groups
  knapsack  keep the subset of greatest summed importance whose parameters, or FLOPs, stay
            within `budget` × the model's, where a group's importance is its cluster-normalised
            score times what it costs: a score says how much a channel matters among its layer's,
            the cost how much of the network it is (without it, a knapsack drops nearly every
            channel of the late, wide layers, whose channels cost the most, and the network
            collapses: 19–29 % accuracy in bench/structured.py's first run). A 0/1 knapsack by
            dynamic programming over costs in units of at most 1/4000 of the total; per-group
            costs are first-order, so the result is counted exactly and the capacity tightened
            until the budget holds (it is never exceeded)
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np
from torch.nn.modules.batchnorm import _BatchNorm

from .. import knapsack
from ..checks import check, check_each, is_amount, number, whole
from ..errors import ConfigError
from ..selection import kind_of
from .graph import ChannelGroup, Graph

SELECTS = ("rank", "global", "knapsack")
CHANNELS_RULE = "a fraction in [0, 1] (or a whole count of channels; a layer keeps one)"


def check_channels(amount: Any, select: str, budget: Any, round_to: Any) -> None:
    """Channel surgery's settings (prune_channels_ and the recipe's channels stage both ask this):
    an amount below 1 or a count (per layer with select "rank"), a known select, a budget
    {params: f} or {flops: f} with f in (0, 1] for the knapsack, and round_to a whole number ≥ 1
    (1 with the knapsack: its budget is exact).

    Examples:
        >>> check_channels(0.5, "rank", None, 8)
    """
    check(select in SELECTS, "select", " or ".join(map(repr, SELECTS)), select)
    check_each(amount, "amount", CHANNELS_RULE, is_amount)
    check(select == "knapsack" or amount is not None, "amount", "set unless select is knapsack", amount)
    check(select != "global" or not isinstance(amount, Mapping), "amount", "one value with select global", amount)
    check(whole(1)(round_to), "round_to", "a whole number ≥ 1", round_to)
    check(round_to == 1 or select != "knapsack", "round_to", "1 with select knapsack (its budget is exact)", round_to)
    if select == "knapsack":
        check(isinstance(budget, Mapping) and len(budget) == 1 and set(budget) <= {"params", "flops"}, "budget",
              "{params: f} or {flops: f} with select knapsack", budget)
        for key, value in budget.items():
            check(number(0, 1, above=True)(value), f"budget.{key}", "a fraction in (0, 1]", value)
KNAPSACK_UNITS = 4000


def clusters(graph: Graph) -> dict[tuple[str, ...], list[ChannelGroup]]:
    """Groups by the tuple of layers that produce them."""
    out: dict[tuple[str, ...], list[ChannelGroup]] = defaultdict(list)
    for g in graph.groups:
        out[tuple(g.producers)].append(g)
    return dict(out)


def costs(graph: Graph, what: str) -> tuple[np.ndarray, float]:
    """(cost of each group, cost of the whole model's prunable layers): parameters or FLOPs (MACs)."""
    per = np.zeros(len(graph.groups))
    for g in graph.groups:
        for m in g.members:
            module = graph.modules[m.module]
            if m.role == "norm":
                per[g.id] += 2 * len(m.indices)
                continue
            w = module.weight
            row, col = w[0].numel(), w.numel() // w.shape[1] if w.dim() > 1 else 1
            unit = (row + (module.bias is not None)) if m.role == "out" else col
            if what == "flops":
                spatial = math.prod(graph.shapes.get(m.module, (1, 1))[2:])
                unit = unit * spatial
            per[g.id] += unit * len(m.indices)
    total = 0.0
    for name, module in graph.modules.items():
        if name not in graph.shapes:
            continue
        if kind_of(module) in ("linear", "conv"):
            size = module.weight.numel() + (module.bias.numel() if module.bias is not None else 0)
            total += size * (math.prod(graph.shapes[name][2:]) if what == "flops" else 1)
        elif isinstance(module, _BatchNorm) and what == "params":
            total += 2 * module.num_features
    return per, total


def kept_cost(graph: Graph, removed: list[ChannelGroup], what: str) -> float:
    """The parameters (or FLOPs) of the prunable layers once `removed` are cut, counted exactly
    (a weight where a removed row meets a removed column is counted once, unlike the per-group
    costs, which are first-order)."""
    drop: dict[tuple[str, str], set[int]] = defaultdict(set)
    for g in removed:
        for m in g.members:
            drop[(m.module, m.role)].update(m.indices)
    total = 0.0
    for name, module in graph.modules.items():
        if name not in graph.shapes:
            continue
        if kind_of(module) in ("linear", "conv"):
            w = module.weight
            rows = w.shape[0] - len(drop[(name, "out")])
            cols = w.shape[1] - len(drop[(name, "in")])
            size = rows * cols * (w[0, 0].numel() if w.dim() > 2 else 1) + (rows if module.bias is not None else 0)
            total += size * (math.prod(graph.shapes[name][2:]) if what == "flops" else 1)
        elif isinstance(module, _BatchNorm) and what == "params":
            total += 2 * (module.num_features - len(drop[(name, "norm")]))
    return total


def _amount(amount: Any, cluster: tuple[str, ...], graph: Graph, n: int) -> int:
    if isinstance(amount, Mapping):
        first = cluster[0]
        kind = kind_of(graph.modules[first])
        value = next((amount[k] for k in (first, kind, "default") if k in amount), 0)
    else:
        value = amount
    count = value if isinstance(value, int) else round(value * n)
    return min(count, n - 1)


def rounded_keep(n: int, keep: int, round_to: int) -> int:
    """`keep` of `n` channels moved to the nearest multiple of `round_to` that is at least
    `round_to` and at most n (a layer no wider than `round_to` keeps all its channels)."""
    if round_to <= 1:
        return keep
    if n <= round_to:
        return n
    nearest = max(round_to, round_to * math.floor(keep / round_to + 0.5))
    return nearest if nearest <= n else round_to * (n // round_to)  # never wider than it is


def choose(graph: Graph, importance: np.ndarray, amount: Any = None, select: str = "rank",
           budget: Mapping[str, float] | None = None, round_to: int = 1) -> list[ChannelGroup]:
    """The groups to remove.

    Args:
        graph: the model's channel groups.
        importance: one value per group (higher = keep).
        amount: for rank (per cluster) and global (of all groups): a fraction or a count; for
            rank also a dict by layer name / kind / "default".
        select: "rank", "global" or "knapsack".
        budget: for knapsack, {"params": f} or {"flops": f}: keep at most f of the model's total.
        round_to: with rank and global, each cluster keeps a multiple of this many channels (the
            nearest to what the amount asks): CPU kernels vectorise over 8 or 16 channels, and a
            layer of 45 runs no faster than one of 48, sometimes slower than the 64 it came from.

    Examples:
        >>> [g.producers for g in choose(graph, scores(graph, "l1"), 0.5)][:1]
        [['stem.0']]
    """
    check_channels(amount, select, budget, round_to)
    groups = clusters(graph)
    if select == "rank":
        counts = {key: _amount(amount, key, graph, len(members)) for key, members in groups.items()}
        return _least(groups, importance, counts, round_to)
    normalised = np.array(importance, dtype=np.float64)
    for members in groups.values():
        ids = [g.id for g in members]
        normalised[ids] = normalised[ids] / max(float(np.mean(normalised[ids])), 1e-12)
    if select == "global":
        total = sum(len(m) for m in groups.values())
        count = amount if isinstance(amount, int) and not isinstance(amount, bool) else round(float(amount) * total)
        left = {key: len(m) for key, m in groups.items()}
        cluster_of = {g.id: key for key, m in groups.items() for g in m}
        out = []
        for g in sorted(graph.groups, key=lambda g: (normalised[g.id], g.id)):
            if len(out) >= count:
                break
            if left[cluster_of[g.id]] > 1:
                left[cluster_of[g.id]] -= 1
                out.append(g)
        if round_to == 1:
            return out
        return _least(groups, normalised, {key: len(m) - left[key] for key, m in groups.items()}, round_to)
    return _knapsack(graph, normalised, groups, budget)


def _least(groups: dict, importance: np.ndarray, counts: dict, round_to: int) -> list[ChannelGroup]:
    """In every cluster, its `counts[key]` least important groups (rounded so that what stays is
    a multiple of `round_to`)."""
    out = []
    for key, members in groups.items():
        n = len(members)
        k = n - rounded_keep(n, n - counts[key], round_to)
        out += sorted(members, key=lambda g: (importance[g.id], g.id))[:k]
    return out


def _knapsack(graph: Graph, value: np.ndarray, groups: dict, budget: Mapping[str, float] | None) -> list[ChannelGroup]:
    what, fraction = next(iter(budget.items()))
    cost, total = costs(graph, what)
    value = value * cost  # a channel's share of its layer's importance, weighted by its share of the network
    fixed = total - cost.sum()  # what no group carries stays whatever is removed
    capacity = fraction * total - fixed
    # Each cluster keeps its most important group whatever happens: a layer never loses all of it.
    keep = {max(m, key=lambda g: (value[g.id], -g.id)).id for m in groups.values()}
    capacity -= sum(cost[i] for i in keep)
    if capacity < 0:
        raise ConfigError(f"a {what} budget of {fraction} cannot be met: one channel per layer already costs more.")
    rest = [g for g in graph.groups if g.id not in keep]
    unit = max(1.0, cost[[g.id for g in rest]].sum() / KNAPSACK_UNITS) if rest else 1.0
    units = [math.ceil(cost[g.id] / unit) for g in rest]
    # Per-group costs are first-order: where a removed row of one layer meets a removed column
    # of the next, the weight is counted twice. So solve, count exactly, and tighten until it fits.
    cap = int(capacity // unit)
    for _ in range(60):
        removed = _solve(rest, units, value, cap)
        over = kept_cost(graph, removed, what) - fraction * total
        if over <= 1e-9 * total:
            return removed
        cap = max(0, cap - max(1, math.ceil(over / unit / 2)))
    raise ConfigError(f"a {what} budget of {fraction} could not be met exactly; lower it a little.")


def _solve(rest: list[ChannelGroup], units: list[int], value: np.ndarray, cap: int) -> list[ChannelGroup]:
    """The 0/1 knapsack over `rest` in integer units: the groups left out of the most valuable
    set that fits (each group's options: leave it, or keep it at its cost for its value)."""
    options = [[(0, 0.0), (c, -float(value[g.id]))] for g, c in zip(rest, units)]
    _, picks = knapsack.solve(options, cap)
    return [g for g, take in zip(rest, knapsack.backtrack(options, picks, cap)) if not take]
