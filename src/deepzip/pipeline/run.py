"""`run_recipe`: the stages of a recipe, run in order, checkpointed, resumable; then the file.

Each stage calls the public API; this module only chains them, keeps their checkpoints, and
writes the report. The accuracy that counts is the one measured on the model reloaded from disk.

DIR/checkpoints/last.safetensors is rewritten (atomically) after every epoch and every stage;
`compress(..., resume=True)` continues from it and ends with the same weights, accuracies and
model.dzip bytes as a run that was never interrupted (same machine, same thread count): the
checkpoint holds the weights with their masks and codebooks, the optimizer, the learning-rate
schedule, the data order's generator, torch's random state, the AGP schedule's progress, and
the accuracies and history so far. Wall-clock seconds go to report.json, never into the file.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import data as datasets
from .. import models
from ..data.splits import Splits, example_inputs, load_splits
from ..distill import DistillLoss, SoftTargetLoss
from ..dzip import load, save
from ..errors import ConfigError, RunStateError, TrainingError
from ..files import write_text
from ..models.sources import describe
from ..prune import sparsity_of
from ..report import inspect, report_markdown, weight_histograms, write_report
from ..selection import check_keys
from ..train import (
    Checkpoint,
    Evaluate,
    History,
    Metric,
    TensorBoard,
    load_checkpoint,
    metric_of,
    predict,
    read_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    train,
)
from ..train.checkpoint import load_weights, weights_digest
from ..train.distributed import barrier, init_from_env, is_main, local_device, world
from .recipe import Recipe, TrainStage
from .stages import stages_of

CHECKPOINT = Path("checkpoints") / "last.safetensors"


class Source:
    """Where a run's model comes from: `build()` gives a fresh one (the run's model, the teacher
    rebuilt after a resume, the original for a cost comparison), `key` what identifies it."""

    def __init__(self, build: Callable[[], torch.nn.Module], key: dict[str, Any], name: str) -> None:
        self.build, self.key, self.name = build, key, name

    @classmethod
    def registry(cls, recipe: Recipe, train: Any) -> Source:
        """The recipe's registry model, sized to the data: built anew each time (each build draws
        its initialisation from torch's stream, as every published figure was made)."""
        if recipe.model not in models.names():
            models.create(recipe.model)  # the registry's own one-sentence error, before anything trains
        x = example_inputs(train, 1)
        classes = train.classes if isinstance(train, datasets.Dataset) else None
        shape = {"in_channels": x.shape[1], "image_size": x.shape[2]} if x.dim() == 4 else {}
        kwargs = {**shape, **({"classes": classes} if classes is not None else {}), **recipe.model_args}
        return cls(lambda: models.create(recipe.model, **kwargs), {"registry": recipe.model}, recipe.model)

    @classmethod
    def module(cls, template: torch.nn.Module, key: dict[str, Any]) -> Source:
        """A user's module (its own class, a Hugging Face model): copies of `template`, which
        keeps how it was built (deepzip_arch) for the file."""
        template = copy.deepcopy(template).cpu()
        return cls(lambda: copy.deepcopy(template), key, describe(models.arch_of(template)))


class Run:
    """What the stages of one run share: the recipe, the splits, the model, the metric and the
    scores so far (on validation), and `fit`, the one way a stage trains (with evaluation on the
    validation split, history, TensorBoard and a checkpoint after every epoch)."""

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
        losses = train(self.model, self.train_set, epochs=stage.epochs if epochs is None else epochs, lr=stage.lr,
                       optimizer=stage.optimizer, momentum=stage.momentum, weight_decay=stage.weight_decay,
                       batch_size=stage.batch_size, seed=seed, desc=desc, progress=self.progress, callbacks=cbs,
                       loss_fn=loss_fn, resume=None if resume is None else resume["train"])
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
                "rate": self.rate, **{"steps": self.steps, "state": None, **where}}

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
        self.rate = meta.get("rate")
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


def run_key(recipe: Recipe, what: dict[str, Any]) -> str:
    """A short hash of what must be equal for a checkpoint (or a search) to belong to this run."""
    return hashlib.sha256(json.dumps({"recipe": recipe.to_dict(), **what}, sort_keys=True,
                                     default=str).encode()).hexdigest()[:16]


def _check_recipe_fits(recipe: Recipe, model: torch.nn.Module) -> None:
    """Layer names in the recipe's per-layer settings must name layers of the model built: checked
    before the dense stage trains, not after."""
    p, s, r = recipe.prune, recipe.share, recipe.rate
    for what, setting in (("prune.sparsity", p and p.sparsity), ("prune.quality", p and p.quality),
                          ("prune.units", p and p.units), ("share.bits", s and s.bits), ("rate.bits", r and r.bits),
                          ("share.bias_bits", s and s.bias_bits)):
        check_keys(setting, model, f"the recipe's {what}")


