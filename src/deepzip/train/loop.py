"""One training loop: a loss function of (model, batch), an optimizer, callbacks.

Nothing here knows about pruning or weight sharing: masks are kept by hooks and shared layers
expose only their centroids as parameters (reparam/), so any loop, this one or the user's,
trains a compressed model correctly. Distillation, gradual pruning, progress bars, history,
TensorBoard and checkpoints are a loss function or callbacks, not parameters of `train`.

A callback is any object with some of these methods, each given the TrainState:
    on_train_begin, on_step (after every optimizer step), on_epoch_end, on_train_end
and optionally state_dict / load_state_dict, which a checkpoint keeps. Setting `state.stop`
ends the run after the current step.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from ..data import Dataset
from ..data.loader import Batch
from ..data.loader import batches as make_batches
from ..errors import ConfigError, TrainingError
from ..protocols import CheckpointedLoss, OwnParameters, Stateful, cross_entropy
from ..protocols import LossFn as ProtocolLossFn
from ..reparam import reattach_masks_
from .config import TrainConfig, check_training
from .distributed import sum_all, world

Optim = Literal["adam", "sgd"]
LossFn = ProtocolLossFn  # loss_fn(model, (x, y)) -> loss


def seed_everything(seed: int) -> None:
    """Seed torch's global generator (model initialisation, dropout)."""
    torch.manual_seed(seed)


def make_optimizer(params, name: Optim | Callable[..., torch.optim.Optimizer], lr: float, momentum: float,
                   weight_decay: float) -> torch.optim.Optimizer:
    """An optimizer by name ("adam", "sgd" with Nesterov momentum), or from a factory `f(params)`."""
    if callable(name):
        return name(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)
    raise ConfigError(f"optimizer must be 'adam', 'sgd' or a function of the parameters, not {name!r}.")


