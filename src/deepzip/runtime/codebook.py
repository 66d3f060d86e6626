"""Layers that run straight from a weight's codebook indices (runtime/kernels.py), for inference.

What a file stores for a shared weight, the positions of its non-zeros, a code for each and the
codebook, is what these layers keep: 3 bytes per kept weight (a uint8 code and a uint16 column)
plus the row pointers, against 8 for torch's CSR and 4 per weight, zero or not, for a dense
matrix. Nothing of the weight's dense shape is ever allocated.

On CUDA the numba kernels do not run: Triton's kernels (runtime/triton_kernels.py) read the same
codes there, or, in the "packed" layout of runtime/lut.py, every weight's code in ⌈log2 K⌉ bits;
where triton is not installed the layer builds torch's CSR (cuSPARSE) from the codes once, on
the device. Gradients do not flow through any path: these are inference layers
(`deepzip.load(..., runtime=...)` returns a model in eval mode).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .lut import ExactTables, PackedMatrix, triton_runs
from .sparse import csr_from_positions


def _kernels():
    from . import kernels  # numba loads here, on first use

    return kernels


def kept(positions: np.ndarray | None, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions, codes) of the non-zero codes: as given, or found when codes cover every weight.

    Examples:
        >>> kept(None, np.array([0, 3, 0, 1]))
        (array([1, 3]), array([3, 1]))
    """
    if positions is not None:
        return positions, codes
    positions = np.flatnonzero(codes)
    return positions, codes[positions]


def pack(positions: np.ndarray, codes: np.ndarray, rows: int, columns: int) -> dict[str, torch.Tensor]:
    """Row pointers, narrow column indices and narrow codes of a rows × columns matrix's non-zeros.

    Args:
        positions: sorted flat (row-major) positions of the non-zeros.
        codes: their codebook indices (≥ 1).
        rows: the matrix's rows.
        columns: its columns.

    Examples:
        >>> pack(np.array([1, 6]), np.array([3, 1]), 2, 4)["cols"]
        tensor([1, 2], dtype=torch.uint16)
    """
    row = positions // max(columns, 1)
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=rows), out=indptr[1:])
    col_type = np.uint16 if columns <= 1 << 16 else np.int32
    code_type = np.uint8 if codes.size == 0 or codes.max() < 256 else np.uint16
    return {"indptr": torch.from_numpy(indptr), "cols": torch.from_numpy((positions % max(columns, 1)).astype(col_type)),
            "codes": torch.from_numpy(codes.astype(code_type))}


