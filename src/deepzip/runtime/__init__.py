"""Runtimes that run compressed layers without a dense weight: `deepzip.load(path, runtime=...)`.

Three ways to run a Linear or Conv2d weight:
  dense     the decoded weight in an ordinary layer (exact, and fastest for small layers)
  csr       torch's CSR (MKL on CPU, cuSPARSE on CUDA): float32 values + int32 columns, 8 B a weight
  codebook  deepzip's kernels reading the file's codes (runtime/kernels.py): 3 B a weight
runtime="sparse" picks per layer by a rule on what the header says (layer, size, density,
shared or not), so `deepzip inspect` reports the choice without decoding anything; "csr" and
"codebook" force one way for every layer that has it. The rule, from the sweep of
bench/runtime.py (docs/results.md, "Runtimes that never densify"): from 4 M weights, the
codebook kernel for shared weights (CSR for float ones) up to 12 % density; from 1 M weights,
CSR up to 6 %; dense otherwise, because below that a call's fixed cost exceeds the product. The
choice is made for batch 1, the deployment case; larger batches favour CSR.

Where Triton's kernels run (a GPU with triton installed; `runtime/lut.py`), a forced "codebook"
picks, per layer, between two layouts of the codes by their bytes: "sparse" (the kept weights
row by row, 3 bytes each) below a density of bits / 24, "packed" (every weight's code in
⌈log2 K⌉ bits, zero or not) above it; a codebook of more than 256 entries stays sparse.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from .codebook import CodebookConv2d, CodebookLinear, kept
from .lut import PackedMatrix, bits_for, triton_runs, warn_without_triton
from .sparse import SparseConv2d, SparseLinear, csr_bytes, csr_from_positions

SPARSE_LAYERS = ("Linear", "Conv2d")
RUNTIMES = ("dense", "sparse", "csr", "codebook")
LARGE, LARGE_DENSITY = 4 << 20, 0.12   # from LARGE weights up: codebook (or CSR) up to this density
MEDIUM, MEDIUM_DENSITY = 1 << 20, 0.06  # from MEDIUM weights up: CSR up to this density

__all__ = ["CodebookConv2d", "CodebookLinear", "PackedMatrix", "RUNTIMES", "SparseConv2d", "SparseLinear", "build",
           "choose", "choose_layout", "csr_bytes", "resident_weight_bytes", "supports", "triton_runs",
           "warn_without_triton"]


def choose(*, layer: str | None, name: str, numel: int, nonzero: int | None, encoding: str,
           runtime: str = "sparse") -> tuple[str, str]:
    """("dense" | "csr" | "codebook", why) for one stored tensor, from what a file's header says.

    Args:
        layer: class name of the owning module ("Linear", "Conv2d"), None if not compressible.
        name: the tensor's qualified name.
        numel: its number of elements.
        nonzero: how many of them are non-zero (None when the file does not say).
        encoding: how it is stored ("raw", "shared", "sparse").
        runtime: "sparse" (the measured rule), or "csr" / "codebook" to force that way.

    Examples:
        >>> choose(layer="Linear", name="fc6.weight", numel=102_760_448, nonzero=8_220_835, encoding="shared")
        ('codebook', 'density 0.080')
    """
    if runtime == "dense" or layer not in SPARSE_LAYERS or not name.endswith("weight"):
        return "dense", "not a Linear or Conv2d weight" if runtime != "dense" else "dense runtime"
    if encoding not in ("shared", "sparse") or nonzero is None:
        return "dense", "stored dense"
    density = nonzero / max(1, numel)
    way = "codebook" if encoding == "shared" else "csr"
    if runtime == "csr" or (runtime == "codebook" and way == "csr"):
        return "csr", f"forced, density {density:.3f}"
    if runtime == "codebook":
        return "codebook", f"forced, density {density:.3f}"
    if numel >= LARGE and density <= LARGE_DENSITY:
        return way, f"density {density:.3f}"
    if numel >= MEDIUM and density <= MEDIUM_DENSITY:
        return "csr", f"density {density:.3f}"
    if numel < MEDIUM:
        return "dense", f"{numel} weights < {MEDIUM}"
    return "dense", f"density {density:.2f} > {LARGE_DENSITY if numel >= LARGE else MEDIUM_DENSITY}"


def supports(module: nn.Module) -> bool:
    """Whether a sparse replacement exists for this module as configured.

    Examples:
        >>> supports(nn.Conv2d(3, 8, 3, padding="same"))
        False
    """
    if isinstance(module, nn.Conv2d):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return isinstance(module, nn.Linear)


def choose_layout(module: nn.Module, density: float, entries: int, packed_ok: bool) -> str:
    """"packed" or "sparse" for a codebook layer: whichever holds the codes in fewer bytes, where
    the packed layout's kernel runs at all (packed_ok), its codes fit 8 bits and the layer is not a
    grouped convolution (whose block-diagonal matrix would pack its zeros).

    Examples:
        >>> choose_layout(nn.Linear(8, 8), 0.9, 16, True), choose_layout(nn.Linear(8, 8), 0.05, 16, True)
        ('packed', 'sparse')
    """
    bits = bits_for(entries)
    grouped = isinstance(module, nn.Conv2d) and module.groups > 1
    if not packed_ok or bits > 8 or grouped or density < bits / 24:
        return "sparse"
    return "packed"


def build(module: nn.Module, how: str, positions: np.ndarray | None, codes: np.ndarray, table: np.ndarray | None,
          bias: torch.Tensor | None, *, scales: np.ndarray | None = None, layout: str = "sparse") -> nn.Module:
    """The replacement of a Linear or Conv2d whose weight has these non-zeros.

    Args:
        module: the dense layer (its shape and conv settings are read, its weight is not).
        how: "csr" or "codebook".
        positions: sorted flat positions of the non-zeros (None: codes cover every weight).
        codes: their codebook indices; or, with table None, the float32 values themselves (a
            pruned, unshared weight: CSR only).
        table: the codebook (entry 0 is zero), or None.
        bias: the layer's bias, or None.
        scales: a codebook weight's scale per row (format version 5), or None; with how="codebook"
            only (CSR takes the scaled values as `codes`, table None).
        layout: a codebook layer's layout, "sparse" or "packed" (choose_layout).

    Examples:
        >>> build(nn.Linear(4, 2), "csr", np.array([1, 6]), np.array([0.5, -1.0], np.float32), None, None)
        SparseLinear(in_features=4, out_features=2, nnz=2)
    """
    if how == "codebook" and table is not None:
        cls = CodebookLinear if isinstance(module, nn.Linear) else CodebookConv2d
        return cls(module, positions, codes, table, bias, scales=scales, layout=layout)
    if scales is not None:
        raise ConfigError("row scales are for the codebook runtime; give CSR the scaled values, table None.")
    positions, codes = kept(positions, codes)
    values = codes if table is None else table[codes]
    if isinstance(module, nn.Linear):
        return SparseLinear(csr_from_positions(positions, values, module.out_features, module.in_features), bias)
    if isinstance(module, nn.Conv2d):
        return SparseConv2d(module, positions, values, bias)
    raise ConfigError(f"no sparse runtime for {type(module).__name__}")


def resident_weight_bytes(model: nn.Module) -> int:
    """Bytes the model's weights occupy in memory: CSR parts of sparse layers, dense tensors otherwise.

    Examples:
        >>> resident_weight_bytes(dz.load("model.dzip", runtime="sparse"))
    """
    total = 0
    for module in model.modules():
        for t in list(module._parameters.values()) + list(module._buffers.values()):
            if t is None:
                continue
            total += csr_bytes(t) if t.layout == torch.sparse_csr else t.numel() * t.element_size()
    return total