@dataclass
class TrainState:
    """What callbacks see, and what a checkpoint keeps to continue a run exactly.

    step: optimizer steps done; total: steps in the run; epoch: epochs completed;
    loss: the last batch's loss; epoch_loss: the mean loss of the epoch just ended;
    losses: the mean loss of every epoch so far; metrics: set by callbacks (e.g. "accuracy");
    stop: set it to end the run; desc: the run's name ("dense", "prune 2/3", …).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    batches: Any
    total: int
    steps_per_epoch: int
    desc: str = "train"
    callbacks: Sequence[Any] = ()
    loss_fn: Any = None
    step: int = 0
    epoch: int = 0
    loss: float = math.nan
    epoch_loss: float = math.nan
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    stop: bool = False

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue from here: counters, optimizer, schedule, data order,
        random state, and the callbacks' own state."""
        return {
            "step": self.step, "epoch": self.epoch, "losses": list(self.losses), "stop": self.stop,
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "batches": self.batches.state_dict() if isinstance(self.batches, Stateful) else {},
            "rng": torch.get_rng_state(),
            "callbacks": {str(i): cb.state_dict() for i, cb in enumerate(self.callbacks) if isinstance(cb, Stateful)},
            "loss": self.loss_fn.checkpoint_state() if isinstance(self.loss_fn, CheckpointedLoss) else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch, self.losses = int(state["step"]), int(state["epoch"]), list(state["losses"])
        self.stop = bool(state.get("stop", False))
        if state.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if isinstance(self.batches, Stateful):
            self.batches.load_state_dict(state["batches"])
        torch.set_rng_state(state["rng"])
        for i, cb in enumerate(self.callbacks):
            if isinstance(cb, Stateful) and str(i) in state["callbacks"]:
                cb.load_state_dict(state["callbacks"][str(i)])
        if state.get("loss") and isinstance(self.loss_fn, CheckpointedLoss):
            self.loss_fn.load_checkpoint_state(state["loss"])


def _call(callbacks: Sequence[Any], hook: str, state: TrainState) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def train(
    model: nn.Module,
    data: Dataset | Iterable[Batch],
    *,
    epochs: float | None = None,
    loss_fn: LossFn | None = None,
    optimizer: Optim | Callable[..., torch.optim.Optimizer] = "adam",
    lr: float = 1e-3,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    modules: Sequence[nn.Module] = (),
    callbacks: Sequence[Any] = (),
    batch_size: int = 128,
    seed: int = 0,
    cosine: bool = True,
    progress: bool = True,
    desc: str = "train",
    resume: dict[str, Any] | None = None,
    config: TrainConfig | None = None,
) -> list[float]:
    """Train `model` on `data`; returns the mean loss of each epoch.

    Args:
        model: any nn.Module (masked and shared layers train correctly).
        data: a deepzip Dataset (batched here, shuffled with `seed`) or any iterable of
            (inputs, labels) batches, such as your own torch DataLoader.
        epochs: how long; fractions are allowed (a Dataset's or a sized iterable's).
        loss_fn: `loss_fn(model, (x, y)) -> loss`; default cross-entropy. If it is an
            nn.Module (a distillation loss with a regressor, say), its trainable parameters
            are optimized too.
        optimizer: "adam", "sgd", or a function `params -> torch.optim.Optimizer`.
        lr: the learning rate (the named optimizers).
        momentum: SGD's (Nesterov) momentum.
        weight_decay: for the named optimizers.
        modules: further modules whose parameters the optimizer updates.
        callbacks: objects with on_train_begin / on_step / on_epoch_end / on_train_end.
        batch_size: samples per batch of a Dataset.
        seed: the seed of a Dataset's shuffling order.
        cosine: decay the learning rate to zero over the run: a short retrain then ends settled,
            which matters more after pruning than a few extra epochs do. (Data of unknown
            length keeps the rate constant: the run's length is not known in advance.)
        progress: show a progress bar (on a terminal).
        desc: the run's name, for the bar and the callbacks.
        resume: a TrainState.state_dict() saved at an epoch's end, to continue from there exactly.
        config: a TrainConfig instead of epochs, lr, optimizer, momentum, weight_decay and
            batch_size (epochs, if given too, overrides its epochs; the others may not be given).

    Examples:
        >>> dz.train(model, train_set, epochs=4, lr=1e-3)
        >>> dz.train(model, train_set, config=dz.TrainConfig(epochs=4, lr=1e-3))
        >>> dz.train(model, my_loader, epochs=2, loss_fn=dz.SoftTargetLoss(teacher, weight=0.7),
        ...          callbacks=[dz.GradualPruning(model, 0.9)])
    """
    epochs, optimizer, lr, momentum, weight_decay, batch_size = _settings(
        config, epochs, optimizer, lr, momentum, weight_decay, batch_size)
    check_training(epochs, lr, optimizer, momentum, weight_decay, batch_size)
    if epochs == 0:
        return []
    loss_fn = cross_entropy if loss_fn is None else loss_fn
    extra = [*modules, *([loss_fn] if isinstance(loss_fn, nn.Module) else [])]
    reattach_masks_(model)
    opt = make_optimizer(_trainable(model, extra), optimizer, lr, momentum, weight_decay)
    rank, ranks = world()
    batches = make_batches(data, batch_size, shuffle=True, seed=seed, shard=(rank, ranks))
    per_epoch = len(batches) if hasattr(batches, "__len__") else None
    if per_epoch is None and epochs != int(epochs):
        raise ConfigError("fractional epochs need data whose length is known (a Dataset or a sized DataLoader).")
    total = max(1, math.ceil(epochs * per_epoch)) if per_epoch is not None else None
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(cosine, total))
    device = next(model.parameters()).device
    callbacks = [*callbacks, *([ProgressBar()] if progress else [])]
    state = TrainState(model, opt, sched, batches, total if total is not None else math.inf,
                       per_epoch or 0, desc, callbacks, loss_fn=loss_fn)
    if resume is not None:
        state.load_state_dict(resume)
    model.train()
    with _channels_last_on_cpu([model, *extra] if ranks == 1 else [], device):
        # Under torchrun the forward goes through DistributedDataParallel, which averages the
        # gradients across ranks; callbacks still see (and prune) the model itself.
        forward = model if ranks == 1 else nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
        _call(callbacks, "on_train_begin", state)
        while state.step < state.total and not state.stop and (total is not None or state.epoch < epochs):
            _epoch(state, loss_fn, forward, device, lr)
            _call(callbacks, "on_epoch_end", state)
        _call(callbacks, "on_train_end", state)
    model.eval()
    return state.losses


