"""Callbacks of the training loop: evaluation, history, TensorBoard, checkpoints.

Each is a small object with the hooks it needs (see loop.py); the pipeline composes them, and a
user can pass any of them to `dz.train` directly.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from ..data import Dataset
from ..files import write_text
from ..protocols import EpochMetrics, QuantizedView
from ..prune import sparsity_of
from .checkpoint import save_checkpoint
from .loop import TrainState
from .metrics import metric_of


class Evaluate:
    """Measure a metric (top-1 accuracy unless told) on `data` at the end of every epoch, into
    state.metrics[key] (key: the metric's name, "accuracy" for top-1).

    Args:
        data: the split to score on (a run scores its validation split).
        key: where in state.metrics the value goes.
        metric: "top1", "perplexity", a Metric, or a function (model, data) -> float.

    Examples:
        >>> dz.train(model, train_set, epochs=3, callbacks=[Evaluate(val_set), History("history.json")])
    """

    def __init__(self, data: Dataset | Iterable, key: str | None = None, metric: Any = None) -> None:
        self.data, self.metric = data, metric_of(metric)
        self.key = key or self.metric.name

    def on_epoch_end(self, state: TrainState) -> None:
        # A loss that trains a quantized view of the model (RateLoss) is measured on that view.
        loss = state.loss_fn
        model = loss.quantized(state.model) if isinstance(loss, QuantizedView) else state.model
        state.metrics[self.key] = self.metric(model, self.data, sharded=True)
        # and a loss's own measurements (RateLoss: the file's estimated bytes, the rated sparsity)
        if isinstance(loss, EpochMetrics):
            state.metrics.update(loss.epoch_metrics(state.model))


class History:
    """One row per epoch: stage, epoch, loss, the metrics callbacks measured (a run's validation
    accuracy), learning rate, sparsity, seconds.

    Rows go to `rows` (a list the caller may share between runs) and, with `path`, the whole list
    is written there as JSON after every epoch (atomically: a reader never sees half a file).

    Args:
        path: where to write the JSON list, or None.
        rows: the list to append to (default: a new one, at `.rows`).
        stage: the name rows carry (default: the run's desc).

    Examples:
        >>> h = History(); dz.train(model, data, epochs=2, callbacks=[h]); h.rows[-1]["loss"]
    """

    def __init__(self, path: str | os.PathLike | None = None, rows: list[dict[str, Any]] | None = None,
                 stage: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.rows = [] if rows is None else rows
        self.stage = stage

    def on_train_begin(self, state: TrainState) -> None:
        self.start = time.perf_counter()

    def on_epoch_end(self, state: TrainState) -> None:
        now = time.perf_counter()
        row = {"stage": self.stage or state.desc, "epoch": state.epoch, "step": state.step,
               "loss": round(state.epoch_loss, 6), "lr": state.lr,
               "sparsity": round(sparsity_of(state.model)["total"], 6), "seconds": round(now - self.start, 2),
               **{k: round(v, 4) for k, v in state.metrics.items()}}
        if getattr(state.model, "deepzip_widths", None):  # a channel-pruned model: its layers' widths now
            row["widths"] = {name: m.out_features if isinstance(m, nn.Linear) else m.out_channels
                             for name, m in state.model.named_modules()
                             if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd))}
        self.start = now
        self.rows.append(row)
        if self.path is not None:
            write_text(self.path, json.dumps(self.rows, indent=1))


class TensorBoard:
    """Scalars for TensorBoard under `log_dir`: loss every `every` steps, and per epoch the mean
    loss, the metrics (under val/ unless a key names its group), learning rate and sparsity.
    `offset` places this run's steps after the runs before it (one axis for a whole pipeline);
    `purge_step` discards events a killed run wrote past the point a resumed one restarts from.

    Open with `tensorboard --logdir <log_dir>`.

    Examples:
        >>> dz.train(model, data, epochs=2, callbacks=[TensorBoard("runs/tb")])
    """

    def __init__(self, log_dir: str | os.PathLike, *, offset: int = 0, every: int = 50,
                 purge_step: int | None = None) -> None:
        self.log_dir, self.offset, self.every, self.purge_step = Path(log_dir), offset, every, purge_step

    def on_train_begin(self, state: TrainState) -> None:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard loads only when asked for

        self.writer = SummaryWriter(str(self.log_dir), purge_step=self.purge_step)

    def on_step(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self.writer.add_scalar("train/loss_step", state.loss, self.offset + state.step)

    def on_epoch_end(self, state: TrainState) -> None:
        step = self.offset + state.step
        self.writer.add_scalar("train/loss", state.epoch_loss, step)
        self.writer.add_scalar("train/lr", state.lr, step)
        self.writer.add_scalar("model/sparsity", sparsity_of(state.model)["total"], step)
        for key, value in state.metrics.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(key if "/" in key else f"val/{key}", value, step)
        self.writer.flush()

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()


class Checkpoint:
    """Write a resumable checkpoint at the end of every epoch (model with its masks and codebooks,
    optimizer, schedule, data order, random state, callbacks' state).

    Args:
        path: the .safetensors file, overwritten atomically each time.
        meta: `meta(state) -> dict` of JSON-able facts to store beside it.

    Examples:
        >>> dz.train(model, data, epochs=5, callbacks=[Checkpoint("ckpt.safetensors")])
        >>> # later: state = load_checkpoint(model, "ckpt.safetensors")["train"]
        >>> dz.train(model, data, epochs=5, callbacks=[Checkpoint("ckpt.safetensors")], resume=state)
    """

    def __init__(self, path: str | os.PathLike, meta: Callable[[TrainState], dict[str, Any]] | None = None) -> None:
        self.path, self.meta = Path(path), meta

    def on_epoch_end(self, state: TrainState) -> None:
        save_checkpoint(state.model, self.path, train=state.state_dict(),
                        meta=None if self.meta is None else self.meta(state))
