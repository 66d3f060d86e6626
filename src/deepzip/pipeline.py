"""`compress`: train → prune → retrain → share → fine-tune → save → reload → evaluate.

Each stage is a call to the public API; this module only chains them, times them, and writes
the report. The accuracy that counts is the one measured on the model reloaded from disk.
"""
from __future__ import annotations

import copy
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import data as datasets
from . import models
from .checkpoint import load_checkpoint, save_checkpoint
from .files import write_text
from .load import load
from .prune import prune_, sparsity_of
from .prune.schedule import GradualPruning, agp_sparsity
from .prune.structured import prune_dead_inputs_, prune_units_
from .quantize import round_, share_weights_
from .recipe import DistillStage, Recipe, TrainStage
from .report.tables import inspect, layers_markdown
from .store import save
from .train import evaluate, predict, seed_everything, train


def ramp(final: float, step: int, steps: int) -> float:
    """Sparsity after round `step` of `steps`: the AGP curve sampled at the rounds, reaching `final`."""
    return agp_sparsity(step, initial=0.0, final=final, start=0, end=steps)


def _scaled(setting: Any, fraction: float) -> Any:
    if isinstance(setting, dict):
        return {k: v * fraction for k, v in setting.items()}
    return setting * fraction


def _fit(model: torch.nn.Module, data: datasets.Dataset, stage: TrainStage, seed: int, desc: str, progress: bool,
         *, epochs: float | None = None, on_step=None, teacher=None, distill: DistillStage | None = None) -> None:
    kd = {} if distill is None or teacher is None else \
        {"teacher": teacher, "distill": distill.weight, "temperature": distill.temperature}
    train(model, data, epochs=stage.epochs if epochs is None else epochs, lr=stage.lr, optimizer=stage.optimizer,
          momentum=stage.momentum, weight_decay=stage.weight_decay, batch_size=stage.batch_size, seed=seed,
          desc=desc, progress=progress, on_step=on_step, **kd)


