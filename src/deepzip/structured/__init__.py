"""Structured pruning that makes a model physically smaller: channel groups found by tracing,
importance criteria, selection (rank, global, knapsack), and the surgery itself.

    dz.prune_channels_(model, 0.5, importance="apoz", example_inputs=x, data=train_set)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from ..data import Dataset
from ..data.loader import Batch
from ..errors import ConfigError
from ..reparam import masked_names, shared_names
from .graph import ChannelGroup, Graph, trace
from .importance import CRITERIA, Score, scores
from .select import SELECTS, check_channels, choose, clusters, costs
from .surgery import remove_

__all__ = [
    "CRITERIA",
    "ChannelGroup",
    "Graph",
    "SELECTS",
    "check_channels",
    "choose",
    "clusters",
    "costs",
    "prune_channels_",
    "remove_",
    "scores",
    "trace",
]


def prune_channels_(
    model: nn.Module,
    amount: float | int | Mapping[str, float | int] | None = None,
    *,
    example_inputs: Any,
    importance: str | Score = "l1",
    data: Dataset | Iterable[Batch] | None = None,
    select: str = "rank",
    budget: Mapping[str, float] | None = None,
    ignore: Iterable[str] = (),
    round_to: int = 1,
) -> dict[str, tuple[int, int]]:
    """Remove output channels of convolutions and units of Linear layers for real, in place.

    Everything coupled to a removed channel goes with it (batch norm after it, the inputs of
    every consumer, both sides of a residual add, offsets in a concatenation, a depthwise
    convolution's channel, the features a flatten makes of it); the coupling is found by tracing
    the model on `example_inputs`, so user modules work as the registry's do. What deepzip cannot
    follow is left untouched (see `deepzip.structured.graph`).

    Args:
        model: a plain model (prune channels before pruning weights or sharing them).
        amount: how much to remove: a fraction or a count; per layer (a dict by layer name /
            kind / "default") with select="rank".
        example_inputs: a batch of inputs (or a tuple of them) to trace shapes with.
        importance: "l1", "l2", "apoz", "taylor", or `score(module, name) -> per-channel tensor`.
        data: batches for "apoz" and "taylor".
        select: "rank" (per layer), "global" (one ranking) or "knapsack" (under `budget`).
        budget: {"params": f} or {"flops": f} for select="knapsack".
        ignore: layer names whose output channels are kept.
        round_to: with select "rank" or "global", every layer keeps a multiple of this many
            channels, the nearest to what `amount` asks (8 or 16 suit CPU kernels; a layer no
            wider than it keeps all its channels).

    Returns {layer: (output channels before, after)} for every layer it changed.

    Examples:
        >>> dz.prune_channels_(model, 0.5, example_inputs=torch.randn(1, 1, 32, 32))
        {'stem.0': (16, 8), ...}
    """
    structured = [n for n, m in model.named_modules() if masked_names(m) or shared_names(m)]
    if structured:
        raise ConfigError(
            f"{structured[0]} is already pruned or shared; remove channels first, then prune weights "
            f"and share them (or deepzip.strip_ the model)."
        )
    check_channels(amount, select, budget, round_to)
    graph = trace(model, example_inputs)
    ignore = set(ignore)
    unknown = ignore - set(graph.modules)
    if unknown:
        raise ConfigError(f"ignore names {', '.join(sorted(unknown))}, which this model does not have.")
    if ignore:
        graph.groups = [g for g in graph.groups if not ignore & set(g.producers)]
        renumber = {g.id: i for i, g in enumerate(graph.groups)}
        for g in graph.groups:
            g.id = renumber[g.id]
        graph.sites = {node: [renumber.get(i, -1) for i in ids] for node, ids in graph.sites.items()}
    values = scores(graph, importance, data)
    removed = choose(graph, values, amount, select, budget, round_to)
    before = {name: _width(graph.modules[name]) for name in {p for g in graph.groups for p in g.producers}}
    remove_(model, graph, removed)
    modules = dict(model.named_modules())
    return {name: (n, _width(modules[name])) for name, n in before.items() if _width(modules[name]) != n}


def _width(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels
