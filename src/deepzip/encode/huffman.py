"""Canonical, length-limited Huffman coding of integer symbol streams, compiled with numba.

Only the code lengths are stored: canonical codes follow from them (assigned in (length, symbol)
order, as in DEFLATE), so a table of lengths is the whole model. Codes are at most 15 bits, which
lets the decoder resolve every symbol with one lookup in a table of at most 2^15 entries.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DzipFormatError
from .dtypes import symbol_dtype

MAX_LEN = 15
# Zero bytes appended to the decoder's copy of the input: its refill reads up to 8 bytes ahead of
# the bits it has used, so with them in place it never needs a bounds check in the hot loop.
_PAD = 8


def _kernels():
    from . import huffman_kernels  # numba loads here, on first use, not at import

    return huffman_kernels


def code_lengths(counts: np.ndarray, max_len: int = MAX_LEN) -> np.ndarray:
    """Huffman code length (uint8) of each symbol of the alphabet `range(len(counts))`.

    Unused symbols get 0; a lone used symbol gets 1 (a code needs at least one bit). When the
    optimal code is deeper than `max_len`, the counts are halved (used ones kept at least 1) and
    the tree rebuilt until it fits: each halving flattens the distribution, ending at worst in
    a balanced tree. It costs little: on Fibonacci counts, the deepest trees there are, 40 symbols
    limited to 10 bits take 0.4 % more than the unlimited optimum (3.8 % at 8 bits).
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and counts.dtype.kind not in "iu"):
        raise ConfigError("counts must be a 1-D array of integers.")
    if not 1 <= max_len <= MAX_LEN:
        raise ConfigError(f"max_len must be between 1 and {MAX_LEN}, not {max_len}.")
    if counts.size and counts.min() < 0:
        raise ConfigError("counts must not be negative.")
    lengths = np.zeros(len(counts), np.uint8)
    used = np.flatnonzero(counts)
    if len(used) == 1:
        lengths[used] = 1
    if len(used) <= 1:
        return lengths
    if len(used) > 1 << max_len:
        raise ConfigError(f"{len(used)} symbols cannot all get codes of at most {max_len} bits.")
    weights = counts[used].astype(np.int64)
    depths = _kernels().tree_depths(weights)
    while depths.max() > max_len:
        weights = np.maximum(1, weights >> 1)
        depths = _kernels().tree_depths(weights)
    lengths[used] = depths
    return lengths


def _check_lengths(lengths, error: type[Exception], need_symbol: bool) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.size == 0 or lengths.dtype.kind not in "iu":
        raise error("a Huffman table must be a non-empty 1-D array of integer code lengths.")
    if lengths.min() < 0 or lengths.max() > MAX_LEN:
        raise error(f"a Huffman code length must be between 0 and {MAX_LEN}.")
    lengths = lengths.astype(np.int64)
    used = lengths[lengths > 0]
    if need_symbol and used.size == 0:
        raise error("the Huffman table gives no symbol a code.")
    if int(np.sum(np.int64(1) << (MAX_LEN - used))) > 1 << MAX_LEN:
        raise error("the Huffman code lengths are over-full: their Kraft sum exceeds 1.")
    return lengths


def _layout(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(order, span, top): used symbols sorted by (length, symbol), the 2^(top - length) slots
    each one's code covers among all `top`-bit strings (top = longest length), and top itself.

    Canonical codes are consecutive in that order, so the slots are consecutive too: a symbol's
    code is the sum of the spans before it, shifted right by (top - length).
    """
    used = np.flatnonzero(lengths)
    order = used[np.lexsort((used, lengths[used]))]
    top = int(lengths.max())
    return order, np.int64(1) << (top - lengths[order]), top




def encode(symbols: np.ndarray, lengths: np.ndarray) -> bytes:
    """Pack `symbols` with the canonical code of `lengths`, MSB first, last byte zero-padded."""
    symbols = np.ascontiguousarray(symbols)
    if symbols.ndim != 1 or (symbols.size and symbols.dtype.kind not in "iu"):
        raise ConfigError("symbols must be a 1-D array of integers.")
    lengths = _check_lengths(lengths, ValueError, need_symbol=symbols.size > 0)
    total = _kernels().total_bits(symbols, lengths)
    if total < 0:
        i = -total - 1
        raise ConfigError(f"symbol {symbols[i]} at index {i} has no Huffman code in a {len(lengths)}-symbol table.")
    codes = np.zeros(len(lengths), np.int64)
    if symbols.size:
        order, span, top = _layout(lengths)
        codes[order] = (np.cumsum(span) - span) >> (top - lengths[order])
    out = np.zeros((total + 7) // 8, np.uint8)
    _kernels().pack(symbols, codes, lengths, out)
    return out.tobytes()



def decode(data: bytes, lengths: np.ndarray, n: int) -> np.ndarray:
    """Decode `n` symbols coded with the canonical code of `lengths`, in the narrowest unsigned
    type the alphabet needs (dtypes.symbol_dtype).

    Trusts nothing: a bad table, `n` beyond what the bytes could hold, bits that run out, a bit
    pattern no code uses, or bytes left over all raise DzipFormatError.
    """
    lengths = _check_lengths(lengths, DzipFormatError, need_symbol=n > 0)
    if n < 0 or n > 8 * len(data):
        raise DzipFormatError(f"a Huffman stream of {len(data)} bytes cannot hold {n} symbols.")
    out = np.empty(n, symbol_dtype(len(lengths)))
    used = 0
    if n:
        order, span, top = _layout(lengths)
        # Entry = symbol << 4 | length; slots no code reaches stay 0, which reads as "length 0".
        table = np.zeros(1 << top, np.int32)
        filled = np.repeat((order << 4 | lengths[order]).astype(np.int32), span)
        table[:len(filled)] = filled
        padded = np.zeros(len(data) + _PAD, np.uint8)
        padded[:len(data)] = np.frombuffer(data, np.uint8)
        used = _kernels().unpack(padded, 8 * len(data), table, top, out)
        if used == -1:
            raise DzipFormatError(f"the Huffman stream ends before its {n} symbols do.")
        if used == -2:
            raise DzipFormatError("the Huffman stream holds a bit pattern that no code uses.")
    if (used + 7) // 8 != len(data):
        raise DzipFormatError(f"the Huffman stream has {len(data) - (used + 7) // 8} bytes after its last symbol.")
    return out