def run_recipe(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    from_checkpoint: str | os.PathLike | None = None,
    limit: int | None = None,
    resume: bool = False,
    device: str | torch.device = "auto",
    progress: bool = True,
    log: Callable[[str], Any] = print,
    val_split: float = 0.1,
    splits: Splits | None = None,
    source: Source | None = None,
    metric: Any = None,
    key: dict[str, Any] | None = None,
    test: bool = True,
    finish: bool = True,
) -> dict[str, Any]:
    """Run `recipe`; write out_dir/model.dzip, report.json, report.md, history.json and tb/.

    Every score during the run is on the validation split; with `test`, the test split is read
    once at the end, for the file and the dense model it came from.

    Args:
        recipe: every setting of the run (pipeline.recipe).
        out_dir: the run's directory.
        data_dir: where the recipe's data set's files are (None: its default location).
        from_checkpoint: dense weights to start from instead of training (safetensors or a
            PyTorch state dict).
        limit: use only the first N samples of each split.
        resume: continue from out_dir/checkpoints if they are this run's (refused if another's).
        device: "auto" (a CUDA GPU if PyTorch sees one), "cpu", "cuda" or "cuda:N". Under torchrun
            (WORLD_SIZE > 1) each rank joins the process group and takes its share of every batch.
        progress: progress bars (on a terminal).
        log: where the one-line stage summaries go.
        val_split: the fraction of the training data held out for validation (a data set with a
            validation split of its own uses that).
        splits: the data, already split (instead of the recipe's data set by name).
        source: where the model comes from (default: the recipe's registry model).
        metric: "top1" (default), "perplexity", a Metric or a function (model, data) -> float.
        key: what else identifies the run (a user's model and data), for resuming.
        test: score the file on the test split at the end.
        finish: save, reload and report (False: stop after the stages, as a dense-only run does).

    Returns the report (also written to report.json).

    Examples:
        >>> report = run_recipe(default_recipe("lenet300"), "out/lenet300")
        >>> report = run_recipe(default_recipe("lenet300"), "out/lenet300", resume=True)   # after a kill
    """
    if source is None and recipe.model not in models.names():
        models.create(recipe.model)  # the registry's own one-sentence error, before any data is read
    out = check_out(out_dir)
    seed_everything(recipe.seed)
    start = time.perf_counter()
    where = resolve_device(device)
    init_from_env(where)
    splits, source, key = prepare(recipe, data_dir=data_dir, limit=limit, val_split=val_split, splits=splits,
                                  source=source, key=key, test=test)
    key_of_run = run_key(recipe, {"from": None if from_checkpoint is None else str(Path(from_checkpoint).resolve()),
                                "model": source.key, "validation": splits.info.get("val"),
                                "metric": metric_of(metric).name, **(key or {})})
    run = Run(recipe, out, splits=splits, source=source, metric=metric_of(metric), from_checkpoint=from_checkpoint,
              progress=progress, log=log, device=local_device(where), key=key_of_run)
    if run.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStateError(f"cannot create --out {out}: {e.strerror}.") from None
    with lock(out) if run.main else contextlib.nullcontext():
        barrier()
        return _compress(run, resume, round(time.perf_counter() - start, 2), test=test, finish=finish)


def check_out(out_dir: str | os.PathLike) -> Path:
    """A run's directory: anything but an existing file (ConfigError)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory.")
    return out


def check_max_drop(max_drop: Any) -> float:
    """A target drop: a finite number ≥ 0 (points of accuracy, % of perplexity)."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop) \
            or max_drop < 0:
        raise ConfigError(f"--max-drop must be a finite number ≥ 0, not {max_drop!r}.")
    return float(max_drop)


