"""A target instead of a hand-tuned recipe: the smallest file whose validation score stays
within `max_drop` of the dense model's.

    dense model ─▶ per-layer sensitivity (validation) ─▶ budgets at an estimated ratio R
                ─▶ one candidate run per R (the recipe's stages and retraining budget)
                ─▶ bracket, then bisect R ─▶ the smallest accepted file ─▶ its test score, once

What is searched is one number, the ratio R that the size model (kept weights × their bits plus
their positions') estimates for the weight matrices; everything else follows from it
(`Budgets`). Around a reference allocation the budgets at R scale every layer's kept fraction
by one factor (and its unit pruning with it), and below the reference add codebook bits, so the
layers keep the reference's proportions and the lowest R tends to a nearly lossless model. The
reference is the recipe's, when it names per-layer sparsities (a shipped `best-*` recipe, tuned
on some seeds); otherwise it comes from the dense model's sensitivity (pipeline/sensitivity.py:
each layer pruned alone over a grid, and shared alone over a grid of bits, on the validation
split): the exact multiple-choice knapsack for the smallest estimated file whose summed losses
before retraining stay within `max_drop`, which retraining then recovers from.

Why R and not a sparsity: the file's size is what the search minimises, and the estimate tracks
it (bytes grow with kept weights × bits), so bisecting on log R bisects on log bytes; each
candidate retrains from the dense model with the recipe's budget, and its score, read back
from its file on the validation split, accepts or rejects it. The first candidate is the
reference; from it R steps up (accepted) or down (rejected) by `step` until the bracket closes,
then is bisected geometrically until its ends are within `precision` of each other or
`max_candidates` have run. Every decision depends only on the finished candidates, so a killed
search resumes where it was and ends with the same file.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from statistics import NormalDist
from typing import Any

import torch

from ..errors import ConfigError, RunStateError, TrainingError
from ..files import atomic_path, write_text
from ..report import candidates_png, write_search_report
from ..train import metric_of
from ..train.checkpoint import load_weights
from .budgets import Budgets, candidate_recipe
from .choose import Judge, choose
from .recipe import Recipe
from .run import check_max_drop, run_recipe
from .sensitivity import plot as plot_sensitivity
from .sensitivity import scan
from .source import Source, prepare
from .workdir import check_out, lock, run_key

GRID = (0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995)
BITS = (3, 4, 5, 6, 8)  # 2-bit codebooks (3 centroids) lose more after pruning than a probe on dense weights shows
SCAN_SAMPLES = 2000  # validation samples the sensitivity probes score on (each probe is one pass)


def _subset(data: Any, n: int) -> tuple[Any, int]:
    """The first `n` samples of `data` (a Dataset, or the batches of an iterable taken until they
    hold n), and how many that is: the sensitivity probes score on them."""
    from ..data import Dataset

    if isinstance(data, Dataset):
        return (Dataset(data.x[:n], data.y[:n], data.classes, data.name) if len(data) > n else data), min(n, len(data))
    taken, count = [], 0
    for x, y in data:
        taken.append((x, y))
        count += len(y)
        if count >= n:
            break
    return taken, count


def _per_layer_recipe(recipe: Recipe) -> bool:
    """The recipe names sparsities layer by layer (a tuned starting point), not by kind."""
    from ..selection import KINDS

    p = recipe.prune
    return p is not None and isinstance(p.sparsity, dict) and any(k not in (*KINDS, "default") for k in p.sparsity)


def next_ratio(done: list[dict[str, Any]], start: float, step: float, precision: float, top: float) -> float | None:
    """The next R to try, from the finished candidates (a pure function of them, so a resumed
    search asks for the same ones), or None when the bracket is closed.

    Examples:
        >>> next_ratio([{"target_ratio": 50, "accepted": True}, {"target_ratio": 100, "accepted": False}],
        ...            50, 2.0, 1.1, 400)
        70.71...
    """
    if not done:
        return start
    ok = [c["target_ratio"] for c in done if c["accepted"]]
    low = max(ok) if ok else None
    above = [c["target_ratio"] for c in done if not c["accepted"] and (low is None or c["target_ratio"] > low)]
    high = min(above) if above else None
    if low is not None and high is not None:
        return None if high / low <= precision else math.sqrt(low * high)
    if low is not None:
        return None if low >= top * 0.98 else min(low * step, top * 0.98)
    return None if high <= 1.5 else max(high / step, 1.2)


def search(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    max_drop: float,
    from_checkpoint: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    val_split: float = 0.1,
    splits: Any = None,
    source: Source | None = None,
    metric: Any = None,
    key: dict[str, Any] | None = None,
    max_candidates: int = 8,
    precision: float = 1.1,
    confidence: float = 0.84,
    start: str = "auto",
    resume: bool = False,
    device: str = "auto",
    progress: bool = True,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """The smallest file whose validation score is within `max_drop` of the dense model's.

    Args:
        recipe: the stages and retraining budget every candidate runs; its per-layer sparsities,
            if it names them, are the starting point (see the module's docstring).
        out_dir: OUT/dense (the dense run), OUT/candidates/NN-<R>x (one run each, kept),
            OUT/sensitivity.json|png, OUT/search.json, OUT/search.png, OUT/model.dzip (the
            chosen file), OUT/report.json|md|html.
        max_drop: points of accuracy (or % of perplexity) the file may lose on validation.
        from_checkpoint: the dense weights (else the recipe's dense stage trains them).
        data_dir: as for `run_recipe`.
        limit: as for `run_recipe`.
        val_split: as for `run_recipe`.
        splits: as for `run_recipe`.
        source: as for `run_recipe`.
        metric: as for `run_recipe`.
        key: as for `run_recipe`.
        max_candidates: most candidate runs.
        precision: stop bisecting when the accepted and rejected ratios are this close.
        confidence: a candidate is accepted when its validation drop plus z standard errors of
            that drop (the normal quantile z of `confidence`: one error at 0.84) is within
            `max_drop`, so that a file chosen on one validation split keeps the drop on data it
            has not seen as often; 0.5 accepts on the drop alone.
        start: "recipe" (scale the recipe's per-layer sparsities), "sensitivity" (the knapsack
            over the scan), or "auto": the recipe's if it names sparsities per layer (not kinds).
        resume: continue a killed search (refused if OUT holds another search's work).
        device: as for `run_recipe`.
        progress: as for `run_recipe`.
        log: as for `run_recipe`.

    Returns the search: {"candidates": […], "chosen": dir, "test": {…}, …} (also OUT/search.json).

    Examples:
        >>> search(load_recipe("recipes/best-lenet300.yaml"), "out/target", max_drop=0.3)
    """
    check_max_drop(max_drop)
    if start not in ("auto", "recipe", "sensitivity"):
        raise ConfigError(f"start must be 'auto', 'recipe' or 'sensitivity', not {start!r}.")
    if start == "recipe" and not _per_layer_recipe(recipe):
        raise ConfigError("a search from the recipe's budgets needs a recipe with per-layer sparsities "
                          "(prune: {sparsity: {layer: …}}); start='sensitivity' derives them from the model.")
    if not (isinstance(confidence, (int, float)) and 0.5 <= confidence < 1):
        raise ConfigError(f"--confidence must be in [0.5, 1), not {confidence!r}.")
    if not (isinstance(max_candidates, int) and max_candidates >= 1):
        raise ConfigError(f"--max-candidates must be a whole number ≥ 1, not {max_candidates!r}.")
    out = check_out(out_dir)
    metric = metric_of(metric)
    splits, source, key = prepare(recipe, data_dir=data_dir, limit=limit, val_split=val_split, splits=splits,
                                  source=source, key=key)
    common = dict(splits=splits, source=source, metric=metric, key=key, device=device, progress=progress, log=log)
    skey = run_key(recipe, {"start": start, "max_drop": max_drop, "metric": metric.name, "model": source.key, "data": key,
                         "validation": splits.info.get("val"),
                         "from": None if from_checkpoint is None else str(Path(from_checkpoint).resolve()),
                         "max_candidates": max_candidates, "precision": precision, "confidence": confidence})
    out.mkdir(parents=True, exist_ok=True)
    with lock(out):
        _claim(out, skey, resume)
        started = time.perf_counter()
        dense = _dense(recipe, out, from_checkpoint, resume, common)
        model = source.build()
        load_weights(model, dense)
        model.to(torch.device("cpu"))
        base = metric(model, splits.val)
        shape = _shape(recipe, model, out, splits, metric, max_drop, start, progress, log)
        judge = Judge(metric, model, splits.val, source, max_drop, NormalDist().inv_cdf(confidence))
        state = _candidates(recipe, out, shape, dense, judge, max_candidates, precision, resume, common, log)
        return _conclude(out, state, skey, splits, source, metric, dense, device, base, max_drop, log,
                         round(time.perf_counter() - started, 1))


def _claim(out: Path, skey: str, resume: bool) -> None:
    """Refuse another search's directory; without --resume, this search starts over."""
    path = out / "search.json"
    if path.is_file():
        try:
            previous = json.loads(path.read_text()).get("key")
        except (ValueError, OSError, AttributeError):
            previous = None
        if previous != skey:
            raise RunStateError(f"{out} holds another search (another recipe, target, model or data); choose another "
                                f"--out, or delete {out} to search there.")
        if not resume:
            for sub in ("candidates", "dense"):
                shutil.rmtree(out / sub, ignore_errors=True)
            for name in ("model.dzip", "sensitivity.json", "report.json"):
                (out / name).unlink(missing_ok=True)
    if not path.is_file() or not resume:
        write_text(path, json.dumps({"key": skey, "candidates": []}, indent=2))


def _dense(recipe: Recipe, out: Path, from_checkpoint, resume: bool, common: dict[str, Any]) -> Path:
    """The dense weights: given, or trained by the recipe's dense stage into OUT/dense."""
    if from_checkpoint is not None:
        return Path(from_checkpoint)
    # Resumed, a finished dense run restores its last checkpoint and is done at once.
    dense_only = recipe.replace(prune=None, share=None, rate=None, channels=None)
    run_recipe(dense_only, out / "dense", resume=resume, test=False, finish=False, **common)
    return out / "dense" / "dense.safetensors"


def _shape(recipe: Recipe, model: torch.nn.Module, out: Path, splits: Any, metric: Any, max_drop: float, start: str,
           progress: bool, log: Callable[[str], Any]) -> Budgets:
    if start == "recipe" or (start == "auto" and _per_layer_recipe(recipe)):
        log("search   from the recipe's per-layer budgets (its kept fractions scaled together)")
        return Budgets.from_recipe(recipe, model)
    path = out / "sensitivity.json"
    result = json.loads(path.read_text()) if path.is_file() else None
    if result is None:
        probe, count = _subset(splits.val, SCAN_SAMPLES)
        reference = metric(model, probe)
        log(f"search   sensitivity of every layer on {count} validation samples")
        result = scan(model, lambda m: -metric.drop(reference, metric(m, probe)), sparsities=GRID, bits=BITS,
                      progress=progress)
        write_text(path, json.dumps(result, indent=1))
        plot_sensitivity(result, str(out / "sensitivity.png"))
    return Budgets.from_scan(result, max_drop)


def _candidates(recipe: Recipe, out: Path, shape: Budgets, dense: Path, judge: Judge, max_candidates: int,
                precision: float, resume: bool, common: dict[str, Any],
                log: Callable[[str], Any]) -> list[dict[str, Any]]:
    step = 1.35 if shape.kind == "recipe" else 2.0  # a tuned recipe starts near the answer
    start = max(2.0, min(shape.reference, shape.top * 0.98))
    done: list[dict[str, Any]] = []
    # A candidate finished before a kill keeps the time it took then, not the moment its resume took.
    earlier = {c["dir"]: c["seconds"] for c in json.loads((out / "search.json").read_text()).get("candidates", [])
               if c.get("seconds") is not None} if resume and (out / "search.json").is_file() else {}
    for index in range(1, max_candidates + 1):
        ratio = next_ratio(done, start, step, precision, shape.top)
        if ratio is None:
            break
        budgets = shape.at(ratio)
        where = out / "candidates" / f"{index:02d}-{ratio:.1f}x"
        log(f"candidate {index}: estimated {ratio:.1f}× → {where}")
        begin = time.perf_counter()
        row = {"index": index, "dir": str(where), "target_ratio": round(ratio, 4), "budgets": budgets}
        finished = resume and (where / "report.json").is_file()
        try:
            # The search's key covers all a candidate depends on: a finished one is taken as it is.
            report = (json.loads((where / "report.json").read_text()) if finished
                      else run_recipe(candidate_recipe(recipe, budgets), where, from_checkpoint=dense, test=False,
                                      resume=resume, **common))
        except TrainingError as e:
            row.update(failed=str(e), accepted=False, drop=None)
            log(f"candidate {index}: failed ({e})")
        else:
            row.update(bytes=report["file_bytes"], ratio=report["ratio"], score=round(report["scores"]["from_file"], 4),
                       dense=round(report["scores"]["dense"], 4), **judge(where / "model.dzip"),
                       minutes=round(sum(report["seconds"].values()) / 60, 2))
            se = f" ± {row['se']:.2f}" if row["se"] is not None else ""
            log(f"candidate {index}: {row['bytes']:,} B, {row['ratio']:.1f}×, validation {row['score']:.2f} "
                f"(drop {row['drop']:.2f}{se}): {'accepted' if row['accepted'] else 'rejected'}")
        row["seconds"] = earlier[str(where)] if finished and str(where) in earlier \
            else round(time.perf_counter() - begin, 1)
        done.append(row)
        state = json.loads((out / "search.json").read_text())
        state["candidates"] = done
        write_text(out / "search.json", json.dumps(state, indent=2))
    return done


def _conclude(out: Path, done: list[dict[str, Any]], skey: str, splits: Any, source: Source, metric: Any, dense: Path,
              device: str, base: float, max_drop: float, log: Callable[[str], Any], seconds: float) -> dict[str, Any]:
    result = {"key": skey, "max_drop": max_drop, "metric": metric.name, "dense": round(base, 4),
              "validation": splits.info.get("val"), "candidates": done, "chosen": None, "seconds": seconds}
    best, test = choose(out, done, splits=splits, source=source, metric=metric, dense=dense, device=device)
    if best is not None:
        result["chosen"] = best["dir"]
        if test is not None:
            result["test"] = test
    write_text(out / "search.json", json.dumps(result, indent=2))
    with atomic_path(out / "search.png") as tmp:
        tmp.write_bytes(candidates_png(done, max_drop, metric=metric.name, chosen=result["chosen"],
                                       label=lambda c: f"#{c['index']}"))
    for c in done:
        if "failed" not in c:
            log(f"#{c['index']:<3} {c['bytes']:>9,} B  {c['ratio']:>7.1f}×  validation {c['score']:.2f} "
                f"(drop {c['drop']:.2f}){'  ← chosen' if c['dir'] == result['chosen'] else ''}")
    if best is None:
        finished = [c for c in done if "failed" not in c]
        closest = min(finished, key=lambda c: c["drop"]) if finished else None
        raise TrainingError(
            f"no candidate kept the validation {metric.name} within {max_drop:g} of the dense model's {base:.2f}"
            + (f" (closest: #{closest['index']}, {closest['ratio']:.1f}× at {closest['score']:.2f}, drop "
               f"{closest['drop']:.2f})" if closest else "")
            + f"; every candidate's file is kept in {out / 'candidates'}: allow a larger drop or retrain longer.")
    chosen = json.loads((Path(result["chosen"]) / "report.json").read_text())
    report = {**chosen, "search": {k: v for k, v in result.items() if k != "key"}, "test": result.get("test")}
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_search_report(result, out / "report.html")
    t = result.get("test")
    log(f"chosen   #{best['index']}: {best['bytes']:,} B, {best['ratio']:.1f}× at validation {best['score']:.2f} "
        f"(drop {best['drop']:.2f})" + (f"; test {t['from_file']:.2f} against dense {t['dense']:.2f} (drop "
                                        f"{t['drop']:.2f}, the test split's one reading)" if t else ""))
    return result
