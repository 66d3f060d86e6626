"""The end of a run: save the file, reload it, score it on validation (and the test split,
once), write report.json, report.md and report.html; and the test reading a search or sweep
gives the file it chose."""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.splits import Splits
from ..dzip import load, save
from ..files import write_text
from ..prune import sparsity_of
from ..report import inspect, report_markdown, write_report
from ..train import Metric, metric_of, predict, resolve_device
from ..train.checkpoint import load_weights
from .context import RunContext
from .source import Source


def _rate_against_file(rate: dict[str, dict[str, float]], layers: list[dict[str, Any]]) -> dict[str, Any]:
    """The rate estimate per layer beside what the file spends on that layer (its codes and
    positions, codebook and live layout)."""
    spent = {e["layer"]: e for e in layers}
    out = {}
    for name, r in rate.items():
        e = spent.get(name, {})
        out[name] = {**r, "estimate_bytes": round(r["bits"] / 8), "file_bytes": e.get("bytes")}
    return out


@dataclass
class RunReport:
    """What a finished run measured, from which report.json, report.md and report.html are
    written and `compress`'s CompressResult is made (`to_dict()` is report.json's content).

    scores: validation scores by stage ("dense", "pruned", …, "from_file": the reloaded file);
    metric: {"name", "higher_is_better", "drop"} (validation); test: the test split's one reading
    ({"dense", "from_file", "drop"}) or None; stages: what added stages reported; rate: the rate
    stage's estimate per layer beside the file's bytes, or None.
    """

    model: str
    dataset: str
    dense_bytes: int
    file_bytes: int
    ratio: float
    scores: dict[str, float]
    metric: dict[str, Any]
    sparsity: float
    identical_predictions: bool
    coder: str
    seconds: dict[str, float]
    layers: list[dict[str, Any]]
    recipe: dict[str, Any]
    validation: dict[str, Any] | None
    test_samples: int | None
    test: dict[str, float] | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    rate: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """report.json's content, keys in the order it has always had (an "accuracy" copy of
        the scores for accuracy runs, which older readers look for; optional keys when present)."""
        d = dataclasses.asdict(self)
        head = {k: d.pop(k) for k in ("model", "dataset", "dense_bytes", "file_bytes", "ratio", "scores")}
        extra = {k: d.pop(k) for k in ("test", "stages", "rate")}
        return {**head, **({"accuracy": self.scores} if self.metric["name"] == "accuracy" else {}), **d,
                **{k: v for k, v in extra.items() if v is not None and v != []}}

    def write(self, out: Path) -> None:
        """out/report.json, report.md and report.html, each atomically."""
        report = self.to_dict()
        write_text(out / "report.json", json.dumps(report, indent=2))
        write_text(out / "report.md", report_markdown(report))
        write_report([out], out / "report.html")


def finish_run(run: RunContext, test: bool) -> dict[str, Any]:
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
    report = RunReport(
        model=recipe.model, dataset=recipe.dataset, dense_bytes=info["dense_bytes"], file_bytes=info["file_bytes"],
        ratio=round(info["ratio"], 2), scores=acc,
        metric={"name": run.metric.name, "higher_is_better": run.metric.higher_is_better,
                "drop": round(run.metric.drop(acc["dense"], acc["from_file"]), 4)},
        sparsity=round(sparsity_of(reloaded)["total"], 4), identical_predictions=same, coder=recipe.coder,
        seconds=run.seconds, layers=info["layers"], recipe=recipe.to_dict(), validation=run.splits.info.get("val"),
        test_samples=run.splits.info.get("test_size"), stages=run.results,
        rate=None if run.rate is None else _rate_against_file(run.rate, info["layers"]))
    if test and run.test_set is not None:
        report.test = t = score_test(run, reloaded)
        run.log(f"test     {run.metric.name} from the file {run.show(t['from_file'])}, dense {run.show(t['dense'])} "
                f"(drop {t['drop']:.2f}; the test split's one reading)")
    report.write(out)
    run.log(f"report   {out / 'report.html'}")
    return report.to_dict()


def score_test(run: RunContext, model: torch.nn.Module) -> dict[str, float]:
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
