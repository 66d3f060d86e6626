"""Triton kernels that multiply by a weight held as codebook indices: read the narrow codes, look
each weight up in the codebook, multiply. The weight is never densified, in memory or in a tile's
registers beyond one (BLOCK_K × BLOCK_N) slice.

Two layouts, both built by runtime/lut.py from a file's decoded streams:
  packed  every weight's code, BITS bits each, 32 // BITS codes to an int32 word, words laid
          out (ceil(K / per), N) so that a tile's loads are contiguous along N (the output
          features); 3-, 5-, 6- and 7-bit codes leave the word's top bits unused (10 three-bit
          codes in 30 of 32 bits) so that no code straddles two words.
  sparse  a pruned weight's kept entries row by row (indptr, column, code), as the numba and C
          runtimes keep them: 3 bytes a kept weight.
Both take the codebook as float32 (its 2^BITS entries stay in L1 whatever their type, and the
file's values stay exact) and optionally one scale per output row (format version 5's scaled
rows: a weight is table[code] × scale[row]). Accumulation is float32; the result is cast to the
activations' dtype.

Imported only when a kernel runs (deepzip never imports triton at start-up). On a machine with no
GPU, TRITON_INTERPRET=1 runs the same kernels in Triton's interpreter on CPU tensors, which is how
the tests hold them to a PyTorch reference.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from .lut import interpreted


@triton.jit
def _packed_tile(w_ptr, t_ptr, kk, rn, K, N, stride_wk, BITS: tl.constexpr, PER: tl.constexpr):
    """The (BLOCK_K, BLOCK_N) float32 slice W[rn, kk]ᵀ, looked up from its packed codes."""
    valid = (kk[:, None] < K) & (rn[None, :] < N)
    words = tl.load(w_ptr + (kk // PER)[:, None] * stride_wk + rn[None, :], mask=valid, other=0)
    codes = (words >> ((kk % PER) * BITS)[:, None]) & ((1 << BITS) - 1)
    # out-of-range slots read 0, not table[0]; float32 whatever the table was cast to
    return tl.load(t_ptr + codes, mask=valid, other=0.0).to(tl.float32)


@triton.jit
def _finish(acc, rows, cols, y_ptr, s_ptr, b_ptr, M, N, stride_ym,
            HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """acc (rows × cols) times each output feature's scale, plus its bias, stored into y."""
    if HAS_SCALE:
        acc = acc * tl.load(s_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)[None, :]
    if HAS_BIAS:
        acc = acc + tl.load(b_ptr + cols, mask=cols < N, other=0.0)[None, :].to(tl.float32)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    at = rows.to(tl.int64)[:, None] * stride_ym + cols[None, :]  # 64-bit: an LM head's M·N passes 2^31
    tl.store(y_ptr + at, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def packed_mm_kernel(x_ptr, w_ptr, t_ptr, s_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wk, stride_ym, M_BUCKET,
                     BITS: tl.constexpr, PER: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """y = x Wᵀ for a batch of rows: one (BLOCK_M × BLOCK_N) output tile per program, tl.dot on
    tiles of x and of the looked-up weights (float16/bfloat16 tensor cores when x is one)."""
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rm.to(tl.int64)[:, None] * stride_xm + kk[None, :], mask=(rm[:, None] < M) & (kk[None, :] < K),
                    other=0.0)
        w = _packed_tile(w_ptr, t_ptr, kk, rn, K, N, stride_wk, BITS, PER)
        if x.dtype == tl.float32:
            acc += tl.dot(x, w, input_precision="ieee")  # no TF32: float32 in, float32 exact out
        else:
            acc += tl.dot(x, w.to(x.dtype))
    _finish(acc, rm, rn, y_ptr, s_ptr, b_ptr, M, N, stride_ym, HAS_SCALE, HAS_BIAS)


@triton.jit
def packed_mv_kernel(x_ptr, w_ptr, t_ptr, s_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wk, stride_ym, M_BUCKET,
                     BITS: tl.constexpr, PER: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """y = x Wᵀ for one row of x per program: at batch 1 the product is a pass over the codes
    (memory bound), so it multiplies and sums on the vector units instead of padding x to a
    16-row tensor-core tile."""
    m = tl.program_id(1)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + m.to(tl.int64) * stride_xm + kk, mask=kk < K, other=0.0).to(tl.float32)
        w = _packed_tile(w_ptr, t_ptr, kk, rn, K, N, stride_wk, BITS, PER)
        acc += tl.sum(w * x[:, None], axis=0)
    rows = m + tl.arange(0, 1)
    _finish(acc[None, :], rows, rn, y_ptr, s_ptr, b_ptr, M, N, stride_ym, HAS_SCALE, HAS_BIAS)


@triton.jit
def sparse_mm_kernel(x_ptr, indptr_ptr, cols_ptr, codes_ptr, t_ptr, s_ptr, b_ptr, y_ptr, M, N, stride_xm, stride_ym,
                     M_BUCKET, COL_MASK: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_J: tl.constexpr):
    """y[:, r] = Σ_j table[code_j] · x[:, col_j] over output row r's kept weights: one row and
    BLOCK_M samples per program, BLOCK_J kept weights at a time. A one-axis grid, row-major over
    (row, block of samples), since a grid's second axis stops at 65,535 blocks."""
    blocks = tl.cdiv(M, BLOCK_M)
    r = tl.program_id(0) // blocks
    rm = (tl.program_id(0) % blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
    start = tl.load(indptr_ptr + r)
    stop = tl.load(indptr_ptr + r + 1)
    acc = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for j0 in range(start, stop, BLOCK_J):
        jj = j0 + tl.arange(0, BLOCK_J)
        live = jj < stop
        # Columns may be stored as int16 holding uint16 values; COL_MASK undoes the sign.
        col = tl.load(cols_ptr + jj, mask=live, other=0).to(tl.int32) & COL_MASK
        code = tl.load(codes_ptr + jj, mask=live, other=0).to(tl.int32) & 0xFFFF
        w = tl.load(t_ptr + code, mask=live, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + rm.to(tl.int64)[:, None] * stride_xm + col[None, :], mask=(rm[:, None] < M) & live[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(x * w[None, :], axis=1)
    cols = r + tl.arange(0, 1)
    _finish(acc[:, None], rm, cols, y_ptr, s_ptr, b_ptr, M, N, stride_ym, HAS_SCALE, HAS_BIAS)


# On a GPU each kernel's tile sizes are tuned once per layer shape (the first call of a shape
# times these candidates); the interpreter runs the fixed sizes the launchers pass. Batch-1 tiles
# are narrow along N so that a 4096-wide layer gives every SM programs to stream codes with.
_MV_CONFIGS = [triton.Config({"BLOCK_N": n, "BLOCK_K": k}, num_warps=w)
               for n, k, w in ((16, 256, 4), (32, 128, 4), (32, 256, 4), (64, 128, 4), (64, 256, 8))]
_MM_CONFIGS = [triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=st)
               for m, n, k, w, st in ((16, 64, 64, 4, 3), (16, 128, 64, 4, 3), (32, 64, 64, 4, 3),
                                      (64, 64, 64, 4, 3), (64, 128, 32, 4, 4), (128, 128, 32, 8, 3))]
_SPARSE_CONFIGS = [triton.Config({"BLOCK_J": j}, num_warps=w) for j, w in ((32, 1), (64, 2), (128, 4))]
# M_BUCKET (the batch's rows, to the power of two above, at most 256) keys the tuning: a prompt of
# 2,048 tokens and a batch of 5 get their own tiles, and a new prompt length no new tuning.
_tuned_mv = triton.autotune(_MV_CONFIGS, key=["N", "K", "M_BUCKET"])(packed_mv_kernel)
_tuned_mm = triton.autotune(_MM_CONFIGS, key=["N", "K", "M_BUCKET"])(packed_mm_kernel)
_tuned_sparse = triton.autotune(_SPARSE_CONFIGS, key=["N", "M_BUCKET"])(sparse_mm_kernel)


def _bucket(m: int) -> int:
    return min(256, triton.next_power_of_2(max(m, 1)))


def _on(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current CUDA device: make it x's (a model on cuda:1)."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _dummy(like: torch.Tensor) -> torch.Tensor:
    return torch.empty(1, dtype=torch.float32, device=like.device)


def packed_mm(x: torch.Tensor, words: torch.Tensor, table: torch.Tensor, bits: int, n: int, k: int,
              scales: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) times the packed weight's transpose: (M, N), in x's dtype.

    Args:
        x: activations, float32 / float16 / bfloat16, last dimension contiguous.
        words: int32 (ceil(K / (32 // bits)), N) packed codes (runtime/lut.py's pack_codes).
        table: float32 codebook of 2^bits entries.
        bits: bits per code, 1 to 8.
        n: the weight's rows (output features).
        k: its columns (input features).
        scales: float32 (N,) per output row, or None.
        bias: (N,) or None.

    Examples:
        >>> y = packed_mm(x, words, table, 4, 4096, 4096)
    """
    m = x.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y
    common = dict(BITS=bits, PER=32 // bits, HAS_SCALE=scales is not None, HAS_BIAS=bias is not None)
    args = (x, words, table, _dummy(x) if scales is None else scales, _dummy(x) if bias is None else bias, y,
            m, n, k, x.stride(0), words.stride(0), y.stride(0), _bucket(m))
    with _on(x):
        if m <= 4 and interpreted():
            packed_mv_kernel[(triton.cdiv(n, 64), m)](*args, BLOCK_N=64, BLOCK_K=128, **common)
        elif m <= 4:
            _tuned_mv[lambda meta: (triton.cdiv(n, meta["BLOCK_N"]), m)](*args, **common)
        elif interpreted():
            block_m = 16 if m <= 16 else 64
            packed_mm_kernel[(triton.cdiv(m, block_m), triton.cdiv(n, 64))](*args, BLOCK_M=block_m, BLOCK_N=64,
                                                                             BLOCK_K=64, **common)
        else:
            _tuned_mm[lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(n, meta["BLOCK_N"]))](*args, **common)
    return y


def sparse_mm(x: torch.Tensor, indptr: torch.Tensor, cols: torch.Tensor, codes: torch.Tensor, table: torch.Tensor,
              n: int, scales: torch.Tensor | None = None, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x (M, K) times a pruned codebook weight's transpose: (M, N), in x's dtype.

    Args:
        x: activations, last dimension contiguous.
        indptr: int32 or int64 (N + 1,) where each output row's kept weights start.
        cols: int16 (holding uint16) or int32 column of each kept weight.
        codes: uint8 or int16 (holding uint16) codebook index of each.
        table: float32 codebook, entry 0 the zero.
        n: output features.
        scales: float32 (N,) per output row, or None.
        bias: (N,) or None.

    Examples:
        >>> y = sparse_mm(x, indptr, cols, codes, table, 4096)
    """
    m = x.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0 or n == 0:
        return y
    block_m = 1 if m == 1 else min(64, triton.next_power_of_2(m))
    args = (x, indptr, cols, codes, table, _dummy(x) if scales is None else scales,
            _dummy(x) if bias is None else bias, y, m, n, x.stride(0), y.stride(0), _bucket(m))
    common = dict(COL_MASK=0xFFFF if cols.dtype == torch.int16 else -1, HAS_SCALE=scales is not None,
                  HAS_BIAS=bias is not None, BLOCK_M=block_m)
    grid = (n * triton.cdiv(m, block_m),)
    with _on(x):
        if interpreted():
            sparse_mm_kernel[grid](*args, BLOCK_J=64, **common)
        else:
            _tuned_sparse[grid](*args, **common)
    return y
