"""float32 values split for lossless coding: sign and exponent, which cluster, apart from the
mantissa, which does not.

A trained layer's biases sit within a few powers of two of each other, so their 9 high bits
(sign and exponent) take 3–5 bits when coded adaptively; the 23 mantissa bits are close to
uniform and are packed as they are. On the demo's biases that is 26–27 bits a value instead of 32.
"""
from __future__ import annotations

import numpy as np

from ..errors import DzipFormatError

MANTISSA_BITS = 23
HIGH_ALPHABET = (1 << 9) + 1  # codes 1 … 512: the context coder reserves 0 for "nothing here"
_CHUNK = 1 << 18  # a multiple of 8 values: 8 × 23 bits are whole bytes, so chunks pack end to end


def split_float32(values: np.ndarray) -> tuple[np.ndarray, bytes]:
    """(high, mantissas) of float32 `values`: high = (sign, exponent) + 1 as uint16 codes 1 … 512,
    mantissas = 23 bits a value, most significant first, packed and zero-padded to a byte.

    Examples:
        >>> high, low = split_float32(np.array([1.0, -2.0], np.float32))
        >>> high.tolist(), len(low)
        ([128, 385], 6)
    """
    bits = np.ascontiguousarray(values, np.float32).reshape(-1).view(np.uint32)
    high = (bits >> MANTISSA_BITS).astype(np.uint16) + 1
    shifts = np.arange(MANTISSA_BITS - 1, -1, -1, dtype=np.uint32)
    packed = [np.packbits(((bits[i:i + _CHUNK, None] >> shifts) & 1).astype(np.uint8)).tobytes()
              for i in range(0, bits.size, _CHUNK)]
    return high, b"".join(packed)


def join_float32(high: np.ndarray, mantissas: bytes, n: int) -> np.ndarray:
    """Inverse of split_float32 for `n` values; a mantissa stream of the wrong length or with
    bits set in its padding, or a high code outside 1 … 512, raises DzipFormatError.

    Examples:
        >>> join_float32(*split_float32(np.array([0.5, 3.0], np.float32)), 2).tolist()
        [0.5, 3.0]
    """
    high = np.asarray(high).reshape(-1)
    if high.size != n:
        raise DzipFormatError(f"a split float tensor has {high.size} sign-and-exponent codes for {n} values.")
    if n and (high.min() < 1 or high.max() >= HIGH_ALPHABET):
        raise DzipFormatError("a split float tensor has a sign-and-exponent code outside 1 … 512.")
    if len(mantissas) != -(-n * MANTISSA_BITS // 8):
        raise DzipFormatError(f"a split float tensor has {len(mantissas)} mantissa bytes for {n} values.")
    raw = np.frombuffer(mantissas, np.uint8)
    if n * MANTISSA_BITS % 8 and raw[-1] & ((1 << (8 - n * MANTISSA_BITS % 8)) - 1):
        raise DzipFormatError("a split float tensor has bits set in the padding of its mantissas.")
    out = np.empty(n, np.uint32)
    weights = (1 << np.arange(MANTISSA_BITS - 1, -1, -1, dtype=np.uint32)).astype(np.uint32)
    per_chunk = _CHUNK * MANTISSA_BITS // 8
    for c, start in enumerate(range(0, n, _CHUNK)):
        count = min(_CHUNK, n - start)
        bits = np.unpackbits(raw[c * per_chunk:c * per_chunk + -(-count * MANTISSA_BITS // 8)])
        bits = bits[:count * MANTISSA_BITS].reshape(count, MANTISSA_BITS).astype(np.uint32)
        out[start:start + count] = (bits * weights).sum(axis=1, dtype=np.uint32)
    out |= (high.astype(np.uint32) - 1) << MANTISSA_BITS
    return out.view(np.float32)
