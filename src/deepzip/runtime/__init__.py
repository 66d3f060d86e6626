"""The sparse runtime: `deepzip.load(path, runtime="sparse")` runs compressed layers as CSR.

Which layers go sparse is a rule on what the header already says (layer type, size, density),
so `deepzip inspect` can report the decision without decoding anything. The thresholds come from
the density sweep of bench/runtime.py on a 2-core x86 CPU (torch 2.13, MKL CSR products; the
forced-sparse speed-up over dense at batch 1 / batch 64):
  1024×1024:  5 % 2.4× / 3.1×   10 % 1.4× / 2.0×   20 % 0.84× / 0.93×   30 % 0.54× / 0.88×
  4096×4096:  5 % 8.1× / 4.1×   10 % 3.8× / 1.9×   20 % 1.7× / 1.1×     30 % 1.3× / 0.77×
so sparse up to 10 % density, and up to 25 % for layers of 4 M weights and more, whose dense
product is bound by memory bandwidth. Below a few thousand weights the fixed cost of a sparse
call outweighs the work saved.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .sparse import SparseConv2d, SparseLinear, csr_bytes, csr_from_positions

SPARSE_LAYERS = ("Linear", "Conv2d")
MAX_DENSITY = 0.1
MAX_DENSITY_LARGE = 0.25  # for layers of at least LARGE weights, whose dense product is memory-bound
LARGE = 4 << 20
MIN_WEIGHTS = 2048

__all__ = ["SparseConv2d", "SparseLinear", "choose", "csr_bytes", "build", "resident_weight_bytes"]


def choose(*, layer: str | None, name: str, numel: int, nonzero: int | None, encoding: str) -> tuple[str, str]:
    """("sparse" | "dense", why) for one stored tensor, from what a file's header says of it.

    Args:
        layer: class name of the owning module ("Linear", "Conv2d"), None if not compressible.
        name: the tensor's qualified name.
        numel: its number of elements.
        nonzero: how many of them are non-zero (None when the file does not say).
        encoding: how it is stored ("raw", "shared", "sparse").

    Example:
        >>> choose(layer="Linear", name="fc1.weight", numel=235200, nonzero=11760, encoding="shared")
        ('sparse', 'density 0.050')
    """
    if layer not in SPARSE_LAYERS or not name.endswith("weight"):
        return "dense", "not a Linear or Conv2d weight"
    if encoding not in ("shared", "sparse") or nonzero is None:
        return "dense", "stored dense"
    density = nonzero / max(1, numel)
    if numel < MIN_WEIGHTS:
        return "dense", f"{numel} weights < {MIN_WEIGHTS}"
    limit = MAX_DENSITY_LARGE if numel >= LARGE else MAX_DENSITY
    if density > limit:
        return "dense", f"density {density:.2f} > {limit}"
    return "sparse", f"density {density:.3f}"


def supports(module: nn.Module) -> bool:
    """Whether a sparse replacement exists for this module as configured.

    Example:
        >>> supports(nn.Conv2d(3, 8, 3, padding="same"))
        False
    """
    if isinstance(module, nn.Conv2d):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return isinstance(module, nn.Linear)


def build(module: nn.Module, positions: np.ndarray, values: np.ndarray, bias: torch.Tensor | None) -> nn.Module:
    """The sparse replacement of a Linear or Conv2d whose weight has these non-zeros.

    Args:
        module: the dense layer (its shape and conv settings are read, its weight is not).
        positions: sorted flat positions of the non-zeros; values: their float32 values.
        bias: the layer's bias, or None.

    Example:
        >>> build(nn.Linear(4, 2), np.array([1, 6]), np.array([0.5, -1.0], np.float32), None)
        SparseLinear(in_features=4, out_features=2, nnz=2)
    """
    if isinstance(module, nn.Linear):
        return SparseLinear(csr_from_positions(positions, values, module.out_features, module.in_features), bias)
    if isinstance(module, nn.Conv2d):
        return SparseConv2d(module, positions, values, bias)
    raise TypeError(f"no sparse runtime for {type(module).__name__}")


def resident_weight_bytes(model: nn.Module) -> int:
    """Bytes the model's weights occupy in memory: CSR parts of sparse layers, dense tensors otherwise.

    Example:
        >>> resident_weight_bytes(dz.load("model.dzip", runtime="sparse"))
    """
    total = 0
    for module in model.modules():
        for t in list(module._parameters.values()) + list(module._buffers.values()):
            if t is None:
                continue
            total += csr_bytes(t) if t.layout == torch.sparse_csr else t.numel() * t.element_size()
    return total
