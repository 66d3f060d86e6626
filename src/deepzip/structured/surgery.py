"""Cutting channel groups out of a model for real: smaller tensors, the same function elsewhere."""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from .graph import ChannelGroup, Graph


def remove_(model: nn.Module, graph: Graph, groups: list[ChannelGroup]) -> dict[str, dict[str, int]]:
    """Remove `groups` from `model` in place: every producer row, consumer column and batch-norm
    entry they hold. Modules stay the same objects; their weights become new, smaller
    Parameters (so an optimizer must be made afresh). Returns the new widths of the changed
    layers, which are also merged into `model.deepzip_widths`.

    Examples:
        >>> remove_(model, graph, choose(graph, scores(graph, "l1"), 0.5))
        {'stem.0': {'out_channels': 32}, 'stem.1': {'num_features': 32}, ...}
    """
    drop: dict[tuple[str, str], set[int]] = defaultdict(set)
    for g in groups:
        for m in g.members:
            drop[(m.module, m.role)].update(m.indices)
    modules = dict(model.named_modules())
    changed: dict[str, dict[str, int]] = {}
    names = sorted({name for name, _ in drop}, key=list(modules).index)
    with torch.no_grad():
        for name in names:
            module = modules[name]
            out, inp, norm = (drop.get((name, role), set()) for role in ("out", "in", "norm"))
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                keep = _keep(module.num_features, norm)
                for t in ("weight", "bias", "running_mean", "running_var"):
                    _select(module, t, 0, keep)
                module.num_features = len(keep)
                changed[name] = {"num_features": module.num_features}
                continue
            depthwise = isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1
            rows, cols = module.weight.shape[0], module.weight.shape[1]
            keep_out = _keep(rows, out)
            _select(module, "weight", 0, keep_out)
            _select(module, "bias", 0, keep_out)
            if not depthwise:
                _select(module, "weight", 1, _keep(cols, inp))
            if isinstance(module, nn.Linear):
                module.out_features, module.in_features = module.weight.shape
                changed[name] = {"out_features": module.out_features, "in_features": module.in_features}
            elif depthwise:  # channel j in is channel j out: both go, and the groups with them
                module.out_channels = module.in_channels = module.groups = len(keep_out)
                changed[name] = {"out_channels": len(keep_out), "in_channels": len(keep_out), "groups": len(keep_out)}
            else:
                module.out_channels, module.in_channels = module.weight.shape[0], module.weight.shape[1]
                changed[name] = {"out_channels": module.out_channels, "in_channels": module.in_channels}
    widths = dict(getattr(model, "deepzip_widths", {}) or {})
    for name, change in changed.items():
        widths[name] = {**widths.get(name, {}), **change}
    model.deepzip_widths = widths
    return changed


def _keep(n: int, removed: set[int]) -> torch.Tensor:
    return torch.tensor([i for i in range(n) if i not in removed], dtype=torch.long)


def _select(module: nn.Module, name: str, dim: int, keep: torch.Tensor) -> None:
    for store in (module._parameters, module._buffers):
        t = store.get(name)
        if t is None or t.shape[dim] == len(keep):
            continue
        value = t.detach().index_select(dim, keep.to(t.device)).contiguous()
        store[name] = nn.Parameter(value, requires_grad=t.requires_grad) if store is module._parameters else value

