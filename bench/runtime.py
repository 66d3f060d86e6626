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
import tempfile
from pathlib import Path

import torch
from torch import nn

import deepzip as dz
from deepzip import runtime as rt
from deepzip.runtime import timing


def compare(name: str, path: Path, shape: tuple[int, ...], device: str, make=None) -> dict:
    return {"case": name, **timing.compare(path, shape, device=device, make=make, reps=200)}


def single_linear(sparsity: float, n: int, tmp: Path, bits: int | None = 5) -> tuple[Path, object]:
    layer = nn.Linear(n, n)
    dz.prune_(layer, sparsity=sparsity)
    if bits:
        dz.share_weights_(layer, bits=bits)
    path = tmp / f"linear{n}_{sparsity}.dzip"
    dz.save(layer, path)
    return path, lambda: nn.Linear(n, n)


def random_lenet(name: str, tmp: Path) -> Path:
    from deepzip.pipeline.recipe import default_recipe

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
            # The sweep measures where sparse stops paying, so the rule that encodes the answer is lifted.
            rt.MAX_DENSITY = rt.MAX_DENSITY_LARGE = 1.0
            for n in (1024, 4096):
                for density in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
                    path, fresh = single_linear(1 - density, n, tmp, bits=None)
                    row = compare(f"sweep_linear{n}_density{density}", path, (n,), args.device, fresh)
                    print(json.dumps({k: row[k] for k in ("case", "b1_speedup", "b64_speedup")}), flush=True)


if __name__ == "__main__":
    main()
