"""Sensitivity analysis and budget allocation.

Each layer is pruned alone, over a grid of sparsities, and the accuracy is measured; the same for
weight sharing over a grid of bit widths. From these curves, `allocate` picks per-layer
sparsities (the smallest estimated file within a budget of summed drops, or the smallest summed
drop that reaches a ratio: one exact knapsack either way) and per-layer bits; `verify` applies the
allocation and measures what it really gives.
"""
from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import knapsack
from ..errors import ConfigError
from ..files import atomic_path
from ..prune.magnitude import keep_largest
from ..quantize.kmeans import kmeans_1d
from ..selection import weights

SPARSITIES = (0.3, 0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
BITS = (2, 3, 4, 5, 6, 8)


def _quantized(weight: torch.Tensor, bits: int) -> torch.Tensor:
    keep = weight != 0
    centroids, labels = kmeans_1d(weight[keep].double().numpy(), 2**bits - 1)
    out = torch.zeros_like(weight)
    out[keep] = torch.from_numpy(centroids[labels].astype(np.float32))
    return out


@torch.no_grad()
def scan(model: nn.Module, accuracy: Callable[[nn.Module], float], *, sparsities: Sequence[float] = SPARSITIES,
         bits: Sequence[int] = BITS, progress: bool = True) -> dict[str, Any]:
    """Accuracy with each layer pruned alone at each sparsity, and weight-shared alone at each
    bit width (on the unpruned weights). The model is restored after every probe."""
    base = accuracy(model)
    layers: dict[str, Any] = {}
    items = list(weights(model))
    with tqdm(total=len(items) * (len(sparsities) + len(bits)), desc="sensitivity", disable=None if progress else True,
              leave=False) as bar:
        for item in items:
            w, name = item.value, item.layer if item.param == "weight" else item.name
            original = w.detach().clone()
            row: dict[str, Any] = {"kind": item.kind, "weights": w.numel(), "sparsity": [], "bits": []}
            for s in sparsities:
                w.mul_(keep_largest(original, round(s * w.numel())))
                row["sparsity"].append(accuracy(model))
                w.copy_(original)
                bar.update(1)
            for b in bits:
                w.copy_(_quantized(original, b))
                row["bits"].append(accuracy(model))
                w.copy_(original)
                bar.update(1)
            layers[name] = row
    return {"baseline": base, "sparsities": list(sparsities), "bit_widths": list(bits), "layers": layers}


INDEX_BITS = 5.0  # the size model's cost of a kept weight's position (the paper's relative index)
RESOLUTION = 0.01
MAX_STEPS = round(100 / RESOLUTION)  # points: drops are rounded up to this grid for the allocation's dynamic programme


def allocate(result: dict[str, Any], *, max_drop: float | None = None, target_ratio: float | None = None,
             bits_drop: float = 0.3, bits_per_index: float = INDEX_BITS) -> dict[str, Any]:
    """Per-layer sparsity and bits from a scan.

    Each layer picks one sparsity from the scanned grid (or 0); its cost is the accuracy it lost
    pruned alone, its size the bits its kept weights take. Drops are assumed to add up across
    layers (they roughly do for small drops, and the probes, run without retraining, overstate
    what a retrained model loses). Bits: per layer the fewest whose own drop stays within
    `bits_drop`.

    Args:
        result: what `scan` returned.
        max_drop: the smallest file whose summed per-layer drops stay within this many points.
        target_ratio: the smallest summed drop whose file reaches this ratio.
        bits_drop: the drop tolerated per layer for weight sharing.
        bits_per_index: the size model's cost of a kept weight's position, in bits.

    Both are exact (a multiple-choice knapsack solved by dynamic programming over the summed drop
    in steps of 0.01 points, each drop rounded up). Size model: a kept weight costs its bits plus,
    in a pruned layer, `bits_per_index`; a dense parameter would cost 32.

    Examples:
        >>> allocate(scan(model, accuracy), max_drop=1.0)["sparsity"]
        {'fc1': 0.97, 'fc2': 0.9, 'fc3': 0.5}
    """
    if (max_drop is None) == (target_ratio is None):
        raise ConfigError("allocate needs exactly one of max_drop or target_ratio.")
    if (max_drop is not None and not max_drop >= 0) or (target_ratio is not None and not target_ratio > 0):
        raise ConfigError("max_drop must be ≥ 0 and target_ratio > 0.")
    base, layers = result["baseline"], result["layers"]
    names = list(layers)
    bits = {}
    for name, row in layers.items():
        ok = [b for b, a in zip(result["bit_widths"], row["bits"]) if base - a <= bits_drop]
        bits[name] = min(ok, default=max(result["bit_widths"]))
    options = []  # per layer: [(sparsity, drop in grid steps, bits of the layer)]
    for name in names:
        row = layers[name]
        size = lambda s, row=row, name=name: weight_bits(row["weights"], s, bits[name], bits_per_index)  # noqa: E731
        # a drop of 100 points (or %) is a ruined model whatever its size: capped, so the programme's
        # table stays small even for a metric, like perplexity, whose drops are unbounded
        opts = [(0.0, 0, size(0.0))] + [(s, min(MAX_STEPS, math.ceil(max(0.0, base - a) / RESOLUTION - 1e-9)), size(s))
                                        for s, a in zip(result["sparsities"], row["sparsity"])]
        options.append(opts)
    cap = sum(max(o[1] for o in opts) for opts in options)
    if max_drop is not None:  # no solution may spend more than the budget: a smaller table suffices
        cap = min(cap, math.floor(max_drop / RESOLUTION + 1e-9))
    weighed = [[(d, size) for _, d, size in opts] for opts in options]
    best, picks = knapsack.solve(weighed, cap)  # best[k]: fewest bits with summed drop ≤ k steps
    dense = sum(32 * r["weights"] for r in layers.values())
    if max_drop is not None:
        k = min(cap, math.floor(max_drop / RESOLUTION + 1e-9))
    else:
        reach = np.flatnonzero(best <= dense / target_ratio)
        if reach.size == 0:
            raise ConfigError(f"no allocation from this scan reaches {target_ratio}× (at most about "
                              f"{dense / best[-1]:.0f}×); extend the sparsity grid or lower the target.")
        k = int(reach[0])
    sparsity = {n: opts[i][0] for n, opts, i in zip(names, options, knapsack.backtrack(weighed, picks, k))}
    drop = sum(max(0.0, base - a) for n in names for s, a in zip(result["sparsities"], layers[n]["sparsity"])
               if s == sparsity[n])
    size = sum(weight_bits(layers[n]["weights"], sparsity[n], bits[n], bits_per_index) for n in names)
    return {"max_drop": max_drop, "target_ratio": target_ratio, "sparsity": sparsity, "bits": bits,
            "estimated_ratio": dense / max(size, 1), "estimated_drop": drop}


def weight_bits(weights: int, sparsity: float, bits: int, bits_per_index: float) -> float:
    """The size model: a kept weight costs its bits, plus its position's unless none is pruned."""
    return weights * (1 - sparsity) * (bits + (bits_per_index if sparsity > 0 else 0))


@torch.no_grad()
def verify(model: nn.Module, choice: dict[str, Any], accuracy: Callable[[nn.Module], float],
           path: str | os.PathLike) -> dict[str, Any]:
    """Apply an allocation to a copy of `model` (prune, share; no retraining), save it to `path`,
    and measure what `allocate` estimated: the file's ratio and the accuracy lost.

    Examples:
        >>> verify(model, allocate(result, max_drop=1.0), accuracy, "out/verify.dzip")
        {'ratio': 41.3, 'drop': 0.8, 'accuracy': 88.7, 'file_bytes': 25812}
    """
    from ..dzip import save
    from ..prune import prune_
    from ..quantize import share_weights_

    trial = copy.deepcopy(model)
    base = accuracy(model)
    prune_(trial, sparsity={k: v for k, v in choice["sparsity"].items() if v > 0} or {"default": 0.0})
    share_weights_(trial, bits=choice["bits"])
    acc = accuracy(trial)
    size = save(trial, path, coder="auto", index_bits="auto")["file_bytes"]
    dense = 4 * sum(p.numel() for p in model.parameters())
    return {"ratio": dense / size, "drop": base - acc, "accuracy": acc, "file_bytes": size}


def plot(result: dict[str, Any], path: str) -> None:
    """Accuracy against sparsity, one line per layer, next to accuracy against bits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, row in result["layers"].items():
        a.plot([100 * s for s in result["sparsities"]], row["sparsity"], marker="o", label=f"{name} ({row['weights']:,})")
        b.plot(result["bit_widths"], row["bits"], marker="o", label=name)
    for ax in (a, b):
        ax.axhline(result["baseline"], color="gray", ls="--", lw=1)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    a.set_xlabel("sparsity of this layer alone (%)")
    b.set_xlabel("bits of this layer alone (weight sharing)")
    a.set_title("pruning sensitivity")
    b.set_title("quantization sensitivity")
    a.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def analyse(model: str | nn.Module, data: str, checkpoint: str | os.PathLike | None, out: str | os.PathLike, *,
            data_dir: str | os.PathLike | None = None, samples: int = 5000, max_drop: float | None = None,
            target_ratio: float | None = None, device: str = "auto", progress: bool = True,
            metric: Any = "top1") -> dict[str, Any]:
    """`deepzip sensitivity`: scan a model's dense weights on `samples` training samples (the test
    split stays unseen), write OUT/sensitivity.json and .png, and with `max_drop` or
    `target_ratio` allocate per-layer budgets, verify them (applied without retraining, saved to
    OUT/verify.dzip) and write OUT/recipe.yaml.

    Args:
        model: a registry name (built for the data), or any module (a --model-py or --hf model).
        data: the data set's name ("npz" with `data_dir` for token ids).
        checkpoint: dense weights to load (None: the module's own).
        out: where the curves, the check and the recipe go.
        metric: "top1", "perplexity" or a Metric: scores are the dense model's minus each
            probe's drop, so budgets are in the metric's drop units (points, % of perplexity).

    Returns {"scan", and with a target "choice", "measured"}.

    Examples:
        >>> analyse("lenet300", "fashion-mnist", "out/lenet300/dense.safetensors", "out/sens", max_drop=1.0)
        >>> analyse(load_hf_dir("gpt2/"), "npz", None, "out/sens-gpt2", data_dir="tokens/", metric="perplexity")
    """
    from pathlib import Path

    from .. import data as datasets
    from .. import models
    from ..files import write_text
    from ..train import load_checkpoint, metric_of, resolve_device
    from .recipe import from_dict, save_recipe

    out, measure = Path(out), metric_of(metric)
    probe = datasets.load(data, data_dir, train=True, limit=samples)
    net = model if isinstance(model, nn.Module) else \
        models.create(model, in_channels=probe.x.shape[1], image_size=probe.x.shape[2], classes=probe.classes)
    if checkpoint is not None:
        load_checkpoint(net, checkpoint)
    net.to(resolve_device(device)).eval()
    reference = measure(net, probe)

    def score(m: nn.Module) -> float:  # higher is better, in the metric's drop units
        return reference - measure.drop(reference, measure(m, probe))

    result = scan(net, score, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "sensitivity.json", json.dumps(result, indent=2))
    plot(result, str(out / "sensitivity.png"))
    done: dict[str, Any] = {"scan": result}
    if max_drop is not None or target_ratio is not None:
        choice = allocate(result, max_drop=max_drop, target_ratio=target_ratio)
        done["measured"] = verify(net, choice, score, out / "verify.dzip")
        name = model if isinstance(model, str) else type(model).__name__
        save_recipe(from_dict({"prune": {"sparsity": choice["sparsity"]}, "share": {"bits": choice["bits"]}},
                              model=name, dataset=data), out / "recipe.yaml")
        done["choice"] = choice
    return done
