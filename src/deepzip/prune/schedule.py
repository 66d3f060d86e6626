"""Pruning schedules: how the sparsity target grows while training goes on.

Gradual pruning (Zhu & Gupta, 2017) follows a cubic ramp:

    s(t) = s_final + (s_initial − s_final) · (1 − (t − t_start) / (t_end − t_start))³

Most weights go early, while the network can still recover easily; the last few go slowly. The
same curve serves both schedules a recipe can name: "iterative" samples it at the end of each
prune → retrain round (`ramp`), "agp" follows it step by step during one run (`GradualPruning`).
Masks only ever shrink, so each update prunes the smallest of the surviving weights.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from ..checks import check, number, whole
from ..errors import ConfigError
from .criteria import Criterion
from .magnitude import PerLayer, prune_


def agp_sparsity(step: int, *, initial: float, final: float, start: int, end: int) -> float:
    """The cubic ramp at `step`: `initial` up to `start`, `final` from `end` on.

    Examples:
        >>> agp_sparsity(5, initial=0.0, final=0.9, start=0, end=10)
        0.7875
    """
    if end <= start:
        return final if step >= start else initial
    if step <= start:
        return initial
    if step >= end:
        return final
    return final + (initial - final) * (1 - (step - start) / (end - start)) ** 3


def ramp(final: float, step: int, steps: int) -> float:
    """Sparsity after round `step` of `steps`: the AGP curve sampled at the rounds, reaching `final`.

    Examples:
        >>> [round(ramp(1.0, s, 3), 3) for s in (1, 2, 3)]
        [0.704, 0.963, 1.0]
    """
    return agp_sparsity(step, initial=0.0, final=final, start=0, end=steps)


def scaled(setting: PerLayer, fraction: float) -> PerLayer:
    """A sparsity setting (one value or a dict of them) times `fraction`.

    Examples:
        >>> scaled({"fc1": 0.9, "fc2": 0.8}, 0.5)
        {'fc1': 0.45, 'fc2': 0.4}
    """
    if isinstance(setting, Mapping):
        return {k: v * fraction for k, v in setting.items()}
    return setting * fraction


def check_schedule(end: Any, every: Any) -> None:
    """The AGP ramp's settings: it ends at a fraction of the run in (0, 1], and updates the masks
    every ≥ 1 optimizer steps (GradualPruning and the recipe's prune stage ask this).

    Examples:
        >>> check_schedule(0.75, 50)
    """
    check(number(0, 1, above=True)(end), "ramp_end", "in (0, 1]", end)
    check(whole(1)(every), "every", "≥ 1", every)


class GradualPruning:
    """A training callback that prunes along the AGP ramp: `dz.train(..., callbacks=[GradualPruning(model, 0.9)])`.

    Args:
        model: the model being trained.
        sparsity: the final sparsity, a float or a dict by layer name / kind (the initial one is 0).
        start: where the ramp starts, as a fraction of the run (default: the first step).
        end: where it reaches the target (default: 75 % of the run, leaving the last quarter to
            recover at the final sparsity).
        every: optimizer steps between mask updates.
        scope: "global" ranks all layers' weights together (a single sparsity then).
        criterion: what weights are ranked by (prune/criteria.py; None: magnitude).

    Examples:
        >>> dz.train(model, data, epochs=6, callbacks=[GradualPruning(model, {"fc1": 0.95}, every=50)])
    """

    def __init__(self, model: nn.Module, sparsity: PerLayer, *, start: float = 0.0, end: float = 0.75,
                 every: int = 50, scope: str = "layer", criterion: Criterion | None = None) -> None:
        check_schedule(end, every)
        if not 0 <= start <= end <= 1:
            raise ConfigError(f"the ramp needs 0 ≤ start ≤ end ≤ 1, not start={start}, end={end}.")
        self.model, self.sparsity, self.start, self.end, self.every = model, sparsity, start, end, every
        self.scope, self.criterion = scope, criterion
        self.history: list[tuple[int, float]] = []

    def fraction(self, step: int, total: int) -> float:
        """How far along the ramp step `step` of `total` is: 0 at the start, 1 at the end."""
        return agp_sparsity(step, initial=0.0, final=1.0, start=round(self.start * total), end=round(self.end * total))

    def update(self, step: int, total: int) -> None:
        """Prune to the ramp's value at `step` of `total` if an update falls due there."""
        end = round(self.end * total)
        if step % self.every and step != end:
            return
        f = self.fraction(step, total)
        if self.history and self.history[-1][1] == f:
            return
        prune_(self.model, sparsity=scaled(self.sparsity, f), scope=self.scope, criterion=self.criterion)
        self.history.append((step, f))

    def on_step(self, state: Any) -> None:
        self.update(state.step, state.total)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [(int(s), float(f)) for s, f in state.get("history", [])]
