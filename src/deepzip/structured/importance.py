"""How much each channel group matters: criteria that score groups, higher = keep.

  l1, l2   the norm of the group's producer filters (Li et al. 2017), summed over producers
  apoz     1 − the Average Percentage of Zeros of the group's post-ReLU activations over `data`
           (Hu et al. 2016): a channel that is almost always zero carries little
  taylor   |activation × gradient| of the producers' outputs, summed over positions and
           averaged over samples (Molchanov et al. 2017): the first-order change of the loss if
           the channel were zeroed
  a callable  `score(module, name) -> tensor of one value per output channel`, summed per group
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from ..data import Dataset
from ..data.loader import Batch, batches
from ..errors import ConfigError
from .graph import Graph

CRITERIA = ("l1", "l2", "apoz", "taylor")
Score = Callable[[nn.Module, str], torch.Tensor]


def scores(graph: Graph, criterion: str | Score, data: Dataset | Iterable[Batch] | None = None,
           max_batches: int = 20) -> np.ndarray:
    """One importance value per channel group of `graph` (same order as graph.groups).

    Args:
        graph: from deepzip.structured.graph.trace.
        criterion: "l1", "l2", "apoz", "taylor", or a callable (see the module docstring).
        data: batches for apoz and taylor (a Dataset or an iterable of (inputs, labels)).
        max_batches: how many batches of `data` the statistics use.

    Examples:
        >>> scores(trace(model, x), "l1")[:3]
        array([1.93, 0.41, 2.20])
    """
    if callable(criterion):
        return _per_producer(graph, lambda m, name: criterion(m, name))
    if criterion in ("l1", "l2"):
        p = 1 if criterion == "l1" else 2
        return _per_producer(graph, lambda m, name: m.weight.detach().flatten(1).norm(p=p, dim=1))
    if criterion not in CRITERIA:
        raise ConfigError(f"importance must be one of {', '.join(CRITERIA)} or a function, not {criterion!r}.")
    if data is None:
        raise ConfigError(f"importance={criterion!r} measures activations: pass data= (a data set or DataLoader).")
    return _apoz(graph, data, max_batches) if criterion == "apoz" else _taylor(graph, data, max_batches)


def _per_producer(graph: Graph, per_channel: Callable[[nn.Module, str], torch.Tensor]) -> np.ndarray:
    cache: dict[str, np.ndarray] = {}
    out = np.zeros(len(graph.groups))
    for g in graph.groups:
        for m in g.members:
            if m.role != "out":
                continue
            if m.module not in cache:
                values = per_channel(graph.modules[m.module], m.module)
                cache[m.module] = torch.as_tensor(values).detach().double().cpu().numpy().reshape(-1)
            out[g.id] += cache[m.module][m.indices].sum()
    return out


def _batches(data: Any, max_batches: int):
    for i, batch in enumerate(batches(data, 128)):
        if i >= max_batches:
            return
        yield batch


def _apoz(graph: Graph, data: Any, max_batches: int) -> np.ndarray:
    zeros = np.zeros(len(graph.groups))
    seen = np.zeros(len(graph.groups))
    sites = {name: np.asarray(ids) for name, ids in graph.sites.items()}

    class Recorder(fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            ids = sites.get(node.name)
            if ids is not None:
                fraction = (out.detach() <= 0).transpose(0, 1).flatten(1).double().mean(1).cpu().numpy()
                ok = ids >= 0
                np.add.at(zeros, ids[ok], fraction[ok])
                np.add.at(seen, ids[ok], 1)
            return out

    _run(graph, data, max_batches, lambda gm, x, y: Recorder(gm).run(x))
    # A group no ReLU follows has no APoZ: it counts as always active, so it is kept.
    return 1.0 - np.where(seen > 0, zeros / np.maximum(seen, 1), 0.0)


def _taylor(graph: Graph, data: Any, max_batches: int) -> np.ndarray:
    producers = {name for g in graph.groups for m in g.members if m.role == "out" for name in [m.module]}
    totals: dict[str, torch.Tensor] = {}
    count = [0]

    class Recorder(fx.Interpreter):
        def call_module(self, target, args, kwargs):
            out = super().call_module(target, args, kwargs)
            if target in producers and out.requires_grad:
                def keep(grad, out=out, target=target):
                    # Σ over positions of a·g, per sample and channel; |…| averaged over samples.
                    product = out.detach() * grad
                    contribution = product.reshape(product.shape[0], product.shape[1], -1).sum(2).abs().sum(0)
                    totals[target] = totals.get(target, 0) + contribution.double().cpu()
                out.register_hook(keep)
            return out

    def step(gm, x, y):
        loss = nn.functional.cross_entropy(Recorder(gm).run(x), y)
        loss.backward()
        count[0] += len(y)

    _run(graph, data, max_batches, step, grad=True)
    return _per_producer(graph, lambda m, name: totals.get(name, torch.zeros(1)) / max(count[0], 1))


def _run(graph: Graph, data: Any, max_batches: int, fn, grad: bool = False) -> None:
    gm = graph.gm
    was_training = gm.training
    gm.eval()  # statistics of the trained model, batch norm in inference mode
    device = next(gm.parameters()).device
    params = [p for p in gm.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        with torch.set_grad_enabled(grad):
            for x, y in _batches(data, max_batches):
                fn(gm, x.to(device), y.to(device))
    finally:
        gm.zero_grad(set_to_none=True)
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        gm.train(was_training)