def _settings(config: TrainConfig | None, epochs: float | None, *given: Any) -> tuple[Any, ...]:
    """train's settings: the keywords, or the config's (a keyword set away from its default beside
    a config is refused rather than silently lost)."""
    if config is None:
        if epochs is None:
            raise ConfigError("train needs epochs= (or config=TrainConfig(...)).")
        return (epochs, *given)
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config must be a TrainConfig, not a {type(config).__name__}.")
    names, defaults = ("optimizer", "lr", "momentum", "weight_decay", "batch_size"), ("adam", 1e-3, 0.9, 0.0, 128)
    clash = [n for n, v, d in zip(names, given, defaults) if v != d]
    if clash:
        raise ConfigError(f"train was given config= and {', '.join(clash)}=; put {clash[0]} in the TrainConfig.")
    return (config.epochs if epochs is None else epochs, *(getattr(config, n) for n in names))


def _trainable(model: nn.Module, extra: Sequence[nn.Module]) -> list[nn.Parameter]:
    """The parameters the optimizer updates, each once. A loss module may say which of its own
    train with the model (a distillation loss: its regressors, not its teacher nor a
    discriminator with an optimizer of its own)."""
    params = [p for net in (model, *extra)
              for p in (net.trainable_parameters() if isinstance(net, OwnParameters) else net.parameters())
              if p.requires_grad]
    return list({id(p): p for p in params}.values())  # a module passed twice is optimized once


def _epoch(state: TrainState, loss_fn: LossFn, forward: nn.Module, device: torch.device, lr: float) -> None:
    """One pass over the batches (or what is left of the run's steps), callbacks after each step."""
    running, seen = 0.0, 0
    for batch in _on(device, state.batches):
        state.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(forward, batch)
        state.loss = loss.item()
        if not math.isfinite(state.loss):  # before the step: the weights stay as they were
            raise TrainingError(f"{state.desc}: the loss became {state.loss} at step {state.step + 1} (epoch "
                                f"{state.epoch + 1}); lower the learning rate (it is {lr:g}).")
        loss.backward()
        state.optimizer.step()
        state.scheduler.step()
        state.step += 1
        running += state.loss * len(batch[1])
        seen += len(batch[1])
        _call(state.callbacks, "on_step", state)
        if state.step >= state.total or state.stop:
            break
    state.epoch += 1
    running, seen = sum_all(running, seen)  # the mean over every rank's samples
    state.epoch_loss = running / max(seen, 1)
    state.losses.append(state.epoch_loss)


def _schedule(cosine: bool, total: int | None) -> Callable[[int], float]:
    if not cosine or total is None:
        return lambda s: 1.0
    return lambda s: 0.5 * (1 + math.cos(math.pi * s / total))


def _on(device: torch.device, batches: Iterable[Batch]) -> Iterator[Batch]:
    for batch in batches:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, torch.Tensor) for t in batch)):
            raise ConfigError(f"each batch must be an (inputs, labels) pair of tensors, not a {type(batch).__name__}.")
        yield batch[0].to(device), batch[1].to(device)


class ProgressBar:
    """A tqdm bar over the run's steps, with the running loss (only on a terminal).

    Examples:
        >>> dz.train(model, data, epochs=2, progress=False, callbacks=[ProgressBar()])
    """

    def on_train_begin(self, state: TrainState) -> None:
        from tqdm.auto import tqdm

        total = state.total if math.isfinite(state.total) else None
        self.bar = tqdm(total=total, initial=state.step, desc=state.desc, disable=None, leave=False, unit="step")

    def on_step(self, state: TrainState) -> None:
        self.bar.update(1)
        if state.step % 50 == 0:
            self.bar.set_postfix(loss=f"{state.loss:.4f}")

    def on_train_end(self, state: TrainState) -> None:
        self.bar.close()


