"""Layers that run a compressed weight as a sparse matrix, never as a dense one.

Weights are CSR matrices (int32 row pointers and column indices, float32 values), the layout
torch's sparse kernels (MKL on CPU, cuSPARSE on CUDA) multiply fastest. A Linear layer is one
sparse × dense product. A Conv2d is im2col (`F.unfold`) followed by one sparse product with a
block-diagonal matrix that holds every group's filters side by side, so grouped and depthwise
convolutions cost one kernel call, not one per group.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def csr_from_positions(positions: np.ndarray, values: np.ndarray, rows: int, cols: int) -> torch.Tensor:
    """CSR matrix from sorted flat positions (row-major) of its non-zeros."""
    r = positions // cols
    crow = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(r, minlength=rows), out=crow[1:])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        # Invariants hold by construction: the reader checked positions are strictly increasing
        # and inside the matrix, so torch's O(nnz) check would only repeat it.
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow.astype(np.int32)), torch.from_numpy((positions % cols).astype(np.int32)),
            torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)), size=(rows, cols),
            check_invariants=False)


def csr_bytes(w: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in (w.crow_indices(), w.col_indices(), w.values()))


class SparseLinear(nn.Module):
    """y = x Wᵀ + b with W (out × in) in CSR."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.t()).t()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        nnz = self.weight.values().numel()
        return f"in_features={self.in_features}, out_features={self.out_features}, nnz={nnz}"


class SparseConv2d(nn.Module):
    """Conv2d as unfold + one sparse product with a block-diagonal CSR of all groups' filters."""

    def __init__(self, conv: nn.Conv2d, positions: np.ndarray, values: np.ndarray, bias: torch.Tensor | None) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ConfigError("the sparse runtime supports zero padding given as numbers")
        self.out_channels, self.in_channels, self.groups = conv.out_channels, conv.in_channels, conv.groups
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        per_filter = conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]
        out_per_group = conv.out_channels // conv.groups
        row = positions // per_filter
        col = (row // out_per_group) * per_filter + positions % per_filter
        # Positions in the block-diagonal matrix: rows keep their order, so they stay sorted.
        width = per_filter * conv.groups
        self.register_buffer("weight", csr_from_positions(row * width + col, values, conv.out_channels, width))
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # N × (C·kh·kw) × L
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        # One product for the whole batch: (out × C·k·k) @ (C·k·k × N·L).
        y = torch.sparse.mm(self.weight, cols.transpose(0, 1).reshape(cols.shape[1], -1))
        y = y.reshape(self.out_channels, n, oh * ow).transpose(0, 1)
        if self.bias is not None:
            y = y + self.bias[None, :, None]
        return y.reshape(n, self.out_channels, oh, ow)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"nnz={self.weight.values().numel()}")
