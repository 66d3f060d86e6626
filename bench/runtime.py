"""Dense vs sparse runtime: latency at batch 1 and 64, throughput, resident weight bytes.

    python bench/runtime.py [--files out/lenet300/model.dzip out/lenet5/model.dzip] [--device cpu|cuda]

Prints one JSON object per line: the 4096×4096 Linear layers of issue 5 (90/95/99 % sparse,
5-bit codebooks), each given .dzip file (or, when absent, a LeNet compressed with deepzip's
default sparsities from random weights), and a density sweep that locates the break-even density
behind deepzip.runtime.MAX_DENSITY.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import deepzip as dz
from deepzip.runtime import resident_weight_bytes


def latency_ms(model: nn.Module, x: torch.Tensor, reps: int) -> float:
    """Median wall time of one forward pass, after warm-up."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        times = []
        for _ in range(reps):
            sync()
            t = time.perf_counter()
            model(x)
            sync()
            times.append(time.perf_counter() - t)
    return 1e3 * statistics.median(times)


def compare(name: str, path: Path, shape: tuple[int, ...], device: str, make=None) -> dict:
    """`make` builds the module to fill, for files saved from a bare layer (no registry record)."""
    dense = dz.load(path, model=make and make()).to(device)
    sparse = dz.load(path, model=make and make(), runtime="sparse").to(device)
    row = {"case": name, "device": device, "dense_weight_bytes": resident_weight_bytes(dense),
           "sparse_weight_bytes": resident_weight_bytes(sparse)}
    row["sparse_weight_fraction"] = round(row["sparse_weight_bytes"] / row["dense_weight_bytes"], 4)
    for batch in (1, 64):
        x = torch.randn(batch, *shape, device=device)
        reps = 200 if batch == 1 else 50
        d, s = latency_ms(dense, x, reps), latency_ms(sparse, x, reps)
        row[f"b{batch}_dense_ms"], row[f"b{batch}_sparse_ms"] = round(d, 4), round(s, 4)
        row[f"b{batch}_speedup"] = round(d / s, 2)
        row[f"b{batch}_sparse_samples_per_s"] = round(batch / s * 1e3, 1)
    return row


def single_linear(sparsity: float, n: int, tmp: Path, bits: int | None = 5) -> tuple[Path, object]:
    layer = nn.Linear(n, n)
    dz.prune_(layer, sparsity=sparsity)
    if bits:
        dz.share_weights_(layer, bits=bits)
    path = tmp / f"linear{n}_{sparsity}.dzip"
    dz.save(layer, path)
    return path, lambda: nn.Linear(n, n)


def random_lenet(name: str, tmp: Path) -> Path:
    from deepzip.recipe import default_recipe

    r = default_recipe(name)
    model = dz.create_model(name)
    dz.prune_(model, sparsity=r.prune.sparsity)
    dz.share_weights_(model, bits=r.share.bits)
    path = tmp / f"{name}.dzip"
    dz.save(model, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=[Path("out/lenet300/model.dzip"), Path("out/lenet5/model.dzip")])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    print(json.dumps({"env": env}))
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for s in (0.9, 0.95, 0.99):
            path, fresh = single_linear(s, 4096, tmp)
            print(json.dumps(compare(f"linear4096_{int(s * 100)}pct_5bit", path, (4096,), args.device, fresh)), flush=True)
        for name, path in zip(("lenet300", "lenet5"), args.files):
            source = "trained" if path.exists() else "random weights, default sparsities"
            if not path.exists():
                path = random_lenet(name, tmp)
            row = compare(name, path, (1, 28, 28), args.device)
            print(json.dumps({**row, "source": source}), flush=True)
        if args.sweep:
            for n in (1024, 4096):
                for density in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
                    path, fresh = single_linear(1 - density, n, tmp, bits=None)
                    row = compare(f"sweep_linear{n}_density{density}", path, (n,), args.device, fresh)
                    print(json.dumps({k: row[k] for k in ("case", "b1_speedup", "b64_speedup")}), flush=True)


if __name__ == "__main__":
    main()
