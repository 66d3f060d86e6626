"""The run context: what every stage of a compress run is given (`RunContext`), and the
teacher a distilling run reads."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from .. import models
from ..data.splits import Splits, example_inputs
from ..distill import DistillLoss, SoftTargetLoss
from ..dzip import load
from ..errors import ConfigError, TrainingError
from ..files import write_text
from ..selection import check_keys
from ..train import (
    Checkpoint,
    Evaluate,
    History,
    Metric,
    TensorBoard,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
    train,
)
from ..train.checkpoint import load_weights
from ..train.distributed import barrier, is_main
from .recipe import Recipe, TrainStage
from .source import Source
from .workdir import CHECKPOINT


class RunContext:
    """What the stages of one run share, built once by `run_recipe`: the recipe, the splits, the
    model, the metric, the device, the output directory and the scores so far (on validation),
    and `fit`, the one way a stage trains (with evaluation on the validation split, history,
    TensorBoard and a checkpoint after every epoch). A stage from outside the package gets it as
    `ctx` (pipeline.stage)."""

    def __init__(self, recipe: Recipe, out: Path, *, splits: Splits, source: Source, metric: Metric,
                 from_checkpoint, progress: bool, log, device: torch.device, key: str) -> None:
        self.main = is_main()
        self.recipe, self.out, self.device = recipe, out, device
        self.progress, self.log = progress and self.main, log if self.main else (lambda *a: None)
        self.from_checkpoint = None if from_checkpoint is None else Path(from_checkpoint)
        self.splits, self.source, self.metric = splits, source, metric
        self.train_set, self.val_set, self.test_set = splits.train, splits.val, splits.test
        self.model = self.fresh_model()
        _check_recipe_fits(recipe, self.model)
        self.key = key
        self.acc: dict[str, float] = {}
        self.history: list[dict[str, Any]] = []
        self.seconds: dict[str, float] = {}
        self.steps = 0  # optimizer steps of the training runs finished, for TensorBoard's one axis
        self.stage_index = 0
        self.purge_step: int | None = None
        self._teacher: torch.nn.Module | None = None
        self._chance: float | None | bool = False  # not measured yet
        self.rate: dict[str, dict[str, float]] | None = None  # what the rate stage decided, per layer
        self.results: list[dict[str, Any]] = []  # what the added stages reported (StageResult.record)

    def fresh_model(self) -> torch.nn.Module:
        return self.source.build().to(self.device)

    def example(self, n: int = 2) -> torch.Tensor:
        """The first `n` training inputs, on the run's device."""
        return example_inputs(self.train_set, n).to(self.device)

    def score(self, model: torch.nn.Module, data: Any = None) -> float:
        """The run's metric of `model` on the validation split, every rank scoring its share (all
        ranks must call it), or on `data`, all of it here."""
        return self.metric(model, self.val_set if data is None else data, sharded=data is None)

    def show(self, value: float) -> str:
        """A score as the log prints it: "89.12%" for accuracy, "20.31" for perplexity."""
        return f"{value:.2f}%" if self.metric.name == "accuracy" else f"{value:.4g}"

    def load_dense(self, model: torch.nn.Module) -> None:
        load_weights(model, self.from_checkpoint if self.from_checkpoint is not None else self.out / "dense.safetensors")

    def teacher(self) -> torch.nn.Module:
        """The recipe's teacher: the file it names, or else the dense model, frozen (from its
        checkpoint, which is what a resumed run has too)."""
        if self._teacher is None:
            d = self.recipe.distill
            # Built aside from torch's random stream: a resumed run builds it at another moment
            # than an uninterrupted one, and the stream must not notice (dropout, data order).
            with torch.random.fork_rng(devices=[]):
                if d is not None and d.teacher:
                    self._teacher = load_teacher(d.teacher).to(self.device)
                else:
                    self._teacher = self.fresh_model()
                    self.load_dense(self._teacher)
        return self._teacher

    @property
    def kd(self) -> dict[str, Any]:
        """loss_fn for a training after the dense stage: distillation from the teacher, if asked."""
        d = self.recipe.distill
        if d is None or d.weight <= 0:
            return {}
        return {"loss_fn": SoftTargetLoss(self.teacher(), weight=d.weight, temperature=d.temperature)}

    def student_loss(self) -> DistillLoss:
        """The three-part loss that trains the recipe's model from the teacher it names."""
        d = self.recipe.distill
        teacher = self.teacher()
        self.log(f"teacher  {d.teacher}: {sum(p.numel() for p in teacher.parameters()):,} parameters, student "
                 f"{sum(p.numel() for p in self.model.parameters()):,}")
        return DistillLoss(teacher, self.model, self.example(2), hints=d.hints,
                           weights=d.weights, temperature=d.temperature, alpha=d.alpha, adversary=d.adversary)

    def fit(self, stage: TrainStage, seed: int, desc: str, *, epochs: float | None = None, callbacks=(),
            loss_fn=None, resume: dict[str, Any] | None = None, state: dict[str, Any] | None = None) -> None:
        """Train one stage's run, checkpointing after every epoch (meta: which stage, `state`)."""
        offset = self.steps

        def meta(_) -> dict[str, Any]:
            return self.meta(stage=self.stage_index, state=state, steps=offset)

        # Every rank evaluates its share and keeps the history; only rank 0 writes files.
        cbs = [*callbacks, Evaluate(self.val_set, metric=self.metric),
               History(self.out / "history.json" if self.main else None, self.history, desc)]
        if self.main:
            cbs += [TensorBoard(self.out / "tb", offset=offset, purge_step=self.purge_step),
                    Checkpoint(self.out / CHECKPOINT, meta)]
        self.purge_step = None
        losses = train(self.model, self.train_set, config=stage, epochs=epochs, seed=seed, desc=desc,
                       progress=self.progress, callbacks=cbs, loss_fn=loss_fn,
                       resume=None if resume is None else resume["train"])
        self.steps = offset + (self.history[-1]["step"] if losses else 0)
        if losses:
            self._check_learned(desc, stage)

    def _check_learned(self, desc: str, stage: TrainStage) -> None:
        """Stop the run if training left the model no better than a constant answer."""
        last = self.history[-1]
        if self._chance is False:
            self._chance = self.metric.chance(self.model, self.val_set)
        chance = self._chance
        if chance is None or last.get(self.metric.name, math.inf) > chance + 2.0:
            return
        hint = ("use a smaller rate weight" if desc == "rate training" else
                "prune less or retrain longer" if self.stage_index > 0 else "train longer")
        raise TrainingError(
            f"{desc}: validation accuracy fell to {last[self.metric.name]:.1f} % at epoch {last['epoch']}, no better "
            f"than always answering the most frequent class ({chance:.1f} %), so the run stops here without "
            f"writing a file; lower the learning rate (it is {stage.lr:g}), or {hint}.")

    def meta(self, **where: Any) -> dict[str, Any]:
        return {"key": self.key, "acc": self.acc, "history": self.history, "seconds": self.seconds,
                "rate": self.rate, **({"results": self.results} if self.results else {}),
                **{"steps": self.steps, "state": None, **where}}

    def checkpoint_stage(self, next_stage: int) -> None:
        """The checkpoint between stages: the model as the finished stage left it."""
        if self.main:
            save_checkpoint(self.model, self.out / CHECKPOINT, train={"rng": torch.get_rng_state()},
                            meta=self.meta(stage=next_stage))
        barrier()

    def restore(self) -> dict[str, Any] | None:
        """Load the last checkpoint; returns the interrupted stage's resume point, or None at a boundary."""
        info = load_checkpoint(self.model, self.out / CHECKPOINT)
        meta, saved = info["meta"], info["train"] or {}
        self.acc, self.history, self.seconds = meta["acc"], meta["history"], meta["seconds"]
        self.rate, self.results = meta.get("rate"), meta.get("results", [])
        self.steps, self.stage_index = meta["steps"], meta["stage"]
        if self.main:
            write_text(self.out / "history.json", json.dumps(self.history, indent=1))
        # TensorBoard drops what the killed run logged after the checkpoint's step.
        if "step" not in saved:  # a stage boundary
            torch.set_rng_state(saved["rng"])
            self.purge_step = self.steps + 1
            return None
        self.purge_step = self.steps + saved["step"] + 1
        return {"state": meta["state"], "train": saved}


