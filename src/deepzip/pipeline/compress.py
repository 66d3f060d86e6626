"""`compress`: the whole pipeline for any model and data, as one call (the `deepzip compress`
command is a thin layer over it).

    result = dz.compress(model, train_loader, test_loader, max_drop=0.3, out="out/mine")
    result.path, result.ratio, result.validation, result.test, result.search

Your model (any nn.Module, trained) and your data (deepzip data sets, or DataLoaders) go
through the same stages, checkpoints, resume, reports and TensorBoard as a registry model.
Choices are made on a validation split held out of the training data (or the one you pass);
the test data is read once, for the file that was chosen.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import models
from ..data.splits import Splits, example_inputs, load_splits, split
from ..errors import ConfigError
from ..models.sources import describe
from ..selection import weights
from ..train import metric_of, save_checkpoint
from ..train.checkpoint import load_weights, weights_digest
from ..train.distributed import world
from .recipe import Recipe, find_recipe, from_dict, load_recipe
from .run import run_recipe
from .search import search as run_search
from .source import Source
from .sweep import sweep


@dataclass(frozen=True)
class CompressResult:
    """What `compress` made.

    path: the .dzip (None for a sweep without max_drop, which chooses none); out: the run's
    directory (reports, checkpoints, every candidate);
    file_bytes, dense_bytes, ratio; metric: what was measured ("accuracy", "perplexity", …);
    validation: {"dense", "from_file", "drop"} on the validation split; test: the same on the
    test data, read once for this file (None without test data); report: report.json;
    search: the target search ({"candidates": …}) or the rate sweep ({"points": …}), or None.
    """

    path: Path | None
    out: Path
    file_bytes: int
    dense_bytes: int
    ratio: float
    metric: str
    validation: dict[str, float]
    test: dict[str, float] | None
    report: dict[str, Any]
    search: dict[str, Any] | None = None


def _recipe(recipe: Recipe | str | os.PathLike | dict | None, name: str, overrides: dict[str, Any]) -> Recipe:
    if isinstance(recipe, Recipe):  # through from_dict, so the overrides are checked like a recipe's own
        return from_dict(recipe.to_dict(), model=name, **overrides)
    if isinstance(recipe, dict):
        return from_dict(recipe, model=name, **overrides)
    if recipe is None:
        return from_dict({}, model=name, **overrides)
    return load_recipe(find_recipe(recipe), model=name, **overrides)


def check_fit(model: nn.Module, splits: Splits) -> None:
    """One forward pass on two training samples, before anything trains: inputs the model cannot
    take, or outputs that do not match the labels, are one sentence here, not a traceback later.

    Args:
        model: the model the run will train.
        splits: its data.

    Examples:
        >>> check_fit(net, split(train_loader, test_loader))
    """
    x = example_inputs(splits.train, 2)
    y = next(iter(splits.train))[1][:2] if not hasattr(splits.train, "y") else splits.train.y[:2]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(next(model.parameters(), torch.empty(0)).device))
    except Exception as e:  # whatever the user's forward raises on these inputs
        raise ConfigError(f"the model cannot run on the data's inputs (a batch of shape {tuple(x.shape)}, "
                          f"{str(x.dtype).removeprefix('torch.')}): {type(e).__name__}"
                          f"{': ' + str(e).splitlines()[0] if str(e) else ''}.") from None
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"the model returns a {type(out).__name__}, not a tensor of logits; deepzip reads the "
                          f"classes on dimension 1 of model(x) (wrap the model so it returns them).")
    expected = (len(y), *y.shape[1:])
    if out.dim() < 2 or (out.shape[0], *out.shape[2:]) != expected or (y.numel() and int(y.max()) >= out.shape[1]):
        raise ConfigError(f"the model's output {tuple(out.shape)} does not fit the labels {tuple(y.shape)}: deepzip "
                          f"reads N × classes (or N × classes × T for a language model) with every label below the "
                          f"number of classes.")


def compress(
    model: nn.Module | str,
    train_data: Any = None,
    eval_data: Any = None,
    *,
    recipe: Recipe | str | os.PathLike | dict | None = None,
    max_drop: float | None = None,
    rate_weights: list[float] | None = None,
    out: str | os.PathLike = "out/deepzip",
    val_data: Any = None,
    val_split: float = 0.1,
    metric: Any = None,
    trained: bool = True,
    from_checkpoint: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    seed: int | None = None,
    coder: str | None = None,
    max_candidates: int = 8,
    confidence: float = 0.84,
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> CompressResult:
    """Compress a model into a .dzip: with a recipe as it says, or with `max_drop` the smallest
    file whose validation score stays within that much of the dense model's.

    Args:
        model: your nn.Module (trained, unless `trained=False`), or a registry name ("lenet300").
        train_data: a deepzip Dataset, a DataLoader (or any iterable of (inputs, labels) batches,
            with `val_data`), or a data set's name ("fashion-mnist"; None: the recipe's).
        eval_data: the test data, scored once at the end for the file chosen (None with a data
            set's name: its test split).
        recipe: a Recipe, a mapping, a YAML path or a shipped recipe's name; None: deepzip's
            defaults for the model (generic ones for yours).
        max_drop: the target: points of accuracy (or % of perplexity) the file may lose on
            validation. Without `rate_weights`, a search over per-layer budgets (pipeline/search.py).
        rate_weights: one run per λ of the recipe's rate stage; with `max_drop`, the smallest
            file within it is chosen (on validation).
        out: the run's directory.
        val_data: a validation split of your own; otherwise `val_split` of `train_data` is held
            out (seeded by the recipe's seed), or a named data set's own validation split used.
        metric: "top1" (default), "perplexity" (a causal language model's N×V×T logits), a
            deepzip Metric, or any function (model, data) -> float (higher is better).
        trained: the model's weights are the dense model (else the recipe's dense stage trains it).
        from_checkpoint: dense weights to start from (safetensors or a state dict) instead.
        data_dir: where a named data set's files are.
        limit: use only the first N samples of each split.
        seed: overrides the recipe's.
        coder: overrides the recipe's.
        max_candidates: most candidate runs of a search.
        confidence: a search accepts a file when its validation drop plus z standard errors of
            it (z the normal quantile of `confidence`: one error at 0.84) is within max_drop;
            0.5 accepts on the drop alone (pipeline/search.py).
        resume: continue a killed run or search in `out`.
        device: where to train ("auto", "cpu", "cuda").
        progress: progress bars.
        log: where the one-line summaries go.

    Returns a CompressResult.

    Examples:
        >>> result = dz.compress(net, train_loader, test_loader, max_drop=0.5, out="out/mine")
        >>> result.ratio, result.validation["drop"], result.test["drop"]
    """
    out, registry = Path(out), isinstance(model, str)
    _check_call(model, train_data, eval_data, val_data, searching=max_drop is not None and rate_weights is None)
    name = model if registry else describe(models.arch_of(model)) if models.arch_of(model) else type(model).__name__
    overrides = {"seed": seed, "coder": coder, **({"dataset": train_data} if isinstance(train_data, str) else {})}
    r = _recipe(recipe, name, overrides)
    if not isinstance(train_data, str) and train_data is not None and r.dataset == "fashion-mnist" and not registry:
        r = r.replace(dataset="(your data)")
    metric = metric_of(metric)
    splits, key = _splits(r, train_data, eval_data, val_data, val_split, data_dir, limit)
    source = None if registry else Source.module(model, {"module": name})
    _check_start(r, source, splits, from_checkpoint, trained and not registry, log)
    check_fit(model if not registry else _probe(r, splits), splits)
    start = from_checkpoint if registry else _given(model, name, source, out, trained, from_checkpoint)
    common = dict(splits=splits, source=source, metric=metric, key=key, device=device, progress=progress, log=log,
                  resume=resume)
    if rate_weights is not None:
        result = sweep(r, rate_weights, out, max_drop=max_drop, from_checkpoint=start, confidence=confidence, **common)
        return _result(out, result.get("chosen"), metric.name, result, result.get("test"))
    if max_drop is not None:
        result = run_search(r, out, max_drop=max_drop, from_checkpoint=start, max_candidates=max_candidates,
                            confidence=confidence, **common)
        return _result(out, result["chosen"], metric.name, result, result.get("test"))
    report = run_recipe(r, out, from_checkpoint=start, **common)
    return _result(out, str(out), metric.name, None, report.get("test"), report)


def _check_call(model: Any, train_data: Any, eval_data: Any, val_data: Any, *, searching: bool) -> None:
    """What `compress` refuses before it reads any data, in one sentence each."""
    registry = isinstance(model, str)
    if not registry and not isinstance(model, nn.Module):
        raise ConfigError(f"model must be an nn.Module or a registry model's name, not a {type(model).__name__}.")
    if registry and model not in models.names():
        models.create(model)  # the registry's one-sentence error
    if (train_data is None or isinstance(train_data, str)) and (eval_data is not None or val_data is not None):
        raise ConfigError("eval_data and val_data go with data of your own (a Dataset or DataLoader as train_data); "
                          "a named data set brings its own test split and validation.")
    if world()[1] > 1 and (searching or not registry):
        raise ConfigError("a --max-drop search and a model of your own run in one process; run them without "
                          "torchrun (a recipe on a registry model runs under it).")


def _given(model: nn.Module, name: str, source: Source, out: Path, trained: bool,
           from_checkpoint: str | os.PathLike | None) -> str | os.PathLike | None:
    """A user's model: the dense weights the run starts from (its own trained weights, saved under
    their digest, so a resumed run can only ever start from the weights it was given)."""
    if not any(True for _ in weights(model)):
        raise ConfigError(f"{name} has no weight matrix deepzip compresses (Linear, Conv, Embedding, attention, "
                          f"recurrent): nothing to prune or share; name its layers in the recipe's settings.")
    if not trained or from_checkpoint is not None:
        return from_checkpoint
    digest = weights_digest(model)[:16]
    start = out / f"given-{digest}.safetensors"
    if not start.is_file():
        save_checkpoint(model, start)
    source.key["weights"] = digest
    return start


def _check_start(recipe: Recipe, source: Source | None, splits: Splits, from_checkpoint: Any, given: bool,
                 log: Callable[[str], Any]) -> None:
    """Dense weights from elsewhere: refused now if they do not fit the model (not after the data is
    split), and a note when validation may be samples they were trained on."""
    if from_checkpoint is not None:
        with torch.random.fork_rng(devices=[]):
            probe = (Source.registry(recipe, splits.train) if source is None else source).build()
        load_weights(probe, from_checkpoint)
        del probe
    if (given or from_checkpoint is not None) and splits.info["val"]["source"] == "held out" \
            and not _held_out_by(from_checkpoint, splits):
        log("note     the dense weights were trained outside this run: if the training data they saw includes "
            "the samples held out for validation, validation scores flatter the file (the test split does not); "
            "pass a validation split the model never saw (val_data=, or a data set's own val split) to be sure")


def _probe(recipe: Recipe, splits: Splits) -> nn.Module:
    """The recipe's registry model as the data would size it, built aside from torch's stream."""
    with torch.random.fork_rng(devices=[]):
        return Source.registry(recipe, splits.train).build()


def _held_out_by(path: str | os.PathLike | None, splits: Splits) -> bool:
    """Whether dense weights come from a deepzip run that held out this very validation split."""
    from ..train import read_checkpoint

    if path is None or Path(path).suffix != ".safetensors":
        return False
    try:
        meta = read_checkpoint(path)[1].get("meta") or {}
    except ConfigError:
        return False
    return isinstance(meta, dict) and meta.get("validation") == splits.info.get("val")


def _splits(recipe: Recipe, train_data: Any, eval_data: Any, val_data: Any, val_split: float, data_dir: Any,
            limit: int | None) -> tuple[Splits, dict[str, Any]]:
    if train_data is None or isinstance(train_data, str):
        name = train_data or recipe.dataset
        splits = load_splits(name, data_dir, limit=limit, size=recipe.image_size, fraction=val_split, seed=recipe.seed)
        return splits, {"limit": limit, "data_dir": None if data_dir is None else str(data_dir), "data": name}
    splits = split(train_data, eval_data, val=val_data, fraction=val_split, seed=recipe.seed)
    return splits, {"data": _fingerprint(train_data), "val": _fingerprint(val_data) if val_data is not None else None}


def _fingerprint(data: Any) -> str:
    """What identifies a user's data for resuming: a Dataset's tensors, else its type and size."""
    if hasattr(data, "x") and hasattr(data, "y"):
        digest = hashlib.sha256()
        for t in (data.x, data.y):
            digest.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()[:16]
    inner = getattr(data, "dataset", None)
    try:
        size = len(inner) if inner is not None else None
    except TypeError:
        size = None
    return f"{type(data).__name__}:{type(inner).__name__ if inner is not None else ''}:{size}"


def _result(out: Path, chosen: str | None, metric: str, search: dict[str, Any] | None,
            test: dict[str, float] | None, report: dict[str, Any] | None = None) -> CompressResult:
    """The result of a run (its report as run_recipe returned it), or of a search or sweep (the
    chosen candidate's report.json, which their directories keep as output)."""
    import json

    where = Path(chosen) / "report.json" if chosen is not None and report is None else None
    if report is None:
        report = json.loads(where.read_text()) if where is not None and where.is_file() else {}
    scores = report.get("scores", {})
    validation = {"dense": scores.get("dense"), "from_file": scores.get("from_file"),
                  "drop": report.get("metric", {}).get("drop")}
    return CompressResult(path=out / "model.dzip" if chosen is not None else None, out=out,
                          file_bytes=report.get("file_bytes", 0),
                          dense_bytes=report.get("dense_bytes", 0), ratio=report.get("ratio", 0.0), metric=metric,
                          validation=validation, test=test, report=report, search=search)
