"""Latency and memory of dense vs sparse runtimes, shared by `deepzip benchmark` and bench/runtime.py."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from . import resident_weight_bytes


def call_times_ms(call: Callable[[], Any], reps: int, warmup: int = 3, sync: Callable[[], Any] = lambda: None
                  ) -> list[float]:
    """Wall times of `reps` calls of `call()` in milliseconds, after `warmup` untimed calls.

    Args:
        call: what to time (a forward pass, an onnxruntime session run, …).
        reps: timed calls.
        warmup: untimed calls first (compilation, caches).
        sync: called before and after each timed call (torch.cuda.synchronize on a GPU).

    Examples:
        >>> min(call_times_ms(lambda: model(x), reps=100))
    """
    for _ in range(warmup):
        call()
    times = []
    for _ in range(reps):
        sync()
        t = time.perf_counter()
        call()
        sync()
        times.append(1e3 * (time.perf_counter() - t))
    return times


def latencies_ms(model: nn.Module, x: torch.Tensor, reps: int) -> list[float]:
    """Wall times of `reps` forward passes in milliseconds, after warm-up (compilation included).

    Examples:
        >>> min(latencies_ms(model, torch.randn(1, 1, 28, 28), reps=100))
    """
    with torch.inference_mode():
        return call_times_ms(lambda: model(x), reps, sync=torch.cuda.synchronize if x.is_cuda else (lambda: None))


def latency_ms(model: nn.Module, x: torch.Tensor, reps: int) -> float:
    """Median wall time of one forward pass in milliseconds, after warm-up.

    Examples:
        >>> latency_ms(model, torch.randn(1, 1, 28, 28), reps=100)
    """
    return statistics.median(latencies_ms(model, x, reps))


def compare(models: dict[str, nn.Module], input_shape: tuple[int, ...], *, device: str = "cpu",
            batches: tuple[int, ...] = (1, 64), reps: int = 100, tokens: bool = False) -> dict[str, Any]:
    """Time the same model in several runtimes, side by side, on the same threads.

    Args:
        models: runtime name → the file loaded that way; "dense" is the baseline of the speed-ups.
        input_shape: one sample's shape.
        device: where to run them.
        batches: batch sizes to time.
        reps: timed calls at batch 1 (a quarter of that, at least 10, at larger batches).
        tokens: inputs are token ids (int64 0 and 1, valid in any vocabulary), not floats.

    Returns a flat row: "<runtime>_weight_bytes", and per batch b "b<b>_<runtime>_ms" (median),
    "b<b>_<runtime>_min_ms" and "b<b>_<runtime>_speedup" (dense median / this median).

    Examples:
        >>> compare({"dense": dz.load(p), "codebook": dz.load(p, runtime="codebook")}, (4096,))
    """
    models = {name: m.to(device) for name, m in models.items()}
    row: dict[str, Any] = {"device": device, "threads": torch.get_num_threads()}
    for name, m in models.items():
        row[f"{name}_weight_bytes"] = resident_weight_bytes(m)
    for batch in batches:
        x = (torch.randint(0, 2, (batch, *input_shape), device=device) if tokens else
             torch.randn(batch, *input_shape, device=device))
        n = reps if batch == 1 else max(10, reps // 4)
        for name, m in models.items():
            times = latencies_ms(m, x, n)
            row[f"b{batch}_{name}_ms"] = round(statistics.median(times), 4)
            row[f"b{batch}_{name}_min_ms"] = round(min(times), 4)
        for name in models:
            row[f"b{batch}_{name}_speedup"] = round(row[f"b{batch}_dense_ms"] / row[f"b{batch}_{name}_ms"], 2)
    return row
