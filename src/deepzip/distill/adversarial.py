"""An adversarial loss: a discriminator learns to tell the teacher's features from the
student's, and the student learns to make its own indistinguishable.

The discriminator is the loss's own: it is trained by its own optimizer inside `step`, on
detached features, so its step never moves the student; and the student's term reaches the
student through a detached copy of the discriminator's weights, so it never moves D.
It is not a parameter of the loss as `dz.train` sees it (`trainable_parameters` leaves it out),
but it is part of the loss's state_dict, optimizer included, so a checkpoint resumes it.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _vector(features: torch.Tensor) -> torch.Tensor:
    """One vector per sample: feature maps average-pooled over their positions."""
    return features.flatten(2).mean(2) if features.dim() > 2 else features


class AdversarialLoss(nn.Module):
    """The discriminator D and the two losses of the game.

    Args:
        features: the size of the (pooled) feature vector D reads (logits: the classes).
        hidden: D's hidden width.
        lr: the learning rate of D's own Adam.

    Examples:
        >>> adv = AdversarialLoss(10)
        >>> loss = adv.student_loss(student_logits)   # the student's term, to minimise
        >>> adv.step(student_logits, teacher_logits)  # one update of D
    """

    def __init__(self, features: int, hidden: int = 64, lr: float = 1e-4) -> None:
        super().__init__()
        self.discriminator = nn.Sequential(nn.Linear(features, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1))
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.999))

    def student_loss(self, student: torch.Tensor) -> torch.Tensor:
        """−log D(student): small when D takes the student's features for the teacher's.

        D enters as a detached copy of its weights: the gradient reaches the student through D
        without D taking any, and D's own step (which may come before the student's backward)
        changes its weights, not the copy this graph holds."""
        frozen = {name: p.detach().clone() for name, p in self.discriminator.named_parameters()}
        logit = torch.func.functional_call(self.discriminator, frozen, (_vector(student),))
        return F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))

    def discriminator_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """D's loss: teacher features are "real" (1), the student's "fake" (0)."""
        real = self.discriminator(_vector(teacher.detach()))
        fake = self.discriminator(_vector(student.detach()))
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))

    def step(self, student: torch.Tensor, teacher: torch.Tensor) -> float:
        """One optimizer step of D on detached features; returns its loss."""
        with torch.enable_grad():
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.discriminator_loss(student, teacher)
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def trainable_parameters(self):
        return iter(())  # D has its own optimizer

    def get_extra_state(self):
        return {"optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
