"""What a run measures a model by, and what "a drop" of it means.

Top-1 accuracy is the default: higher is better, and a drop is in points (89.4 → 89.1 is a drop
of 0.3). Perplexity, for a causal language model, is lower-better, and its drop is the relative
rise in percent (20.0 → 20.6 is a drop of 3.0), so one `max_drop` reads the same way for both.
Any callable `metric(model, data) -> float` works too: higher is better, a drop in its own units.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as F

from ..data import Dataset
from ..data.loader import batches
from ..errors import ConfigError
from .distributed import sum_all, world
from .loop import evaluate


@runtime_checkable
class Metric(Protocol):
    """A score of a model on data, and the drop between a reference score and another."""

    name: str                # the key it goes under in history and reports ("accuracy", "perplexity")
    higher_is_better: bool

    def __call__(self, model: nn.Module, data: Any, *, sharded: bool = False) -> float: ...

    def drop(self, reference: float, value: float) -> float: ...

    def chance(self, model: nn.Module, data: Any) -> float | None: ...

    def paired(self, reference: nn.Module, model: nn.Module, data: Any) -> tuple[float, float | None]: ...


def _device(net: nn.Module) -> torch.device:
    return next(net.parameters(), torch.empty(0)).device


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    was = net.training
    net.eval()
    try:
        return net(x.to(_device(net)))
    finally:
        net.train(was)


def _pairs(data: Any, batch_size: int):
    """(inputs, labels) batches of a Dataset (in order) or of any iterable of batches."""
    if isinstance(data, Dataset):
        for i in range(0, len(data.y), batch_size):
            yield data.x[i:i + batch_size], data.y[i:i + batch_size]
    else:
        yield from batches(data)


IGNORE = -100  # torch's cross_entropy default ignore_index: padding in token targets


def _spread(d: torch.Tensor) -> float | None:
    """The standard error of the mean of per-sample differences (None for fewer than two)."""
    return float(d.std(unbiased=True) / math.sqrt(d.numel())) if d.numel() > 1 else None


class Top1:
    """Top-1 accuracy in percent; a drop is in points.

    Examples:
        >>> Top1()(model, test_set), Top1().drop(89.4, 89.1)
        (89.11, 0.3...)
    """

    name, higher_is_better, unit = "accuracy", True, "points"

    def __call__(self, model: nn.Module, data: Any, *, sharded: bool = False) -> float:
        return evaluate(model, data, sharded=sharded)

    def drop(self, reference: float, value: float) -> float:
        return reference - value

    def chance(self, model: nn.Module, data: Any) -> float | None:
        """The accuracy of always answering the most frequent class of `data`."""
        labels = data.y if isinstance(data, Dataset) else torch.cat([y.reshape(-1).cpu() for _, y in batches(data)])
        labels = labels.reshape(-1)
        if labels.numel() == 0:
            return None
        return 100.0 * float(torch.bincount(labels).max()) / labels.numel()

    def paired(self, reference: nn.Module, model: nn.Module, data: Any) -> tuple[float, float | None]:
        """The drop from `reference` to `model` on the same samples, and its standard error: each
        sample counts +1 where only the reference is right, −1 where only the model is, so the
        error comes from the samples on which they disagree (paired, far smaller than either
        accuracy's own error).

        Examples:
            >>> Top1().paired(dense, compressed, val_set)
            (0.3, 0.21)
        """
        diffs = []
        for x, y in _pairs(data, 1000):  # one pass, both models on each batch: a shuffling loader stays paired
            right = [(_logits(net, x).argmax(1) == y.to(_device(net))).double().cpu() for net in (reference, model)]
            diffs.append(100.0 * (right[0] - right[1]).reshape(-1))
        if not diffs:
            raise ConfigError("cannot compare two models on an empty data set.")
        d = torch.cat(diffs)
        return float(d.mean()), _spread(d)


class Perplexity:
    """exp(mean next-token cross-entropy) of a language model whose output holds the classes on
    dimension 1 (N×V×T logits against N×T target ids); a drop is the relative rise in percent.

    Examples:
        >>> Perplexity().drop(20.0, 20.6)
        3.0...
    """

    name, higher_is_better, unit = "perplexity", False, "% rise"

    @torch.no_grad()
    def __call__(self, model: nn.Module, data: Any, *, sharded: bool = False) -> float:
        rank, ranks = world()
        if sharded and ranks > 1 and isinstance(data, Dataset):
            data = Dataset(data.x[rank::ranks], data.y[rank::ranks], data.classes, data.name)
        else:
            ranks = 1
        was = model.training
        model.eval()
        device = next(model.parameters(), torch.empty(0)).device
        loss, count = 0.0, 0.0
        try:
            for x, y in batches(data, 64):
                logits = model(x.to(device))
                loss += float(F.cross_entropy(logits.float(), y.to(device), reduction="sum"))
                count += int((y != IGNORE).sum())  # padded positions are not tokens
        finally:
            model.train(was)
        if ranks > 1:
            loss, count = sum_all(loss, count)
        if count == 0:
            raise ConfigError("cannot measure perplexity on an empty data set.")
        return math.exp(min(loss / count, 700.0))  # exp(700) is near float64's limit: a collapse, not an overflow

    def drop(self, reference: float, value: float) -> float:
        return 100.0 * (value / reference - 1.0)

    def chance(self, model: nn.Module, data: Any) -> float | None:
        return None  # a uniform guess is a perplexity of the vocabulary's size; retraining is judged by the drop

    @torch.no_grad()
    def paired(self, reference: nn.Module, model: nn.Module, data: Any) -> tuple[float, float | None]:
        """The relative rise in perplexity (%) from `reference` to `model`, and its standard error
        from the per-sequence differences of their mean token losses (tokens of a sequence are
        not independent; sequences are treated as the samples)."""
        diffs = []
        # 8 sequences at a time: their logits are sequences × tokens × vocabulary floats (64 × 128
        # × 49,152 = 1.6 GB for SmolLM2, twice over in the loss), and each sequence's loss is its own.
        for x, y in _pairs(data, 8):
            keep = (y != IGNORE).reshape(len(y), -1).double()
            losses = []
            for net in (reference, model):
                ce = F.cross_entropy(_logits(net, x).float(), y.to(_device(net)), reduction="none").double().cpu()
                losses.append((ce.reshape(len(y), -1) * keep).sum(1) / keep.sum(1).clamp(min=1))
            diffs.append(losses[1] - losses[0])
        d = torch.cat(diffs)
        rise = math.exp(float(d.mean()))
        se = _spread(d)
        return 100.0 * (rise - 1.0), None if se is None else 100.0 * rise * se


class Cosine:
    """How far a model's outputs turn from a reference model's: 1 − the mean cosine between
    their outputs (sentence embeddings, N × dim) on the same samples; a drop is in those units
    (0.001 = a mean cosine of 0.999). It needs no labels, so it measures a pretrained encoder
    against its float self; a model alone scores 1.0 against itself.

    Examples:
        >>> Cosine().paired(float_model, quantized, sentences)
        (0.0008..., 2e-05...)
    """

    name, higher_is_better, unit = "cosine", True, "cosine lost"

    def __call__(self, model: nn.Module, data: Any, *, sharded: bool = False) -> float:
        return 1.0  # a model's outputs against themselves; only `paired` compares two models

    def drop(self, reference: float, value: float) -> float:
        return reference - value

    def chance(self, model: nn.Module, data: Any) -> float | None:
        return None

    def paired(self, reference: nn.Module, model: nn.Module, data: Any) -> tuple[float, float | None]:
        """1 − the mean cosine between the two models' outputs, and its standard error.

        Examples:
            >>> Cosine().paired(float_model, float_model, sentences)
            (0.0, 0.0)
        """
        lost = []
        for x, _ in _pairs(data, 64):
            a, b = (_logits(net, x).float().reshape(len(x), -1).cpu() for net in (reference, model))
            lost.append(1.0 - F.cosine_similarity(a.double(), b.double(), dim=1))
        if not lost:
            raise ConfigError("cannot compare two models on an empty data set.")
        d = torch.cat(lost)
        return float(d.mean()), _spread(d)


class Custom:
    """A user's `fn(model, data) -> float`, higher is better, drops in its own units."""

    higher_is_better, unit = True, "units"

    def __init__(self, fn: Callable[[nn.Module, Any], float], name: str | None = None) -> None:
        self.fn, self.name = fn, name or getattr(fn, "__name__", "metric")

    def __call__(self, model: nn.Module, data: Any, *, sharded: bool = False) -> float:
        value = float(self.fn(model, data))
        if not math.isfinite(value):
            raise ConfigError(f"the metric {self.name} returned {value}, not a finite number.")
        return value

    def drop(self, reference: float, value: float) -> float:
        return reference - value

    def chance(self, model: nn.Module, data: Any) -> float | None:
        return None

    def paired(self, reference: nn.Module, model: nn.Module, data: Any) -> tuple[float, float | None]:
        return self.drop(self(reference, data), self(model, data)), None  # no per-sample view of a user's metric


METRICS = {"top1": Top1, "accuracy": Top1, "perplexity": Perplexity, "cosine": Cosine}


def metric_of(spec: str | Metric | Callable[[nn.Module, Any], float] | None) -> Metric:
    """A Metric from a name ("top1", "perplexity"), a Metric, or a callable (model, data) -> float.

    Examples:
        >>> metric_of("perplexity").name
        'perplexity'
    """
    if spec is None:
        return Top1()
    if isinstance(spec, str):
        if spec not in METRICS:
            raise ConfigError(f"unknown metric {spec!r}; known: top1, perplexity, cosine, or pass a function "
                              f"(model, data) -> float.")
        return METRICS[spec]()
    if isinstance(spec, Metric):
        return spec
    missing = [m for m in ("name", "higher_is_better", "drop", "chance", "paired") if not hasattr(spec, m)]
    if callable(spec) and len(missing) < 5:  # a Metric-like class short of a method: say which, do not guess
        raise ConfigError(f"the metric {type(spec).__name__} lacks {', '.join(missing)} of deepzip's Metric protocol "
                          f"(deepzip.train.metrics); pass a plain function (model, data) -> float instead.")
    if callable(spec):
        return Custom(spec)
    raise ConfigError(f"metric must be 'top1', 'perplexity' or a function (model, data) -> float, not "
                      f"{type(spec).__name__}.")