def load_teacher(path: str | os.PathLike) -> torch.nn.Module:
    """A teacher from a .dzip (decoded exactly) or a safetensors checkpoint that records its
    registry architecture, in eval mode.

    Examples:
        >>> load_teacher("out/resnet18/model.dzip")
    """
    path = Path(path)
    if path.suffix == ".dzip":
        return load(path)
    tensors, info = read_checkpoint(path)
    arch = info["arch"]
    if not isinstance(arch, dict) or "name" not in arch:
        raise ConfigError(f"{path} records no architecture to build the teacher from; give the teacher as a .dzip.")
    teacher = models.create(arch["name"], **arch.get("kwargs", {}))
    load_checkpoint(teacher, path)
    return teacher.eval()


def _check_recipe_fits(recipe: Recipe, model: torch.nn.Module) -> None:
    """Layer names in the recipe's per-layer settings must name layers of the model built: checked
    before the dense stage trains, not after."""
    p, s, r = recipe.prune, recipe.share, recipe.rate
    for what, setting in (("prune.sparsity", p and p.sparsity), ("prune.quality", p and p.quality),
                          ("prune.units", p and p.units), ("share.bits", s and s.bits), ("rate.bits", r and r.bits),
                          ("share.bias_bits", s and s.bias_bits)):
        check_keys(setting, model, f"the recipe's {what}")
