"""What unstructured pruning ranks weights by: the seam channel pruning has in structured/importance.py.

A criterion scores every weight of a layer (a tensor of its shape, ≥ 0, higher is kept);
`prune_` and `GradualPruning` keep the highest scores. Two ship:
  Magnitude           |w| (Han et al.; the default, and what the paper's quality × std uses)
  ActivationWeighted  |w| · ‖x_j‖₂, the weight times the norm of the input it multiplies over
                      calibration samples (Wanda, Sun et al. 2023): a small weight on an input
                      that is always large matters more than a large one on an input near zero.
A criterion of one's own is any object with `scores(weight: Weight) -> Tensor` and a `name`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from ..errors import ConfigError
from ..selection import Weight


class Criterion(Protocol):
    """How much each weight of a layer matters: scores of its shape, ≥ 0, higher kept."""

    name: str

    def scores(self, weight: Weight) -> torch.Tensor: ...


@dataclass(frozen=True)
class Magnitude:
    """|w|.

    Args:
        name: how reports name it.

    Examples:
        >>> dz.prune_(model, sparsity=0.9, criterion=Magnitude())
    """

    name: str = "magnitude"

    def scores(self, weight: Weight) -> torch.Tensor:
        return weight.value.detach().abs()


@dataclass
class ActivationWeighted:
    """|w| · ‖x_j‖₂ with ‖x_j‖ the norm of input feature j (a Linear's column, a Conv2d's input
    channel) over the calibration samples `measure` saw.

    Args:
        name: how reports name it.
        norms: the measured norms by layer (filled by `measure`).

    Examples:
        >>> crit = ActivationWeighted().measure(model, calib_batches)
        >>> dz.prune_(model, sparsity=0.5, criterion=crit)
    """

    name: str = "activation"
    norms: dict[int, torch.Tensor] = field(default_factory=dict)  # id(module) → ‖x_j‖ per input feature

    def measure(self, model: nn.Module, batches: Iterable[Any]) -> ActivationWeighted:
        """Run `batches` (inputs, or (inputs, targets) pairs) through `model` and keep each
        Linear / Conv2d layer's input norms. Returns self."""
        sums: dict[int, torch.Tensor] = {}

        def hook(module: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0].detach().float()
            per = x.reshape(-1, x.shape[-1]) if isinstance(module, nn.Linear) else x.transpose(0, 1).reshape(x.shape[1], -1).t()
            sums[id(module)] = sums.get(id(module), 0) + per.pow(2).sum(0)

        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        try:
            with torch.no_grad():
                for batch in batches:
                    model(batch[0] if isinstance(batch, (tuple, list)) else batch)
        finally:
            for h in handles:
                h.remove()
        self.norms = {k: v.sqrt() for k, v in sums.items()}
        return self

    def scores(self, weight: Weight) -> torch.Tensor:
        norms = self.norms.get(id(weight.module))
        if norms is None:
            raise ConfigError(f"{weight.name}: the activation criterion measured no input of this layer; call "
                              f"measure(model, batches) on the model being pruned first.")
        w = weight.value.detach()
        if isinstance(weight.module, nn.Conv2d) and weight.module.groups > 1:
            norms = norms.reshape(weight.module.groups, -1).repeat_interleave(w.shape[0] // weight.module.groups, 0)
            return w.abs() * norms.reshape(w.shape[0], w.shape[1], *[1] * (w.dim() - 2)).to(w.device)
        return w.abs() * norms.reshape(1, -1, *[1] * (w.dim() - 2)).to(w.device, w.dtype)
