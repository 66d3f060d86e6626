"""Knowledge distillation (Hinton et al. 2015) as a loss function for `dz.train`.

A pruned or quantized network retrained on the dense one's softened outputs recovers more than
on the hard labels alone, because the teacher's wrong-class probabilities say which mistakes are
near (+0.3 to +0.6 points on LeNet-300-100 at 96.6 % sparsity, same epochs; README).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..checks import check, number


def check_distillation(*, weight: Any = 0.5, temperature: Any = 4.0, alpha: Any = 0.5,
                       weights: Any = (1.0, 0.0, 0.0)) -> None:
    """Distillation's settings: the soft term's `weight` and `alpha` in [0, 1], a finite
    `temperature` > 0, and three `weights` ≥ 0 (λ1 backbone, λ2 hints, λ3 adversarial). The losses
    and the recipe's distill stage both ask this.

    Examples:
        >>> check_distillation(weight=0.7, temperature=2)
    """
    check(number(0, 1)(weight), "weight", "in [0, 1]", weight)
    check(number(0, above=True)(temperature), "temperature", "a finite number > 0", temperature)
    check(number(0, 1)(alpha), "alpha", "in [0, 1]", alpha)
    check(isinstance(weights, (list, tuple)) and len(weights) == 3 and all(number(0)(w) for w in weights), "weights",
          "three numbers ≥ 0 (λ1 backbone, λ2 hints, λ3 adversarial)", weights)


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² × KL(teacher ‖ student) on logits softened by temperature T, averaged over the batch.

    T² keeps the soft term's gradients on the scale of the hard term's as T changes.

    Args:
        student_logits: (batch, classes).
        teacher_logits: (batch, classes).
        temperature: T > 0.

    Examples:
        >>> soft_target_loss(torch.zeros(2, 3), torch.zeros(2, 3), 4.0)
        tensor(0.)
    """
    target = torch.log_softmax(teacher_logits / temperature, dim=1)
    student = torch.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(student, target, log_target=True, reduction="batchmean") * temperature ** 2


class SoftTargetLoss(nn.Module):
    """(1 − weight) × cross-entropy on the labels + weight × soft_target_loss to the teacher.

    The teacher runs in eval mode under no_grad and is never trained (its parameters are frozen
    here, so `dz.train` does not optimize them) nor saved with the student.

    Args:
        teacher: the trained model to learn from (the dense model, a .dzip loaded, …).
        weight: the soft term's share of the loss, in [0, 1].
        temperature: T > 0; higher spreads the teacher's probabilities further.

    Examples:
        >>> teacher = copy.deepcopy(model)
        >>> dz.prune_(model, sparsity=0.95)
        >>> dz.train(model, data, epochs=3, loss_fn=dz.SoftTargetLoss(teacher, weight=0.7, temperature=2))
    """

    def __init__(self, teacher: nn.Module, weight: float = 0.5, temperature: float = 4.0) -> None:
        super().__init__()
        check_distillation(weight=weight, temperature=temperature)
        self.teacher = teacher.eval().requires_grad_(False)
        self.weight, self.temperature = weight, temperature

    def train(self, mode: bool = True) -> SoftTargetLoss:
        super().train(mode)
        self.teacher.eval()  # whatever mode the loss is put in, the teacher's batch norms stay fixed
        return self

    def forward(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if self.weight == 0:
            return loss
        with torch.no_grad():
            teacher = self.teacher(x)
        return (1 - self.weight) * loss + self.weight * soft_target_loss(logits, teacher, self.temperature)