def compress(
    recipe: Recipe,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    from_checkpoint: str | os.PathLike | None = None,
    limit: int | None = None,
    progress: bool = True,
    log=print,
) -> dict[str, Any]:
    """Run `recipe`, write out_dir/model.dzip, report.json and report.md; return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    @contextmanager
    def stage(name: str):
        start = time.perf_counter()
        yield
        seconds[name] = round(time.perf_counter() - start, 2)

    seed_everything(recipe.seed)
    with stage("data"):
        train_set = datasets.load(recipe.dataset, data_dir, train=True, limit=limit, size=recipe.image_size)
        test_set = datasets.load(recipe.dataset, data_dir, train=False, limit=limit, size=recipe.image_size)
    c, h = train_set.x.shape[1], train_set.x.shape[2]
    model = models.create(recipe.model, **{"in_channels": c, "image_size": h, "classes": train_set.classes,
                                           **recipe.model_args})
    acc: dict[str, float] = {}

    with stage("dense"):
        if from_checkpoint is not None:
            load_checkpoint(model, from_checkpoint)
        else:
            _fit(model, train_set, recipe.dense, recipe.seed, "dense", progress)
            save_checkpoint(model, out / "dense.safetensors")
    acc["dense"] = evaluate(model, test_set)
    log(f"dense    accuracy {acc['dense']:.2f}%")
    # The dense model, frozen, teaches every later stage when the recipe distills.
    kd = {"teacher": copy.deepcopy(model).eval().requires_grad_(False), "distill": recipe.distill} \
        if recipe.distill is not None and recipe.distill.weight > 0 else {}

    p = recipe.prune
    if p is not None and (p.sparsity is not None or p.quality is not None or p.units is not None):
        with stage("prune"):
            if p.units is not None:
                removed = prune_units_(model, p.units)
                prune_dead_inputs_(model, train_set)
                log(f"units    removed {', '.join(f'{k} {v}' for k, v in removed.items())}")
            if p.sparsity is None and p.quality is None:
                _fit(model, train_set, p.retrain, recipe.seed + 1, "retrain", progress,
                     epochs=p.steps * p.retrain.epochs, **kd)
            elif p.schedule == "agp":
                pruner = GradualPruning(model, p.sparsity, end=p.ramp_end, every=p.every, scope=p.scope)
                _fit(model, train_set, p.retrain, recipe.seed + 1, "gradual pruning", progress,
                     epochs=p.steps * p.retrain.epochs, on_step=pruner, **kd)
            else:
                for step in range(1, p.steps + 1):
                    if p.sparsity is not None:
                        prune_(model, sparsity=_scaled(p.sparsity, ramp(1.0, step, p.steps)), scope=p.scope)
                    else:
                        prune_(model, quality=p.quality)
                    _fit(model, train_set, p.retrain, recipe.seed + step, f"prune {step}/{p.steps}", progress, **kd)
        acc["pruned"] = evaluate(model, test_set)
        log(f"pruned   accuracy {acc['pruned']:.2f}%  sparsity {100 * sparsity_of(model)['total']:.1f}%")

    if recipe.share is not None:
        s = recipe.share
        with stage("share"):
            share_weights_(model, bits=s.bits, init=s.init)
            if s.bias_bits is not None:
                share_weights_(model, bits=s.bias_bits, init=s.init, param="bias")
            acc["shared"] = evaluate(model, test_set)
            _fit(model, train_set, s.finetune, recipe.seed + 100, "fine-tune centroids", progress, **kd)
            # After training, which would move them off float16 values again.
            halves = ("bias",) * s.half_biases + ("weight_centroids", "bias_centroids") * s.half_codebooks
            if halves:
                round_(model, names=halves)
        acc["quantized"] = evaluate(model, test_set)
        log(f"quantized accuracy {acc['quantized']:.2f}% (before centroid fine-tuning {acc['shared']:.2f}%)")

    path = out / "model.dzip"
    with stage("save"):
        save(model, path, coder=recipe.coder, index_bits=recipe.index_bits,
             metadata={"dataset": recipe.dataset, "accuracy": {k: round(v, 2) for k, v in acc.items()},
                       "recipe": recipe.changes()})
    with stage("reload"):
        reloaded = load(path)
        acc["from_file"] = evaluate(reloaded, test_set)
        same = bool(torch.equal(predict(reloaded, test_set), predict(model, test_set)))
    log(f"from file accuracy {acc['from_file']:.2f}%  (predictions identical to the in-memory model: {same})")

    info = inspect(path)
    report = {
        "model": recipe.model, "dataset": recipe.dataset, "dense_bytes": info["dense_bytes"],
        "file_bytes": info["file_bytes"], "ratio": round(info["ratio"], 2), "accuracy": acc,
        "sparsity": round(sparsity_of(reloaded)["total"], 4), "identical_predictions": same,
        "coder": recipe.coder, "seconds": seconds, "layers": info["layers"], "recipe": recipe.to_dict(),
        "test_samples": len(test_set),
    }
    write_text(out / "report.json", json.dumps(report, indent=2))
    write_text(out / "report.md", report_markdown(report))
    return report


def report_markdown(r: dict[str, Any]) -> str:
    acc = r["accuracy"]
    lines = [f"# deepzip: {r['model']} on {r['dataset']}", "",
             "| dense bytes | file bytes | ratio | sparsity | coder |", "|---:|---:|---:|---:|---|",
             f"| {r['dense_bytes']:,} | {r['file_bytes']:,} | **{r['ratio']:.1f}×** | {100 * r['sparsity']:.1f}% | {r['coder']} |",
             "", "| accuracy | " + " | ".join(acc) + " |", "|---|" + "---:|" * len(acc),
             "| top-1 % | " + " | ".join(f"{v:.2f}" for v in acc.values()) + " |", "",
             "## Layers (the paper's Table 2, from the file)", "", layers_markdown(r["layers"]), "",
             "## Seconds per stage", "", " | ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()), ""]
    return "\n".join(lines)

