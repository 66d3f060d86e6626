"""What the training loop may ask of the objects it is handed, as typing Protocols.

A loss function is any `loss_fn(model, batch) -> loss`; a callback any object with some of the
hooks of `Callback`. Beyond that, an object may offer more, and the loop asks by these
protocols (isinstance, structurally: nothing needs to inherit from them):

    Stateful            state_dict / load_state_dict: a checkpoint keeps it (a callback, batches)
    CheckpointedLoss    checkpoint_state / load_checkpoint_state: a loss's own state (RateLoss)
    OwnParameters       trainable_parameters: which of a loss module's parameters train with the
                        model (a distillation loss: its regressors, not its teacher)
    QuantizedView       quantized(model): the model the loss trains a view of, to evaluate
    EpochMetrics        epoch_metrics(model): a loss's own measurements per epoch
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class LossFn(Protocol):
    def __call__(self, model: nn.Module, batch: Any) -> Any: ...


class Callback(Protocol):
    """Any subset of these hooks, each given the TrainState (train/loop.py); setting
    `state.stop` ends the run after the current step."""

    def on_train_begin(self, state: Any) -> None: ...
    def on_step(self, state: Any) -> None: ...
    def on_epoch_end(self, state: Any) -> None: ...
    def on_train_end(self, state: Any) -> None: ...


@runtime_checkable
class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> Any: ...


@runtime_checkable
class CheckpointedLoss(Protocol):
    def checkpoint_state(self) -> dict[str, Any]: ...
    def load_checkpoint_state(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class OwnParameters(Protocol):
    def trainable_parameters(self) -> Iterable[nn.Parameter]: ...


@runtime_checkable
class QuantizedView(Protocol):
    def quantized(self, model: nn.Module) -> nn.Module: ...


@runtime_checkable
class EpochMetrics(Protocol):
    def epoch_metrics(self, model: nn.Module) -> dict[str, float]: ...


def cross_entropy(model: nn.Module, batch: Any) -> torch.Tensor:
    """The default loss: cross-entropy of model(x) against the labels y.

    The classes are dimension 1 of the output, as torch's cross_entropy has it: N×C for a
    classifier, N×C×T for a language model's next-token logits (targets N×T).

    Examples:
        >>> dz.train(model, data, epochs=1, loss_fn=cross_entropy)
    """
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