class _CodebookMatrix(ExactTables):
    """The rows × columns matrix both layers multiply by, kept as its non-zeros' codes row by row."""

    def __init__(self, packed: dict[str, torch.Tensor], table: np.ndarray, rows: int, columns: int,
                 scales: np.ndarray | None = None) -> None:
        super().__init__()
        self.rows, self.columns = rows, columns
        for name, t in packed.items():
            self.register_buffer(name, t)
        self.register_buffer("table", torch.from_numpy(np.ascontiguousarray(table, np.float32)))
        self.register_buffer("scales", None if scales is None else torch.from_numpy(np.asarray(scales, np.float32)))
        self._csr: torch.Tensor | None = None

    def resident_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.indptr, self.cols, self.codes, self.table, self.scales)
                   if t is not None)

    def mm(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (M, columns) · Wᵀ (+ bias): (M, rows), in x's dtype. Triton's sparse kernel on a GPU
        (cuSPARSE from the codes where triton is missing), numba's on the CPU."""
        if x.device.type == "cuda" and triton_runs(x.device):
            from . import triton_kernels

            # Unsigned narrow indices travel as their signed twins; the kernel masks the sign off.
            cols = self.cols.view(torch.int16) if self.cols.dtype == torch.uint16 else self.cols
            codes = self.codes.view(torch.int16) if self.codes.dtype == torch.uint16 else self.codes
            return triton_kernels.sparse_mm(x.contiguous(), self.indptr, cols, codes, self.table, self.rows,
                                            self.scales, bias)
        y = self.times(x.t().to(torch.float32)).t()
        if self.scales is not None:
            y = y * self.scales
        return (y if bias is None else y + bias).to(x.dtype)

    def times(self, xt: torch.Tensor) -> torch.Tensor:
        """W · xt for xt (columns, batch) float32, rows unscaled; returns (rows, batch)."""
        if xt.device.type != "cpu":
            return torch.sparse.mm(self._device_csr(xt.device), xt)
        k = _kernels()
        xt = xt.detach().contiguous()
        arrays = (self.indptr.numpy(), self.cols.numpy(), self.codes.numpy(), self.table.numpy())
        if xt.shape[1] == 1:
            y = np.empty(self.rows, np.float32)
            k.matvec(*arrays, xt.numpy().reshape(-1), y)
            return torch.from_numpy(y).view(self.rows, 1)
        yt = np.empty((self.rows, xt.shape[1]), np.float32)
        k.matmat(*arrays, xt.numpy(), yt)
        return torch.from_numpy(yt)

    def _device_csr(self, device: torch.device) -> torch.Tensor:
        if self._csr is None or self._csr.device != device:
            # Built on the host from the codes, wherever .to() has moved them since.
            positions = self._positions()
            values = self.table.cpu().numpy()[self.codes.cpu().numpy().astype(np.int64)]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                self._csr = csr_from_positions(positions, values, self.rows, self.columns).to(device)
        return self._csr

    def _positions(self) -> np.ndarray:
        indptr = self.indptr.cpu().numpy()
        rows = np.repeat(np.arange(self.rows, dtype=np.int64), np.diff(indptr))
        return rows * self.columns + self.cols.cpu().numpy().astype(np.int64)

    @property
    def nnz(self) -> int:
        return int(self.codes.numel())


def codebook_matrix(layout: str, positions: np.ndarray | None, codes: np.ndarray, table: np.ndarray,
                    scales: np.ndarray | None, rows: int, columns: int) -> nn.Module:
    """The matrix a codebook layer multiplies by, in one of two layouts.

    Args:
        layout: "sparse" (kept weights row by row: pruned weights, any codebook size) or "packed"
            (every weight's code in ⌈log2 K⌉ bits, for the GPU's lookup-table kernel).
        positions: sorted flat positions of `codes`, or None when codes cover every weight.
        codes: codebook indices (≥ 1 where positions are given).
        table: the codebook, entry 0 zero.
        scales: float32 (rows,) row scales (format version 5), or None.
        rows: the matrix's rows.
        columns: its columns.

    Examples:
        >>> codebook_matrix("sparse", np.array([1]), np.array([1]), np.array([0, 2.0], np.float32), None, 1, 2)
        _CodebookMatrix()
    """
    if layout == "packed":
        if positions is not None:
            grid = np.zeros(rows * columns, np.int64)
            grid[positions] = codes
            codes = grid
        return PackedMatrix(np.asarray(codes).reshape(rows, columns), table, scales)
    positions, codes = kept(positions, codes)
    return _CodebookMatrix(pack(positions, codes, rows, columns), table, rows, columns, scales)


class CodebookLinear(nn.Module):
    """y = x Wᵀ + b with W as codebook indices.

    Args:
        linear: the layer it replaces (its shape is read, not its weight).
        positions: sorted flat positions of the weight's non-zeros, or None when `codes` holds a
            code for every weight.
        codes: their codebook indices (≥ 1 where positions are given).
        table: the codebook with its zero entry first, as the file's decoder gives it.
        bias: the layer's bias, or None.
        scales: float32 scale per output row (format version 5), or None.
        layout: "sparse" or "packed" (see codebook_matrix).

    Examples:
        >>> layer = CodebookLinear(nn.Linear(4096, 4096), positions, codes, table, bias)
    """

    def __init__(self, linear: nn.Linear, positions: np.ndarray | None, codes: np.ndarray, table: np.ndarray,
                 bias: torch.Tensor | None, *, scales: np.ndarray | None = None, layout: str = "sparse") -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = codebook_matrix(layout, positions, codes, table, scales, self.out_features, self.in_features)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.weight.mm(x.reshape(-1, self.in_features), self.bias)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, nnz={self.weight.nnz}, "
                f"layout={'packed' if isinstance(self.weight, PackedMatrix) else 'sparse'}")


class CodebookConv2d(nn.Module):
    """Conv2d as unfold + one codebook product with a block-diagonal matrix of all groups' filters
    (grouped and depthwise convolutions are one kernel call, as in SparseConv2d).

    Args:
        conv: the layer it replaces (shape, stride, padding, dilation and groups are read).
        positions: as for CodebookLinear.
        codes: as for CodebookLinear.
        table: as for CodebookLinear.
        bias: the layer's bias, or None.
        scales: as for CodebookLinear.
        layout: as for CodebookLinear.

    Examples:
        >>> layer = CodebookConv2d(nn.Conv2d(64, 128, 3, padding=1), positions, codes, table, None)
    """

    def __init__(self, conv: nn.Conv2d, positions: np.ndarray | None, codes: np.ndarray, table: np.ndarray,
                 bias: torch.Tensor | None, *, scales: np.ndarray | None = None, layout: str = "sparse") -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ConfigError("the codebook runtime supports zero padding given as numbers")
        self.out_channels, self.in_channels, self.groups = conv.out_channels, conv.in_channels, conv.groups
        self.kernel_size, self.stride, self.padding, self.dilation = conv.kernel_size, conv.stride, conv.padding, conv.dilation
        per_filter = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        positions, codes = kept(positions, codes)
        row = positions // per_filter
        col = (row // (conv.out_channels // conv.groups)) * per_filter + positions % per_filter
        width = per_filter * conv.groups
        self.weight = codebook_matrix(layout, row * width + col, codes, table, scales, conv.out_channels, width)
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # N × CKK × L
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        y = self.weight.mm(cols.transpose(1, 2).reshape(-1, cols.shape[1]), self.bias)  # N·L × out
        return y.reshape(n, oh * ow, self.out_channels).transpose(1, 2).reshape(n, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, nnz={self.weight.nnz}")
