"""How one training run trains, as one value: `TrainConfig`, which `dz.train(config=...)` takes and
a recipe's training settings (dense, retrain, finetune) are; `check_training` its validator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..checks import check, number, whole


def check_training(epochs: Any, lr: Any, optimizer: Any, momentum: Any, weight_decay: Any, batch_size: Any) -> None:
    """A training run's settings (`train` and a recipe's training stages both ask this).

    Examples:
        >>> check_training(4, 1e-3, "adam", 0.9, 0.0, 128)
    """
    check(number(0)(epochs), "epochs", "≥ 0", epochs)
    check(number(0, above=True)(lr), "lr", "a finite number > 0", lr)
    check(callable(optimizer) or optimizer in ("adam", "sgd"), "optimizer", "'adam' or 'sgd'", optimizer)
    check(number(0, 1, below=True)(momentum), "momentum", "in [0, 1)", momentum)
    check(number(0)(weight_decay), "weight_decay", "≥ 0", weight_decay)
    check(whole(1)(batch_size), "batch_size", "≥ 1", batch_size)


@dataclass(frozen=True)
class TrainConfig:
    """One training run's settings, checked when made (InvalidSetting names the bad one).

    Args:
        epochs: how long (fractions allowed).
        lr: the learning rate (decayed to zero over the run on a cosine).
        optimizer: "adam" or "sgd" (Nesterov momentum).
        momentum: SGD's.
        weight_decay: the optimizer's.
        batch_size: samples per batch.

    Examples:
        >>> dz.train(model, train_set, config=dz.TrainConfig(epochs=4, lr=1e-3))
    """

    epochs: float = 0
    lr: float = 1e-3
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 128

    def __post_init__(self) -> None:
        check_training(self.epochs, self.lr, self.optimizer, self.momentum, self.weight_decay, self.batch_size)
