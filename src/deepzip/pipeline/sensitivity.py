"""Sensitivity analysis and budget allocation.

Each layer is pruned alone, over a grid of sparsities, and the accuracy is measured; the same for
weight sharing over a grid of bit widths. From these curves, `allocate` picks per-layer sparsities
and bits: for a tolerated drop δ (in points), each layer gets the largest sparsity and the fewest
bits whose own drop stays within δ. For a size target, δ is searched for the smallest value whose
allocation is small enough. One knob, δ, so the allocation is easy to reason about.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import ConfigError
from ..files import atomic_path
from ..selection import weights
from ..quantize.kmeans import kmeans_1d
from ..prune.magnitude import keep_largest

SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99)
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
    with tqdm(total=len(items) * (len(sparsities) + len(bits)), desc="sensitivity", disable=None if progress else True, leave=False) as bar:
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


def allocate(result: dict[str, Any], *, max_drop: float | None = None, target_ratio: float | None = None,
             bits_drop: float = 0.3, bits_per_index: float = 5.0) -> dict[str, Any]:
    """Per-layer sparsity and bits from a scan: sparsities for a tolerated drop `max_drop`
    (points), or for the smallest drop that reaches `target_ratio` by the size model below; bits
    the fewest whose drop stays within `bits_drop`. Pruning is probed without retraining, so its
    drops overstate what is lost after retraining and only rank the layers; weight sharing loses
    little to begin with, so its tolerance is kept apart and small.

    Size model, for the search only: each kept weight costs its bits plus `bits_per_index` for
    its position; every dense parameter would cost 32 bits.
    """
    if (max_drop is None) == (target_ratio is None):
        raise ConfigError("allocate needs exactly one of max_drop or target_ratio.")
    base = result["baseline"]

    def pick(delta: float) -> dict[str, Any]:
        sparsity, bits = {}, {}
        for name, row in result["layers"].items():
            ok = [s for s, a in zip(result["sparsities"], row["sparsity"]) if base - a <= delta]
            sparsity[name] = max(ok, default=0.0)
            okb = [b for b, a in zip(result["bit_widths"], row["bits"]) if base - a <= bits_drop]
            bits[name] = min(okb, default=max(result["bit_widths"]))
        dense = sum(32 * r["weights"] for r in result["layers"].values())
        size = sum(r["weights"] * (1 - sparsity[n]) * (bits[n] + bits_per_index) for n, r in result["layers"].items())
        return {"max_drop": delta, "sparsity": sparsity, "bits": bits, "estimated_ratio": dense / max(size, 1)}

    if max_drop is not None:
        return pick(max_drop)
    drops = sorted({max(0.0, base - a) for r in result["layers"].values() for a in r["sparsity"]})
    for delta in drops:
        choice = pick(delta)
        if choice["estimated_ratio"] >= target_ratio:
            return choice
    best = pick(math.inf)
    raise ConfigError(f"no allocation from this scan reaches {target_ratio}× (at most about "
                      f"{best['estimated_ratio']:.0f}×); extend the sparsity grid or lower the target.")


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