def prepare(recipe: Recipe, *, data_dir=None, limit: int | None = None, val_split: float = 0.1,
            splits: Splits | None = None, source: Source | None = None, key: dict[str, Any] | None = None,
            test: bool = True) -> tuple[Splits, Source, dict[str, Any]]:
    """The data, model source and identifying key of a run, loaded once: a search or a sweep
    prepares them and hands them to each of its runs.

    Args:
        recipe: the run's recipe (its data set, image size and seed, when `splits` is None).
        data_dir: where the data set's files are.
        limit: use only the first N samples of each split.
        val_split: the fraction held out for validation.
        splits: data already split (returned as is).
        source: the model's source (default: the recipe's registry model).
        key: what else identifies the run.
        test: load the test split too.

    Examples:
        >>> splits, source, key = prepare(recipe, val_split=0.1)
    """
    if splits is None:
        splits = load_splits(recipe.dataset, data_dir, limit=limit, size=recipe.image_size, fraction=val_split,
                             seed=recipe.seed, test=test)
        key = {"limit": limit, "data_dir": None if data_dir is None else str(data_dir), **(key or {})}
    source = Source.registry(recipe, splits.train) if source is None else source
    return splits, source, dict(key or {})


@contextlib.contextmanager
def lock(out: Path):
    """DIR/.lock for the length of a run: a second run into the same DIR is refused, not mixed in.

    The lock holds the owner's host and process id; one left by a killed run (its process gone)
    is taken over, so --resume after a kill -9 needs no cleaning up."""
    path = out / ".lock"
    me = f"{socket.gethostname()} {os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            host, _, pid = path.read_text().partition(" ") if path.exists() else ("", "", "")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                path.unlink(missing_ok=True)  # its owner was killed
                continue
            raise RunStateError(f"{out} is in use by another deepzip run (process {pid or '?'} on {host or '?'}); "
                                f"wait for it, or choose another --out.") from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _compress(run: Run, resume: bool, data_seconds: float, *, test: bool, finish: bool) -> dict[str, Any]:
    recipe = run.recipe
    where = _resume_point(run, resume)
    if where is None:
        run.seconds["data"] = data_seconds
    stages, first = stages_of(recipe), run.stage_index
    for i in range(first, len(stages)):
        run.stage_index = i
        begin = time.perf_counter()
        stages[i].run(run, where if i == first else None)
        name = stages[i].name
        run.seconds[name] = round(run.seconds.get(name, 0.0) + time.perf_counter() - begin, 2)
        if run.main:
            _record_weights(run, stages[i].moment)
        run.checkpoint_stage(i + 1)
    _digest(run)
    # The other ranks are done: rank 0 alone saves, reloads and reports (no barrier to time out on).
    return _finish(run, test) if run.main and finish else {}


def _digest(run: Run) -> None:
    """With DEEPZIP_RANK_DIGESTS=DIR, each rank writes a digest of its weights, masks and codebooks
    to DIR/rank<r>.txt: equal digests show that every rank holds the same model."""
    where = os.environ.get("DEEPZIP_RANK_DIGESTS")
    if not where:
        return
    write_text(Path(where) / f"rank{world()[0]}.txt", weights_digest(run.model))


def _record_weights(run: Run, moment: str) -> None:
    """Histograms of the weights as a stage left them, for the report (DIR/weights.json); each
    layer keeps the dense model's range, so its moments share one axis."""
    path = run.out / "weights.json"
    moments = json.loads(path.read_text()) if path.is_file() and moment != "dense" else {}
    ranges = {k: v["limit"] for k, v in moments.get("dense", {}).items()}
    moments[moment] = weight_histograms(run.model, ranges)
    write_text(path, json.dumps(moments))


def _resume_point(run: Run, resume: bool) -> dict[str, Any] | None:
    """Restore the last checkpoint if asked to and it is this run's; refuse another run's."""
    path = run.out / CHECKPOINT
    if not path.exists():
        if resume:
            run.log(f"no checkpoint in {path.parent}: starting from the beginning")
        return None
    _, info = read_checkpoint(path)
    if (info["meta"] or {}).get("key") != run.key:
        raise RunStateError(f"{run.out} holds checkpoints of another run (a different recipe, data or --from); "
                            f"choose another --out, or delete {path.parent} to start this run there.")
    if not resume:
        barrier()  # every rank has read it before rank 0 removes it
        if run.main:
            shutil.rmtree(path.parent)
        return None
    where = run.restore()
    run.log(f"resuming at stage {run.stage_index + 1} ({'within it' if where else 'from its start'}) "
            f"from {path}")
    return where


