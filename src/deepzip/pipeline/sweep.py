"""Rate-weight sweeps: one `run_recipe` run per λ, the score-against-bytes curve, and the pick.

The runs share one dense model: the first trains it (or all start from --from), the others
start from its checkpoint, so the curve shows what λ changes and nothing else. Every run is
scored on the validation split, the pick is made on it, and only the picked file (and the dense
model) is then scored on the test split, once. Each run is a normal run directory (resumable,
with its report); the sweep adds OUT/sweep.json, a comparison report.html, OUT/sweep.png (score
against ratio, one point per λ), and with `max_drop` OUT/model.dzip, a copy of the smallest file
accepted (its paired validation drop plus z standard errors within the target, as the search).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any

from ..errors import ConfigError, TrainingError
from ..files import atomic_path, write_text
from ..report import sweep_png, write_report
from ..train import metric_of
from ..train.checkpoint import load_weights
from ..train.distributed import is_main
from .choose import Judge, choose
from .recipe import Recipe
from .run import check_max_drop, run_recipe
from .source import prepare
from .workdir import check_out


def parse_weights(text: str) -> list[float]:
    """Rate weights from the command line's comma-separated list, checked.

    Examples:
        >>> parse_weights("0.03,0.1")
        [0.03, 0.1]
    """
    try:
        weights = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--rate-weights takes numbers separated by commas, like 0.03,0.1, not {text!r}.") from None
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError(f"--rate-weights takes finite numbers ≥ 0, like 0.03,0.1, not {text!r}.")
    if len({_name(w) for w in weights}) != len(weights):  # each run needs a directory of its own
        raise ConfigError(f"--rate-weights names a weight twice (to 6 significant digits): {text!r}.")
    return weights


def _name(weight: float) -> str:
    return f"rate-{weight:g}"


def sweep(
    recipe: Recipe,
    weights: Sequence[float],
    out_dir: str | os.PathLike,
    *,
    max_drop: float | None = None,
    from_checkpoint: str | os.PathLike | None = None,
    log: Callable[[str], Any] = print,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    val_split: float = 0.1,
    splits: Any = None,
    source: Any = None,
    metric: Any = None,
    key: dict[str, Any] | None = None,
    device: str = "auto",
    confidence: float = 0.84,
    **run_options: Any,
) -> dict[str, Any]:
    """Run `recipe` once per rate weight into out_dir/rate-<λ>/ and compare the files.

    Args:
        recipe: a recipe with a `rate:` stage; its weight is replaced by each of `weights`.
        weights: the rate weights λ to try.
        out_dir: the sweep's directory.
        max_drop: if given, the smallest file whose validation score (read from the file) is at
            most this much below the dense model's (points of accuracy; % for perplexity) is
            copied to out_dir/model.dzip and scored once on the test split; if no file
            qualifies, TrainingError says so after every run has been kept.
        from_checkpoint: a dense checkpoint every run starts from; by default the first run
            trains one and the others start from it.
        log: where progress lines go.
        data_dir: as for `run_recipe`.
        limit: as for `run_recipe`.
        val_split: as for `run_recipe`.
        splits: as for `run_recipe`.
        source: as for `run_recipe`.
        metric: as for `run_recipe`.
        key: as for `run_recipe`.
        device: as for `run_recipe`.
        confidence: with max_drop, a file is accepted when its paired validation drop plus z
            standard errors (z of this confidence) is within max_drop, as the search accepts.
        **run_options: resume, progress, as for `run_recipe`.

    A run that fails (a λ so large the model collapses to one answer) is recorded as a failed
    point, and the sweep goes on with the next weight.

    Returns {"points": [{weight, dir, bytes, ratio, score, dense, drop} or {weight, dir, failed}],
    "chosen": dir or None, "test": the chosen file's test scores}.

    Examples:
        >>> sweep(load_recipe("recipes/rate-lenet300.yaml"), [0.03, 0.1], "out/sweep", max_drop=0.3)
    """
    if recipe.rate is None:
        raise ConfigError("--rate-weights needs a recipe with a rate stage (rate: {weight: …, bits: …}); "
                          "recipes/rate-lenet300.yaml is one.")
    if not weights or len({_name(w) for w in weights}) != len(weights):
        raise ConfigError(f"a sweep needs rate weights, each once (to 6 significant digits), not {list(weights)}.")
    if max_drop is not None:
        check_max_drop(max_drop)
    out = check_out(out_dir)
    splits, source, key = prepare(recipe, data_dir=data_dir, limit=limit, val_split=val_split, splits=splits,
                                  source=source, key=key)
    common = dict(splits=splits, source=source, metric=metric, key=key, device=device, log=log, **run_options)
    points, dense = _points(recipe, weights, out, from_checkpoint, common)
    if not is_main():
        return {}
    metric = metric_of(metric)
    best, test = None, None
    if max_drop is not None:
        done = _accept(points, metric, source, splits.val, dense, max_drop, NormalDist().inv_cdf(confidence))
        best, test = choose(out, done, splits=splits, source=source, metric=metric, dense=dense, device=device)
    result = _conclude(points, out, max_drop, log, metric, best)
    if test is not None:
        result["test"] = t = test
        write_text(out / "sweep.json", json.dumps(result, indent=2))
        log(f"test     the chosen file {t['from_file']:.2f}, dense {t['dense']:.2f} (drop {t['drop']:.2f}; the test "
            f"split's one reading)")
    return result


def _points(recipe: Recipe, weights: Sequence[float], out: Path, dense: Any,
            common: dict[str, Any]) -> tuple[list[dict[str, Any]], Any]:
    """One run per weight (the first trains the dense model the others start from, unless given);
    returns the points and the dense weights' path."""
    points, log = [], common["log"]
    for i, weight in enumerate(weights):
        where = out / _name(weight)
        log(f"rate weight {weight:g} ({i + 1}/{len(weights)}) → {where}")
        run = recipe.replace(rate=dataclasses.replace(recipe.rate, weight=float(weight)))
        try:
            report = run_recipe(run, where, from_checkpoint=dense, test=False, **common)
        except TrainingError as e:  # a λ so large the model collapsed: a point of the curve, not the end of it
            log(f"λ {weight:g}: {e}")
            points.append({"weight": weight, "dir": str(where), "failed": str(e)})
            report = None
        if dense is None and (where / "dense.safetensors").exists():
            dense = where / "dense.safetensors"
        if report:  # rank 0 (under torchrun the others return nothing)
            scores = report["scores"]
            points.append({"weight": weight, "dir": str(where), "bytes": report["file_bytes"],
                           "ratio": report["ratio"], "score": round(scores["from_file"], 4),
                           "dense": round(scores["dense"], 4), "drop": report["metric"]["drop"]})
    return points, dense


def _accept(points: list[dict[str, Any]], metric: Any, source: Any, val: Any, dense: Path | None, max_drop: float,
            z: float) -> list[dict[str, Any]]:
    """The finished points, each judged as the search judges (drop + z standard errors within
    max_drop); without a dense model to judge against (none was trained), by the drop alone."""
    done = [p for p in points if "failed" not in p]
    if dense is not None:
        reference = source.build()
        load_weights(reference, dense)
        judge = Judge(metric, reference, val, source, max_drop, z)
        for p in done:
            p.update(judge(Path(p["dir"]) / "model.dzip"))
    for p in done:
        p.setdefault("accepted", p["drop"] <= max_drop + 1e-9)
    return done


def _conclude(points: list[dict[str, Any]], out: Path, max_drop: float | None, log: Callable[[str], Any], metric: Any,
              best: dict[str, Any] | None) -> dict[str, Any]:
    """The pick (on validation), sweep.json, sweep.png, the comparison report, and the one
    sentence if the sweep failed."""
    result = {"points": points, "max_drop": max_drop, "chosen": None if best is None else best["dir"],
              "metric": metric.name}
    done = [p for p in points if "failed" not in p]
    write_text(out / "sweep.json", json.dumps(result, indent=2))
    with atomic_path(out / "sweep.png") as tmp:
        tmp.write_bytes(sweep_png(points, max_drop, metric=metric.name))
    if done:
        write_report([p["dir"] for p in done], out / "report.html")
    for p in done:
        log(f"λ {p['weight']:<8g} {p['bytes']:>9,} B  {p['ratio']:>6.1f}×  {p['score']:.2f} on validation "
            f"({-p['drop']:+.2f} from dense){'  ← chosen' if p['dir'] == result['chosen'] else ''}")
    if not done:
        raise TrainingError(f"every rate weight's run failed (the first: {points[0]['failed']}); try smaller weights.")
    if max_drop is not None and result["chosen"] is None:
        closest = min(done, key=lambda p: p["drop"])
        raise TrainingError(
            f"no rate weight kept the validation {metric.name} within {max_drop:g} of the dense model's "
            f"{closest['dense']:.2f} (closest: λ {closest['weight']:g} at {closest['score']:.2f}); every run is kept "
            f"in {out}: try smaller weights.")
    return result
