"""Latency and memory of dense vs sparse runtimes, shared by `deepzip benchmark` and bench/runtime.py."""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import nn

from . import resident_weight_bytes


def latency_ms(model: nn.Module, x: torch.Tensor, reps: int) -> float:
    """Median wall time of one forward pass in milliseconds, after warm-up.

    Example:
        >>> latency_ms(model, torch.randn(1, 1, 28, 28), reps=100)
    """
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


def compare(dense: nn.Module, sparse: nn.Module, input_shape: tuple[int, ...], *, device: str = "cpu",
            batches: tuple[int, ...] = (1, 64), reps: int = 100) -> dict[str, Any]:
    """Time the same model in its dense and its sparse runtime, side by side, same threads.

    Args:
        dense, sparse: the two loads of one file (`deepzip.load(path)` and `load(path, runtime="sparse")`).
        input_shape: one sample's shape.
        device: where to run them.
        batches: batch sizes to time.
        reps: timed calls at batch 1 (a quarter of that, at least 10, at larger batches).

    Example:
        >>> compare(dz.load(p), dz.load(p, runtime="sparse"), (1, 28, 28))["b1_speedup"]
    """
    dense, sparse = dense.to(device), sparse.to(device)
    row: dict[str, Any] = {"device": device, "dense_weight_bytes": resident_weight_bytes(dense),
                           "sparse_weight_bytes": resident_weight_bytes(sparse)}
    row["sparse_weight_fraction"] = round(row["sparse_weight_bytes"] / row["dense_weight_bytes"], 4)
    for batch in batches:
        x = torch.randn(batch, *input_shape, device=device)
        n = reps if batch == 1 else max(10, reps // 4)
        d, s = latency_ms(dense, x, n), latency_ms(sparse, x, n)
        row[f"b{batch}_dense_ms"], row[f"b{batch}_sparse_ms"] = round(d, 4), round(s, 4)
        row[f"b{batch}_speedup"] = round(d / s, 2)
        row[f"b{batch}_dense_samples_per_s"] = round(batch / d * 1e3, 1)
        row[f"b{batch}_sparse_samples_per_s"] = round(batch / s * 1e3, 1)
    return row
