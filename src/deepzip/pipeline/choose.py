"""Choosing among finished candidates, shared by the target search and the rate sweep: the judge
that accepts a file on validation, and the one step that copies the smallest accepted file to
DIR/model.dzip and reads the test split once for it."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from ..dzip import load
from ..files import atomic_path
from .finish import score_chosen
from .source import Source


class Judge:
    """Accepts or rejects a candidate's file: its paired drop from the dense model on the
    validation split, plus z standard errors of that drop, must be within max_drop."""

    def __init__(self, metric: Any, dense: torch.nn.Module, val: Any, source: Source, max_drop: float, z: float):
        self.metric, self.dense, self.val, self.source, self.max_drop, self.z = metric, dense, val, source, max_drop, z

    def __call__(self, path: Path) -> dict[str, Any]:
        model = load(path, model=None if "registry" in self.source.key else self.source.build())
        drop, se = self.metric.paired(self.dense, model, self.val)
        margin = self.z * (se or 0.0)
        return {"drop": round(drop, 4), "se": None if se is None else round(se, 4),
                "accepted": bool(drop + margin <= self.max_drop + 1e-9)}


def choose(out: Path, rows: list[dict[str, Any]], *, splits: Any, source: Source, metric: Any,
           dense: Path | None, device: str) -> tuple[dict[str, Any] | None, dict[str, float] | None]:
    """The smallest accepted candidate (rows with "accepted", "bytes" and "dir"), its file copied
    to out/model.dzip, and its test scores (the test split's one reading; None without one).

    Args:
        out: the search's or sweep's directory (an earlier pick there is removed first).
        rows: the finished candidates.
        splits, source, metric, device: the run's.
        dense: the dense weights the test compares with (None: the chosen candidate's own).

    Examples:
        >>> best, test = choose(out, candidates, splits=s, source=src, metric=m, dense=None, device="cpu")
    """
    (out / "model.dzip").unlink(missing_ok=True)  # an earlier pick is not this one's
    ok = [r for r in rows if r.get("accepted")]
    if not ok:
        return None, None
    best = min(ok, key=lambda r: r["bytes"])
    with atomic_path(out / "model.dzip") as tmp:
        shutil.copyfile(Path(best["dir"]) / "model.dzip", tmp)
    if splits.test is None:
        return best, None
    reference = dense if dense is not None else Path(best["dir"]) / "dense.safetensors"
    return best, score_chosen(out / "model.dzip", splits=splits, source=source, metric=metric, dense=reference,
                              device=device)
