"""Intermediate features: taken with forward hooks, and matched through a small regressor."""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError


class FeatureTap:
    """Forward hooks that keep the outputs of named layers of a model, call after call.

    Examples:
        >>> tap = FeatureTap(model, ["layer3"]); model(x); tap.features["layer3"].shape
    """

    def __init__(self, model: nn.Module, names: Iterable[str], what: str = "the model") -> None:
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            known = [n for n in modules if n][:12]
            raise ConfigError(f"{what} has no layer {missing[0]!r} to take features from (layers: "
                              f"{', '.join(known)}{' …' if len(modules) > 13 else ''}).")
        self.features: dict[str, torch.Tensor] = {}
        self.handles = [modules[n].register_forward_hook(self._keep(n)) for n in names]

    def _keep(self, name: str):
        def hook(_module, _args, output):
            self.features[name] = output[0] if isinstance(output, tuple) else output
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def match(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring two feature maps to one spatial size by average pooling the larger one down."""
    if student.dim() != teacher.dim() or student.dim() not in (2, 3, 4, 5):
        raise ConfigError(f"a hint pairs features of shapes {tuple(student.shape[1:])} and "
                          f"{tuple(teacher.shape[1:])}: they need the same number of dimensions.")
    if student.dim() == 2 or student.shape[2:] == teacher.shape[2:]:
        return student, teacher
    size = tuple(min(a, b) for a, b in zip(student.shape[2:], teacher.shape[2:]))
    pool = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}[student.dim()]
    return pool(student, size), pool(teacher, size)


class HintLoss(nn.Module):
    """FitNets' hint: a regressor maps the student's features onto the teacher's channels, and
    the loss is their mean squared difference. Spatial sizes may differ: the larger map is
    average-pooled down to the smaller (so a student stage at half the resolution still hints).

    Args:
        student_channels: channels (or features, for 2-D outputs) of the student's side.
        teacher_channels: the same of the teacher's side.
        dims: 2 for (batch, features), 4 for feature maps (1×1 convolution regressor).

    Examples:
        >>> hint = HintLoss(32, 128); hint(student_map, teacher_map)
    """

    def __init__(self, student_channels: int, teacher_channels: int, dims: int = 4) -> None:
        super().__init__()
        conv = {3: nn.Conv1d, 4: nn.Conv2d, 5: nn.Conv3d}
        self.regressor = (nn.Linear(student_channels, teacher_channels) if dims == 2 else
                          conv[dims](student_channels, teacher_channels, 1))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        student, teacher = match(self.regressor(student), teacher)
        return F.mse_loss(student, teacher)