@contextlib.contextmanager
def _channels_last_on_cpu(nets: Sequence[nn.Module], device: torch.device):
    """Train conv models in the channels-last layout on CPU: PyTorch's CPU convolutions run ~1.7×
    faster on it (LeNet-5, one thread). Only Conv2d parameters change layout, in place (the same
    Parameter objects, so optimizers, masks and hooks stay attached; buffers are left alone), and
    they are put back afterwards, so saving and user code never see it. Pruning meanwhile (a
    callback) needs no care: masks are found on C-order copies (prune.magnitude.keep_largest)
    and applied element by element, whatever the strides."""
    params = list({id(p): p for net in nets for m in net.modules() if isinstance(m, nn.Conv2d)
                   for p in m.parameters(recurse=False) if p.dim() == 4}.values())
    convert = device.type == "cpu" and bool(params)

    def layout(fmt: torch.memory_format) -> None:
        for p in params:
            p.data = p.data.contiguous(memory_format=fmt)

    if convert:
        layout(torch.channels_last)
    try:
        yield
    finally:
        if convert:
            layout(torch.contiguous_format)


@torch.no_grad()
def _outputs(model: nn.Module, data: Dataset | Iterable[Batch], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted classes, labels) over `data` in one pass (a shuffling loader stays consistent)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters(), torch.empty(0)).device
    if isinstance(data, Dataset):
        pairs = ((data.x[i:i + batch_size], data.y[i:i + batch_size]) for i in range(0, len(data.y), batch_size))
    else:
        pairs = _on(torch.device("cpu"), make_batches(data))
    predicted, labels = [], []
    try:
        for x, y in pairs:
            predicted.append(model(x.to(device)).argmax(1).cpu())
            labels.append(y.cpu())
    finally:
        model.train(was_training)
    empty = torch.zeros(0, dtype=torch.int64)
    return (torch.cat(predicted) if predicted else empty), (torch.cat(labels) if labels else empty)


def predict(model: nn.Module, data: Dataset | Iterable[Batch], batch_size: int = 1000) -> torch.Tensor:
    """Predicted class of every sample, in order. The model's train/eval mode is restored after.

    Args:
        model: the classifier.
        data: a deepzip Dataset or an iterable of (inputs, labels) batches.
        batch_size: for a Dataset.

    Examples:
        >>> (dz.predict(model, test_set) == test_set.y).float().mean()
    """
    return _outputs(model, data, batch_size)[0]


def evaluate(model: nn.Module, data: Dataset | Iterable[Batch], batch_size: int = 1000, *,
             sharded: bool = False) -> float:
    """Top-1 accuracy in percent.

    Args:
        model: the classifier.
        data: a deepzip Dataset or an iterable of (inputs, labels) batches (read once, so a
            shuffling DataLoader is fine).
        batch_size: for a Dataset.
        sharded: in a distributed run, every rank scores its share of a Dataset and the counts
            are summed (all ranks must call it); otherwise each call scores all of `data`.

    Examples:
        >>> dz.evaluate(dz.load("model.dzip"), test_set)
        89.11
    """
    rank, ranks = world()
    if sharded and ranks > 1 and isinstance(data, Dataset):
        data = Dataset(data.x[rank::ranks], data.y[rank::ranks], data.classes, data.name)
    else:
        ranks = 1
    predicted, labels = _outputs(model, data, batch_size)
    right, total = float((predicted == labels).sum()), float(labels.numel())  # N×T for a language model
    if ranks > 1:
        right, total = sum_all(right, total)
    if total == 0:
        raise ConfigError("cannot evaluate on an empty data set.")
    return 100.0 * (right / total)  # the order of the earlier mean(), so recorded accuracies stay the same
