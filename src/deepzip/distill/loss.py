"""DistillLoss: λ1 · backbone + λ2 · hints + λ3 · adversarial, as one loss_fn for `dz.train`.

backbone     (1 − α) · cross-entropy on the labels + α · T² · KL(teacher ‖ student) at temperature T
hints        for each {"student.layer": "teacher.layer"} pair, a regressor maps the student's
             feature map onto the teacher's channels (spatial sizes matched by average pooling
             the larger map) and the mean squared difference is taken (FitNets)
adversarial  a discriminator on the teacher's and the student's logits (or a hinted layer's
             pooled features) learns to tell them apart; the student learns to fool it

The teacher runs in eval mode under no_grad and is never trained; the regressors are trained
with the student (they are the loss's trainable parameters), the discriminator by its own
optimizer. Neither is part of the student, so neither is saved in its .dzip.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .adversarial import AdversarialLoss
from .hints import FeatureTap, HintLoss, match
from .soft import check_distillation, soft_target_loss


class DistillLoss(nn.Module):
    """Teach `student` from `teacher` (same classes; any architectures whose hinted layers pool to one size).

    Args:
        teacher: the trained model (an nn.Module, or what dz.load returned from a .dzip).
        student: the model being trained (probed once to size the regressors).
        example_inputs: a small batch both models take.
        hints: {"student.layer": "teacher.layer"} feature pairs for the hint term.
        weights: (λ1, λ2, λ3) of backbone, hints and adversarial terms.
        temperature: T of the soft targets.
        alpha: the soft targets' share of the backbone term.
        adversary: "logits", or a student layer named in `hints`: D then compares the teacher's
            pooled features with the student's through the hint's regressor.

    Examples:
        >>> loss = dz.DistillLoss(teacher, student, x[:2], hints={"layer3": "layer3"}, weights=(1, 0.5, 0.1))
        >>> dz.train(student, data, epochs=10, loss_fn=loss)
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, example_inputs: torch.Tensor, *,
                 hints: Mapping[str, str] | None = None, weights: Sequence[float] = (1.0, 0.0, 0.0),
                 temperature: float = 4.0, alpha: float = 0.5, adversary: str = "logits") -> None:
        super().__init__()
        check_distillation(temperature=temperature, alpha=alpha, weights=tuple(weights))
        self.weights, self.temperature, self.alpha = tuple(float(w) for w in weights), temperature, alpha
        self.hints = dict(hints or {})
        if self.weights[1] > 0 and not self.hints:
            raise ConfigError("a hint weight λ2 > 0 needs hints={'student.layer': 'teacher.layer'}.")
        if adversary != "logits" and adversary not in self.hints:
            raise ConfigError(f"adversary must be 'logits' or a student layer named in hints, not {adversary!r}.")
        self.adversary_on = adversary
        self.teacher = teacher.eval().requires_grad_(False)
        self.student_tap = FeatureTap(student, list(self.hints), "the student")
        self.teacher_tap = FeatureTap(teacher, list(self.hints.values()), "the teacher")
        s_out, t_out = self._probe(student, example_inputs)
        if s_out.shape[1:] != t_out.shape[1:]:
            raise ConfigError(f"the teacher answers {tuple(t_out.shape[1:])} per sample and the student "
                              f"{tuple(s_out.shape[1:])}: they must have the same classes.")
        self.regressors = nn.ModuleDict()
        for s_name, t_name in self.hints.items():
            s_feat, t_feat = self.student_tap.features[s_name], self.teacher_tap.features[t_name]
            try:
                match(s_feat, t_feat)
            except ConfigError as e:
                raise ConfigError(f"hint {s_name}:{t_name} cannot be matched: {e}") from None
            self.regressors[s_name.replace(".", "/")] = HintLoss(s_feat.shape[1], t_feat.shape[1], s_feat.dim())
        width = t_out.shape[1] if adversary == "logits" else self.teacher_tap.features[self.hints[adversary]].shape[1]
        self.adversary = AdversarialLoss(width) if self.weights[2] > 0 else None

    def _probe(self, student: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        was = student.training
        student.eval()
        try:
            with torch.no_grad():
                return student(x), self.teacher(x)
        finally:
            student.train(was)

    def train(self, mode: bool = True) -> DistillLoss:
        super().train(mode)
        self.teacher.eval()  # whatever mode the loss is put in, the teacher's batch norms stay fixed
        return self

    def trainable_parameters(self):
        """What dz.train optimizes with the student: the hint regressors (not the teacher, not D)."""
        return self.regressors.parameters()

    def forward(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        logits = model(x)
        with torch.no_grad():
            target = self.teacher(x)
        l1, l2, l3 = self.weights
        loss = logits.new_zeros(())
        if l1 > 0:
            backbone = F.cross_entropy(logits, y)
            if self.alpha > 0:
                backbone = (1 - self.alpha) * backbone + self.alpha * soft_target_loss(logits, target, self.temperature)
            loss = loss + l1 * backbone
        if l2 > 0:
            loss = loss + l2 * sum(self.regressors[s.replace(".", "/")](self.student_tap.features[s],
                                                                         self.teacher_tap.features[t])
                                   for s, t in self.hints.items())
        if l3 > 0:
            if self.adversary_on == "logits":
                s_feat, t_feat = logits, target
            else:  # the student's features through the hint's regressor, in the teacher's channels
                name = self.adversary_on
                s_feat, t_feat = match(self.regressors[name.replace(".", "/")].regressor(self.student_tap.features[name]),
                                       self.teacher_tap.features[self.hints[name]])
            loss = loss + l3 * self.adversary.student_loss(s_feat)
            self.adversary.step(s_feat, t_feat)
        return loss

    def checkpoint_state(self) -> dict[str, Any]:
        """What a training checkpoint keeps of the loss: regressors and discriminator, not the teacher."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("teacher.")}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict({**self.state_dict(), **state})

    def remove(self) -> None:
        """Take the feature hooks off the student and the teacher."""
        self.student_tap.remove()
        self.teacher_tap.remove()