def _rate_against_file(rate: dict[str, dict[str, float]], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The rate estimate per layer beside what the file spends on that layer (its codes and
    positions, codebook and live layout)."""
    spent = {e["layer"]: e for e in layers}
    out = {}
    for name, r in rate.items():
        e = spent.get(name, {})
        out[name] = {**r, "estimate_bytes": round(r["bits"] / 8), "file_bytes": e.get("bytes")}
    return out


def _finish(run: Run, test: bool) -> dict[str, Any]:
    """Save the file, reload it, score the reloaded model on validation (and, with `test`, the
    file and the dense model on the test split, once), write the reports."""
    recipe, out, acc = run.recipe, run.out, run.acc
    path = out / "model.dzip"
    begin = time.perf_counter()
    x = run.example(1)
    save(run.model, path, coder=recipe.coder, index_bits=recipe.index_bits,
         metadata={"dataset": recipe.dataset, run.metric.name: {k: round(v, 4) for k, v in acc.items()},
                   "validation": run.splits.info.get("val"), "recipe": recipe.changes(),
                   "input": {"shape": list(x.shape[1:]), "dtype": str(x.dtype).removeprefix("torch.")}})
    run.seconds["save"] = round(time.perf_counter() - begin, 2)
    begin = time.perf_counter()
    # A registry model is rebuilt from the file alone; a user's is filled into a fresh copy.
    reloaded = load(path, model=None if "registry" in run.source.key else run.fresh_model()).to(run.device)
    acc["from_file"] = run.score(reloaded, run.val_set)  # rank 0 alone: not sharded
    same = bool(torch.equal(predict(reloaded, run.val_set), predict(run.model, run.val_set)))
    run.seconds["reload"] = round(time.perf_counter() - begin, 2)
    run.log(f"from file {run.metric.name} {run.show(acc['from_file'])} on validation  (predictions identical to the "
            f"in-memory model: {same})")
    info = inspect(path)
    report = {
        "model": recipe.model, "dataset": recipe.dataset, "dense_bytes": info["dense_bytes"],
        "file_bytes": info["file_bytes"], "ratio": round(info["ratio"], 2), "scores": acc,
        **({"accuracy": acc} if run.metric.name == "accuracy" else {}),
        "metric": {"name": run.metric.name, "higher_is_better": run.metric.higher_is_better,
                   "drop": round(run.metric.drop(acc["dense"], acc["from_file"]), 4)},
        "sparsity": round(sparsity_of(reloaded)["total"], 4), "identical_predictions": same,
        "coder": recipe.coder, "seconds": run.seconds, "layers": info["layers"], "recipe": recipe.to_dict(),
        "validation": run.splits.info.get("val"), "test_samples": run.splits.info.get("test_size"),
    }
    if test and run.test_set is not None:
        report["test"] = score_test(run, reloaded)
        t = report["test"]
        run.log(f"test     {run.metric.name} from the file {run.show(t['from_file'])}, dense {run.show(t['dense'])} "
                f"(drop {t['drop']:.2f}; the test split's one reading)")
    if run.rate is not None:
        report["rate"] = _rate_against_file(run.rate, info["layers"])
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_text(out / "report.md", report_markdown(report))
    write_report([out], out / "report.html")
    run.log(f"report   {out / 'report.html'}")
    return report


def score_test(run: Run, model: torch.nn.Module) -> dict[str, float]:
    """The test split's one reading: `model` (the chosen file, reloaded) and the dense model it
    was made from, and the drop between them.

    Args:
        run: the finished run (its splits, metric and dense weights).
        model: the model reloaded from the run's file.

    Examples:
        >>> score_test(run, load(run.out / "model.dzip"))
        {'dense': 89.4, 'from_file': 89.2, 'drop': 0.2}
    """
    with torch.random.fork_rng(devices=[]):
        dense = run.fresh_model()
    run.load_dense(dense)
    return _test_scores(run.metric, run.test_set, model, dense)


def score_chosen(path: str | os.PathLike, *, splits: Splits, source: Source, metric: Any, dense: str | os.PathLike,
                 device: str | torch.device = "auto") -> dict[str, float]:
    """The test split's one reading for a file a search or sweep chose (on validation), and for
    the dense model whose weights are at `dense`.

    Examples:
        >>> score_chosen("out/search/model.dzip", splits=s, source=src, metric="top1", dense="out/search/dense.safetensors")
        {'dense': 89.5, 'from_file': 89.3, 'drop': 0.2}
    """
    where = resolve_device(device)
    model = load(path, model=None if "registry" in source.key else source.build()).to(where)
    with torch.random.fork_rng(devices=[]):
        reference = source.build()
    load_weights(reference, dense)
    return _test_scores(metric_of(metric), splits.test, model, reference.to(where))


def _test_scores(metric: Metric, test: Any, model: torch.nn.Module, dense: torch.nn.Module) -> dict[str, float]:
    scores = {"dense": metric(dense, test), "from_file": metric(model, test)}
    return {**{k: round(v, 4) for k, v in scores.items()},
            "drop": round(metric.drop(scores["dense"], scores["from_file"]), 4)}
