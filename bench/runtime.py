"""Dense vs torch CSR vs deepzip's codebook kernels: latency, resident weight bytes, byte bounds.

    python bench/runtime.py [--files out/lenet300/model.dzip out/lenet5/model.dzip] [--device cpu|cuda] [--no-sweep]

Prints one JSON object per line, all timed in this one process on the same threads (min and
median of repeated calls): the machine's memory read bandwidth; the 4096×4096 Linear layers at
90 / 95 / 99 % sparsity (5-bit codebooks); the given .dzip files (or LeNets compressed from
random weights when absent); a VGG-16-sized fully-connected stack (25088→4096→4096→1000, 92 %
sparse) end to end; and a density sweep behind the rule in deepzip.runtime. Each case gives, per
runtime, the bytes its weights occupy and the time reading them once would take at the measured
bandwidth ("bound_ms"), so the distance to the limit is visible.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import deepzip as dz
from deepzip.runtime import timing

RUNTIMES = ("dense", "csr", "codebook", "sparse")


def bandwidth_gb_s() -> float:
    """Read bandwidth: the best of several sums over a 256 MB tensor (far larger than any cache)."""
    x = torch.ones(64 << 20)
    x.sum()
    times = []
    for _ in range(10):
        t = time.perf_counter()
        x.sum()
        times.append(time.perf_counter() - t)
    return x.numel() * 4 / min(times) / 1e9


def case(name: str, path: Path, shape: tuple[int, ...], device: str, gbs: float, make=None, reps: int = 200) -> dict:
    models = {r: dz.load(path, model=make() if make else None, runtime=r) for r in RUNTIMES}
    row = {"case": name, **timing.compare(models, shape, device=device, reps=reps)}
    for r in RUNTIMES:
        row[f"{r}_bound_ms"] = round(row[f"{r}_weight_bytes"] / gbs / 1e6, 4)
    row["choice"] = sorted({v.split(" ")[0] for k, v in models["sparse"].deepzip_runtime.items() if k.endswith("weight")})
    return row


def compressed(model: nn.Module, sparsity: float, bits: int | None, path: Path) -> Path:
    dz.prune_(model, sparsity=sparsity)
    if bits:
        dz.share_weights_(model, bits=bits)
    dz.save(model, path)
    return path


def random_lenet(name: str, tmp: Path) -> Path:
    from deepzip.pipeline.recipe import default_recipe

    r = default_recipe(name)
    model = dz.create_model(name)
    dz.prune_(model, sparsity=r.prune.sparsity)
    dz.share_weights_(model, bits=r.share.bits)
    path = tmp / f"{name}.dzip"
    dz.save(model, path)
    return path


def fc_stack() -> nn.Module:
    return nn.Sequential(nn.Linear(25088, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", type=Path, default=[Path("out/lenet300/model.dzip"), Path("out/lenet5/model.dzip")])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    gbs = bandwidth_gb_s()
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
           "read_gb_s": round(gbs, 1)}
    if args.device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
    print(json.dumps({"env": env}), flush=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for s in (0.9, 0.95, 0.99):
            path = compressed(nn.Linear(4096, 4096), s, 5, tmp / f"l{s}.dzip")
            print(json.dumps(case(f"linear4096_{round(s * 100)}pct_5bit", path, (4096,), args.device, gbs,
                                  lambda: nn.Linear(4096, 4096))), flush=True)
        for name, path in zip(("lenet300", "lenet5"), args.files):
            source = "trained" if path.exists() else "random weights, default sparsities"
            if not path.exists():
                path = random_lenet(name, tmp)
            print(json.dumps({**case(name, path, (1, 28, 28), args.device, gbs), "source": source}), flush=True)
        torch.manual_seed(0)
        path = compressed(fc_stack(), 0.92, 5, tmp / "fc.dzip")
        print(json.dumps(case("vgg16_fc_stack_92pct_5bit", path, (25088,), args.device, gbs, fc_stack, reps=40)),
              flush=True)
        if args.sweep:
            for n in (1024, 4096):
                for density in (0.01, 0.05, 0.1, 0.2, 0.3):
                    path = compressed(nn.Linear(n, n), 1 - density, 5, tmp / f"s{n}_{density}.dzip")
                    row = case(f"sweep_linear{n}_density{density}", path, (n,), args.device, gbs,
                               lambda: nn.Linear(n, n))  # noqa: B023 (called here)
                    print(json.dumps({k: v for k, v in row.items() if k == "case" or k.endswith("speedup")}), flush=True)


if __name__ == "__main__":
    main()
