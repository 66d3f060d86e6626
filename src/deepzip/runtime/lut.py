"""A weight as packed codebook indices for the GPU's lookup-table kernels (runtime/triton_kernels.py).

Every weight keeps its code, BITS = ⌈log2 K⌉ bits of it, 32 // BITS codes to an int32 word: a
3-bit 4096 × 4096 layer is 6.7 MB where float16 is 33.5 MB, and a matrix–vector product at
batch 1, which only streams the weight once, reads that much less memory. Pruned weights keep
the row-compressed layout of runtime/codebook.py instead (runtime.choose_layout says which).

The kernels run where Triton does: on CUDA, or on the CPU under TRITON_INTERPRET=1 (slow; the
tests). Elsewhere `mm` falls back to looking the weight up and multiplying with PyTorch, which
builds the dense weight for the call: correct everywhere, fast nowhere; `runtime="dense"` is the
better choice on such a machine.
"""
from __future__ import annotations

import functools
import math
import os
import warnings

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DeepzipWarning


@functools.cache
def triton_installed() -> bool:
    """Whether `import triton` works (cached; the import costs a second)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreted() -> bool:
    """Whether Triton's interpreter is on (TRITON_INTERPRET, read as Triton reads it)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def triton_runs(device: torch.device | str) -> bool:
    """Whether the Triton kernels run for tensors on `device`: CUDA with triton installed, or any
    device under Triton's interpreter (TRITON_INTERPRET=1).

    Examples:
        >>> triton_runs("cpu")
        False
    """
    return (torch.device(device).type == "cuda" or interpreted()) and triton_installed()


def warn_without_triton(device: torch.device | str) -> None:
    """One warning when a GPU run will not get the lookup-table kernels."""
    if torch.device(device).type == "cuda" and not triton_installed():
        warnings.warn("triton is not installed, so codebook layers on the GPU run through cuSPARSE from "
                      "their codes; `pip install 'deepzip[gpu]'` for the lookup-table kernels.", DeepzipWarning,
                      stacklevel=3)


def bits_for(entries: int) -> int:
    """Bits per code for a codebook of `entries` (zero entry included), at least 1.

    Examples:
        >>> bits_for(8), bits_for(9)
        (3, 4)
    """
    return max(1, math.ceil(math.log2(max(entries, 2))))


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """int32 (⌈K / per⌉, N) words of a (N, K) code grid, per = 32 // bits codes to a word, code k
    of a row in word k // per at bit (k % per) · bits.

    Args:
        codes: (N, K) non-negative integers below 2**bits.
        bits: 1 to 8.

    Examples:
        >>> pack_codes(np.array([[1, 2, 3]]), 8)
        array([[197121]], dtype=int32)
    """
    if not 1 <= bits <= 8:
        raise ConfigError(f"packed codes have 1 to 8 bits, not {bits}")
    n, k = codes.shape
    if codes.size and (codes.min() < 0 or codes.max() >= 1 << bits):
        raise ConfigError(f"codes must lie in [0, {1 << bits}) to pack in {bits} bits")
    per = 32 // bits
    width = -(-k // per)
    padded = np.zeros((n, width * per), np.uint32)
    padded[:, :k] = codes
    lanes = padded.reshape(n, width, per) << (np.arange(per, dtype=np.uint32) * bits)
    words = np.bitwise_or.reduce(lanes, axis=2)
    return np.ascontiguousarray(words.T).view(np.int32)


def unpack_codes(words: np.ndarray, bits: int, k: int) -> np.ndarray:
    """The (N, K) code grid back from pack_codes's words: the reference the kernels are held to.

    Examples:
        >>> unpack_codes(pack_codes(np.array([[1, 2, 3]]), 3), 3, 3)
        array([[1, 2, 3]])
    """
    per = 32 // bits
    lanes = (words.view(np.uint32).T[:, :, None] >> (np.arange(per, dtype=np.uint32) * bits)) & ((1 << bits) - 1)
    return lanes.reshape(words.shape[1], -1)[:, :k].astype(np.int64)


class ExactTables(nn.Module):
    """A module whose codebook (`table`) and row `scales` stay float32 whatever `.half()` or
    `.to(dtype)` does to the rest of the model: nearby levels of a 256-entry codebook would
    merge in bfloat16, and the kernels read them as float32 anyway. Devices still change."""

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001 (torch's own signature)
        before = {n: b for n in ("table", "scales") if (b := self._buffers.get(n)) is not None}
        super()._apply(fn, recurse)
        for name, value in before.items():
            self._buffers[name] = value.to(self._buffers[name].device, torch.float32)
        return self


class PackedMatrix(ExactTables):
    """A rows × columns weight as packed codes, its float32 codebook and optional row scales.

    Args:
        codes: (rows, columns) code of every weight (0 for a pruned one, whose table entry is 0).
        table: float32 codebook, indexed by code.
        scales: float32 (rows,) or None; a weight is table[code] × scale[row].

    Examples:
        >>> m = PackedMatrix(np.array([[1, 0], [2, 1]]), np.array([0, .5, -1], np.float32), None)
        >>> m.mm(torch.ones(1, 2))
        tensor([[ 0.5000, -0.5000]])
    """

    def __init__(self, codes: np.ndarray, table: np.ndarray, scales: np.ndarray | None) -> None:
        super().__init__()
        self.rows, self.columns = codes.shape
        self.bits = bits_for(len(table))
        lookup = np.zeros(1 << self.bits, np.float32)
        lookup[:len(table)] = table
        self.register_buffer("words", torch.from_numpy(pack_codes(codes, self.bits)))
        self.register_buffer("table", torch.from_numpy(lookup))
        self.register_buffer("scales", None if scales is None else torch.from_numpy(np.asarray(scales, np.float32)))

    def resident_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.words, self.table, self.scales) if t is not None)

    def mm(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (M, columns) · Wᵀ (+ bias): (M, rows), in x's dtype."""
        x = x.contiguous()
        if triton_runs(x.device):
            from . import triton_kernels

            return triton_kernels.packed_mm(x, self.words, self.table, self.bits, self.rows, self.columns,
                                            self.scales, bias)
        y = x.to(torch.float32) @ self.dense().t().to(x.device)
        return (y if bias is None else y + bias).to(x.dtype)

    def dense(self) -> torch.Tensor:
        """The float32 weight, looked up: the kernels' reference (and the fallback's weight)."""
        codes = unpack_codes(self.words.cpu().numpy(), self.bits, self.columns)
        weight = self.table.cpu()[torch.from_numpy(codes)]
        return weight if self.scales is None else weight * self.scales.cpu()[:, None]

    @property
    def nnz(self) -> int:
        return self.rows * self.columns
