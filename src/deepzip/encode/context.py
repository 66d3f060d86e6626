"""Context-adaptive coding of a shared layer's code matrix: positions and codes in one stream.

The matrix (rows = output units, columns = inputs × kernel; 0 = a pruned weight, k ≥ 1 = the
k-th centroid) is scanned row by row. For each weight a *significance* bit (kept or not) is coded
with an adaptive binary model chosen by its context; for each kept weight its code − 1 is coded
as `depth` binary decisions down a tree of adaptive models (an order-0 model of the codes that
learns as it goes). The coder is a binary range coder (LZMA's carry handling, 16-bit
probabilities), compiled with numba: no probability table is stored, and a small layer pays
only for what its models take to learn.

Contexts kept, measured on the demo, LeNet-5 and both best recipes (bench/codec.py): the density
so far of the weight's column over the rows above (17 buckets; inputs nobody uses stay cheap),
the density so far of its row (16 buckets), and whether its left neighbour is kept — together
2–10 % smaller than gap coding with a stored table. For the codes, optionally (`left_codes`, the
writer keeps it where it is smaller): the left neighbour's code, when kept, picks the models of
the first three decisions — on a first layer fed by pixels, neighbouring pixels' weights share
sign and size (the demo's fc1 codes 4.6 % smaller; no gain on layers whose inputs are unordered
hidden units). Tried and dropped for earning nothing: the run of zeros since the last kept
weight, the transposed scan, and for the codes the previous *kept* code in the row, the code
above, and the row's running magnitude.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DzipFormatError
from .dtypes import symbol_dtype

MAX_ALPHABET = 1 << 16


def _kernels():
    from . import context_kernels  # numba loads here, on first use, not at import

    return context_kernels


def _depth(alphabet: int) -> int:
    """Binary decisions per kept weight's code: enough for codes 1 … alphabet − 1."""
    return max(int(alphabet - 2).bit_length(), 0) if alphabet > 2 else 0


def encode(grid: np.ndarray, alphabet: int, left_codes: bool = False) -> bytes:
    """Code a 2-D matrix of codes 0 … alphabet − 1.

    Args:
        grid: (rows, columns) unsigned integers; 0 means a pruned weight.
        alphabet: one more than the largest code the reader must accept (K + 1 for K centroids).
        left_codes: code each kept weight's first decisions under models chosen by its left
            neighbour's code (pays where neighbouring inputs are pixels; a conv layer's kernel
            taps gained under 0.3 %; the decoder must be told the same).

    Examples:
        >>> data = encode(np.array([[0, 3], [1, 0]], np.uint8), 4)
        >>> decode(data, 2, 2, 4).tolist()
        [[0, 3], [1, 0]]
    """
    grid = np.ascontiguousarray(grid)
    if grid.ndim != 2 or (grid.size and grid.dtype.kind not in "iu"):
        raise ConfigError("the context coder takes a 2-D array of unsigned integer codes.")
    if not isinstance(alphabet, (int, np.integer)) or not 1 <= alphabet <= MAX_ALPHABET:
        raise ConfigError(f"alphabet must be an integer from 1 to {MAX_ALPHABET}, not {alphabet!r}.")
    if grid.size and (grid.min() < 0 or grid.max() >= alphabet):
        raise ConfigError(f"a code lies outside the alphabet 0..{alphabet - 1}.")
    if grid.size == 0:
        return b""
    kernels = _kernels()
    capacity = grid.size // 4 + 1024
    while True:  # no bin costs more than 10 bits, so this ends; most layers fit the first guess
        out = np.empty(capacity, np.uint8)
        written = kernels.encode_matrix(grid, _depth(alphabet), out, bool(left_codes))
        if written >= 0:
            return out[:written].tobytes()
        capacity *= 2


def decode(data: bytes, rows: int, cols: int, alphabet: int, left_codes: bool = False) -> np.ndarray:
    """The (rows, cols) matrix `encode` coded (with the same `left_codes`), in the narrowest
    unsigned type the alphabet needs.

    A code outside the alphabet, or bytes left over after the last weight, raise DzipFormatError
    (the encoder drops trailing zero bytes, so a stream may end before its decoder stops reading).
    The caller bounds rows × cols (a file's tensor shapes do).

    Examples:
        >>> decode(encode(np.eye(3, dtype=np.uint8), 2), 3, 3, 2).trace()
        3
    """
    out = np.empty((rows, cols), symbol_dtype(alphabet))
    if out.size == 0:
        if data:
            raise DzipFormatError(f"a context-coded stream of no weights has {len(data)} bytes.")
        return out
    left = _kernels().decode_matrix(np.frombuffer(data, np.uint8), rows, cols, _depth(alphabet), alphabet - 1, out,
                                         bool(left_codes))
    if left < 0:
        raise DzipFormatError(f"a context-coded stream decodes to a code outside its alphabet of {alphabet} "
                              f"at weight {-left - 1}.")
    if left > 0:
        raise DzipFormatError(f"a context-coded stream has {left} bytes left after its last weight.")
    return out
