"""Plain training and evaluation loops.

Nothing here knows about pruning or weight sharing: masks are kept by hooks (prune/masks.py) and
shared layers expose only their centroids as parameters (quantize/shared.py), so any loop —
this one or the user's — trains a compressed model correctly.
"""
from __future__ import annotations

import contextlib
import math
from typing import Literal

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Dataset
from .data.loader import Batches
from .errors import ConfigError
from .prune.masks import reattach_masks_

Optim = Literal["adam", "sgd"]


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def make_optimizer(params, name: Optim, lr: float, momentum: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    raise ConfigError(f"optimizer must be 'adam' or 'sgd', not {name!r}.")


def train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: float,
    lr: float = 1e-3,
    optimizer: Optim = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 128,
    seed: int = 0,
    cosine: bool = True,
    progress: bool = True,
    desc: str = "train",
    on_step=None,
    teacher: nn.Module | None = None,
    distill: float = 0.0,
    temperature: float = 4.0,
) -> list[float]:
    """Train with cross-entropy; returns the mean loss of each epoch.

    `cosine` decays the learning rate to zero over the run: a short retrain then ends settled,
    which matters more after pruning than a few extra epochs do. `on_step(step, total)` is called
    after every optimizer step (gradual pruning hooks in there). Fractional epochs are allowed.

    With a `teacher` (Hinton et al. 2015), the loss is (1 − distill) × cross-entropy + distill ×
    T² × KL(teacher ‖ student) on logits softened by `temperature` T: a pruned network retrained
    on the dense one's soft outputs recovers more than on the hard labels alone, because the
    teacher's wrong-class probabilities say which mistakes are near.
    """
    if epochs <= 0:
        return []
    if not 0.0 <= distill <= 1.0:
        raise ConfigError(f"distill must be in [0, 1], not {distill}.")
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, not {temperature}.")
    if distill > 0 and teacher is None:
        raise ConfigError("distill > 0 needs a teacher model.")
    if teacher is not None:
        teacher.eval()
    reattach_masks_(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    batches = Batches(data, batch_size=batch_size, shuffle=True, seed=seed)
    total = max(1, math.ceil(epochs * len(batches)))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, (lambda s: 0.5 * (1 + math.cos(math.pi * s / total))) if cosine else (lambda s: 1.0))
    loss_fn = nn.CrossEntropyLoss()
    device = next(model.parameters()).device
    model.train()
    losses: list[float] = []
    step = 0
    with _channels_last_on_cpu(model, teacher, device) as plain:
        with tqdm(total=total, desc=desc, disable=None if progress else True, leave=False, unit="step") as bar:
            while step < total:
                running, seen = 0.0, 0
                for x, y in batches:
                    x, y = x.to(device), y.to(device)
                    opt.zero_grad(set_to_none=True)
                    logits = model(x)
                    loss = loss_fn(logits, y)
                    if distill > 0:
                        loss = (1 - distill) * loss + distill * _distill_loss(logits, teacher, x, temperature)
                    loss.backward()
                    opt.step()
                    sched.step()
                    step += 1
                    running += loss.item() * len(y)
                    seen += len(y)
                    if on_step is not None:  # gradual pruning: it sees the weights in their usual layout
                        plain(on_step, step, total)
                    bar.update(1)
                    if step % 50 == 0:
                        bar.set_postfix(loss=f"{running / seen:.4f}")
                    if step >= total:
                        break
                losses.append(running / max(seen, 1))
    model.eval()
    return losses


@contextlib.contextmanager
def _channels_last_on_cpu(model: nn.Module, teacher: nn.Module | None, device: torch.device):
    """Train conv models in the channels-last layout on CPU: PyTorch's CPU convolutions run ~1.7×
    faster on it (LeNet-5, one thread). Only Conv2d parameters change layout, in place (the same
    Parameter objects, so optimizers, masks and hooks stay attached; buffers are left alone), and
    they are put back afterwards, so saving, pruning and user code never see it. Yields a
    function that runs a callback with the default layout restored meanwhile."""
    params = [p for net in (model, teacher) if net is not None for m in net.modules()
              if isinstance(m, nn.Conv2d) for p in m.parameters(recurse=False) if p.dim() == 4]
    convert = device.type == "cpu" and bool(params)

    def layout(fmt: torch.memory_format) -> None:
        for p in params:
            p.data = p.data.contiguous(memory_format=fmt)

    def plain(callback, *args) -> None:
        if convert:
            layout(torch.contiguous_format)
        try:
            callback(*args)
        finally:
            if convert:
                layout(torch.channels_last)

    if convert:
        layout(torch.channels_last)
    try:
        yield plain
    finally:
        if convert:
            layout(torch.contiguous_format)


def _distill_loss(logits: torch.Tensor, teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    with torch.no_grad():
        target = torch.log_softmax(teacher(x) / temperature, dim=1)
    student = torch.log_softmax(logits / temperature, dim=1)
    # T² keeps the soft term's gradients on the scale of the hard term's as T changes.
    return torch.nn.functional.kl_div(student, target, log_target=True, reduction="batchmean") * temperature ** 2


@torch.no_grad()
def predict(model: nn.Module, data: Dataset, batch_size: int = 1000) -> torch.Tensor:
    """Predicted class of every sample, in order."""
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    out = [model(data.x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(data.y), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64)


def evaluate(model: nn.Module, data: Dataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent."""
    if len(data.y) == 0:
        raise ConfigError("cannot evaluate on an empty data set.")
    return 100.0 * (predict(model, data, batch_size) == data.y).double().mean().item()
