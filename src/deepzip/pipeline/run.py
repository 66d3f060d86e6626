"""`run_recipe`: the stages of a recipe, run in order, checkpointed, resumable; then the file.

Each stage calls the public API; this module only chains them (the context they share is
pipeline.context, the run's directory and checkpoints pipeline.workdir, the file and reports
pipeline.finish). The accuracy that counts is the one measured on the model reloaded from disk.

DIR/checkpoints/last.safetensors is rewritten (atomically) after every epoch and every stage;
`compress(..., resume=True)` continues from it and ends with the same weights, accuracies and
model.dzip bytes as a run that was never interrupted (same machine, same thread count): the
checkpoint holds the weights with their masks and codebooks, the optimizer, the learning-rate
schedule, the data order's generator, torch's random state, the AGP schedule's progress, and
the accuracies and history so far. Wall-clock seconds go to report.json, never into the file.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .. import models
from ..data.splits import Splits
from ..errors import ConfigError, RunStateError
from ..files import write_text
from ..report import weight_histograms
from ..train import metric_of, resolve_device, seed_everything
from ..train.checkpoint import weights_digest
from ..train.distributed import barrier, init_from_env, local_device, world
from .context import RunContext
from .finish import finish_run, score_chosen, score_test  # noqa: F401 (score_test: the pipeline's API)
from .recipe import Recipe
from .source import Source, prepare
from .stages import stages_of
from .workdir import check_out, lock, resume_point, run_key


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
    run = RunContext(recipe, out, splits=splits, source=source, metric=metric_of(metric), from_checkpoint=from_checkpoint,
              progress=progress, log=log, device=local_device(where), key=key_of_run)
    if run.main:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunStateError(f"cannot create --out {out}: {e.strerror}.") from None
    with lock(out) if run.main else contextlib.nullcontext():
        barrier()
        return _compress(run, resume, round(time.perf_counter() - start, 2), test=test, finish=finish)


def check_max_drop(max_drop: Any) -> float:
    """A target drop: a finite number ≥ 0 (points of accuracy, % of perplexity)."""
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not math.isfinite(max_drop) \
            or max_drop < 0:
        raise ConfigError(f"--max-drop must be a finite number ≥ 0, not {max_drop!r}.")
    return float(max_drop)


def _compress(run: RunContext, resume: bool, data_seconds: float, *, test: bool, finish: bool) -> dict[str, Any]:
    recipe = run.recipe
    where = resume_point(run, resume)
    if where is None:
        run.seconds["data"] = data_seconds
    stages, first = stages_of(recipe), run.stage_index
    for i in range(first, len(stages)):
        run.stage_index = i
        begin = time.perf_counter()
        result = stages[i].run(run, where if i == first else None)
        name = stages[i].name
        run.seconds[name] = round(run.seconds.get(name, 0.0) + time.perf_counter() - begin, 2)
        if result is not None:  # an added stage's: kept for report.json, and in the checkpoints
            run.results.append(result.record(name, run.seconds[name]))
        if run.main:
            _record_weights(run, stages[i].moment)
        run.checkpoint_stage(i + 1)
    _digest(run)
    # The other ranks are done: rank 0 alone saves, reloads and reports (no barrier to time out on).
    return finish_run(run, test) if run.main and finish else {}


def _digest(run: RunContext) -> None:
    """With DEEPZIP_RANK_DIGESTS=DIR, each rank writes a digest of its weights, masks and codebooks
    to DIR/rank<r>.txt: equal digests show that every rank holds the same model."""
    where = os.environ.get("DEEPZIP_RANK_DIGESTS")
    if not where:
        return
    write_text(Path(where) / f"rank{world()[0]}.txt", weights_digest(run.model))


def _record_weights(run: RunContext, moment: str) -> None:
    """Histograms of the weights as a stage left them, for the report (DIR/weights.json); each
    layer keeps the dense model's range, so its moments share one axis."""
    path = run.out / "weights.json"
    moments = json.loads(path.read_text()) if path.is_file() and moment != "dense" else {}
    ranges = {k: v["limit"] for k, v in moments.get("dense", {}).items()}
    moments[moment] = weight_histograms(run.model, ranges)
    write_text(path, json.dumps(moments))
