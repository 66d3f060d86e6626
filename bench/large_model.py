"""save / load of a VGG-16-sized compressed model: wall time and peak RSS, each in its own process.

    python bench/large_model.py [--dir /tmp] [--sparsity 0.925]

The model has VGG-16's 138 M weights (13 conv layers, fc 25088→4096→4096→1000), 92.5 % pruned,
with 5-bit codebooks for Linear and 8-bit for Conv2d, built directly in shared form (random codes:
training it is not the point; the coder sees realistic alphabets and densities). Peak RSS is
sampled every 2 ms during the call and includes the model itself. A last process starts from
random dense float32 weights and times the whole way: prune_, share_weights_ and save.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_shape() -> nn.Module:
    """VGG-16's layers on the meta device: shapes only, no memory."""
    layers, c = [], 3
    with torch.device("meta"):
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
                c = v
        layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                   nn.Linear(4096, 1000)]
    return nn.Sequential(*layers)


def build(sparsity: float, seed: int = 0) -> nn.Module:
    from deepzip.reparam import share_

    rng = np.random.default_rng(seed)
    model = vgg16_shape().to_empty(device="cpu")  # untouched pages of empty tensors cost no RSS
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            k = 31 if isinstance(m, nn.Linear) else 255
            n = m.weight.numel()
            codes = np.empty(n, np.uint8)
            for s in range(0, n, 1 << 24):  # in chunks: a 100 M-element float64 draw would dominate RSS
                e = min(n, s + (1 << 24))
                part = rng.integers(1, k + 1, e - s, dtype=np.uint8)
                part[rng.random(e - s, dtype=np.float32) < sparsity] = 0
                codes[s:e] = part
            centroids = torch.from_numpy(np.sort(rng.normal(0, 0.05, k)).astype(np.float32))
            share_(m, "weight", centroids, torch.from_numpy(codes).view(m.weight.shape))
            m.bias.data.zero_()
    return model


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measured(fn):
    peak = [rss_bytes()]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    t.join()
    return result, seconds, max(peak[0], rss_bytes())


def child(mode: str, path: str, sparsity: float, coder: str) -> None:
    import deepzip as dz

    if mode == "compress":  # the whole way from dense weights: prune_, share_weights_, save
        torch.manual_seed(0)
        model = vgg16_shape().to_empty(device="cpu")
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.05)
        params = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))

        def run():
            dz.prune_(model, sparsity=sparsity)
            dz.share_weights_(model, bits={"conv": 8, "linear": 5})
            return dz.save(model, path, coder=coder)

        header, seconds, peak = measured(run)
        out = {"op": "prune+share+save", "coder": coder, "weights": params, "file_bytes": header["file_bytes"]}
        print(json.dumps({**out, "seconds": round(seconds, 2), "peak_rss_gb": round(peak / 1e9, 3)}), flush=True)
        return
    if mode == "save":
        model = build(sparsity)
        from deepzip.reparam import SharedWeight

        params = sum(m.assign.numel() for m in model.modules() if isinstance(m, SharedWeight))
        header, seconds, peak = measured(lambda: dz.save(model, path, coder=coder))
        out = {"op": "save", "coder": coder, "weights": params, "file_bytes": header["file_bytes"]}
    else:
        _, seconds, peak = measured(lambda: dz.load(path, model=vgg16_shape()))
        out = {"op": "load", "coder": coder}
    print(json.dumps({**out, "seconds": round(seconds, 2), "peak_rss_gb": round(peak / 1e9, 3)}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--sparsity", type=float, default=0.925)
    ap.add_argument("--coders", nargs="*", default=["huffman", "ans", "context"])
    ap.add_argument("--keep", action="store_true", help="keep the files (bench/codec.py reads their streams)")
    ap.add_argument("--compress", action=argparse.BooleanOptionalAction, default=True,
                    help="also time prune_ + share_weights_ + save from dense weights")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, path, sparsity, coder = args.child
        child(mode, path, float(sparsity), coder)
        return
    for coder in args.coders:
        path = str(Path(args.dir) / f"vgg16-size-{coder}.dzip")
        for mode in ("save", "load"):
            subprocess.run([sys.executable, __file__, "--child", mode, path, str(args.sparsity), coder], check=True)
        if not args.keep:
            Path(path).unlink(missing_ok=True)
    if args.compress:
        path = str(Path(args.dir) / "vgg16-size-compressed.dzip")
        subprocess.run([sys.executable, __file__, "--child", "compress", path, str(args.sparsity), "auto"], check=True)
        Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
