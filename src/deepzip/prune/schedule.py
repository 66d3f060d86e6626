"""Gradual pruning (Zhu & Gupta, 2017): sparsity follows a cubic ramp while training goes on.

    s(t) = s_final + (s_initial − s_final) · (1 − (t − t_start) / (t_end − t_start))³

Most weights go early, while the network can still recover easily; the last few go slowly.
Masks are recomputed every `every` steps; since they only ever shrink, each update prunes the
smallest of the surviving weights.
"""
from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from ..errors import ConfigError
from .magnitude import PerLayer, prune_


def agp_sparsity(step: int, *, initial: float, final: float, start: int, end: int) -> float:
    if end <= start:
        return final if step >= start else initial
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


class GradualPruning:
    """A training-loop callback: `train(model, data, epochs=…, on_step=GradualPruning(model, …))`.

    sparsity: the final sparsity, a float or a dict by layer name / kind (the initial one is 0).
    start, end: the ramp as fractions of the run (default: from the first step to 75 % of the
    run, leaving the last quarter to recover at the final sparsity). every: steps between updates.
    scope="global" ranks all layers' weights together (a single sparsity then).
    """

    def __init__(self, model: nn.Module, sparsity: PerLayer, *, start: float = 0.0, end: float = 0.75,
                 every: int = 50, scope: str = "layer") -> None:
        if not 0 <= start <= end <= 1:
            raise ConfigError(f"the ramp needs 0 ≤ start ≤ end ≤ 1, not start={start}, end={end}.")
        if every < 1:
            raise ConfigError(f"every must be ≥ 1, not {every}.")
        self.model, self.sparsity, self.start, self.end, self.every = model, sparsity, start, end, every
        self.scope = scope
        self.history: list[tuple[int, float]] = []

    def fraction(self, step: int, total: int) -> float:
        """How far along the ramp step `step` of `total` is: 0 at the start, 1 at the end."""
        return agp_sparsity(step, initial=0.0, final=1.0, start=round(self.start * total), end=round(self.end * total))

    def __call__(self, step: int, total: int) -> None:
        end = round(self.end * total)
        if step % self.every and step != end:
            return
        f = self.fraction(step, total)
        if self.history and self.history[-1][1] == f:
            return
        scaled = ({k: v * f for k, v in self.sparsity.items()} if isinstance(self.sparsity, Mapping)
                  else self.sparsity * f)
        prune_(self.model, sparsity=scaled, scope=self.scope)
        self.history.append((step, f))
