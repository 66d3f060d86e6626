"""The paper's relative index (Deep Compression, Section 2 and its Figure 2).

A sparse vector is stored as (gap, value) entries, where gap counts the zeros skipped since the
previous entry. Gaps get a fixed width of `index_bits` bits so they can be entropy coded over a
small alphabet; a run of zeros longer than the width can say is bridged by *filler* entries:
gap = 2^index_bits - 1 and value 0, each one standing on a position that holds a zero.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, DzipFormatError
from ..limits import MAX_INDEX_BITS


def to_gaps(flat: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, values) of the nonzero entries of the 1-D array `flat`, fillers included.

    gaps has the smallest unsigned dtype that holds 2^index_bits - 1, values the dtype of `flat`.
    Zeros after the last nonzero entry are not stored: the reader knows the length.
    """
    flat = np.asarray(flat)
    if flat.ndim != 1:
        raise ConfigError(f"to_gaps takes a 1-D array, not one of shape {flat.shape}.")
    if not isinstance(index_bits, (int, np.integer)) or not 1 <= index_bits <= MAX_INDEX_BITS:
        raise ConfigError(f"index_bits must be an integer from 1 to {MAX_INDEX_BITS}, not {index_bits!r}.")
    width = 1 << int(index_bits)
    positions = np.flatnonzero(flat)
    skipped = np.diff(positions, prepend=-1) - 1
    # Each filler uses up `width` positions (width - 1 skipped zeros plus the zero it stands on),
    # so a gap g needs g // width of them before what is left fits in index_bits.
    fillers = skipped // width
    slot = np.cumsum(fillers + 1) - 1  # where each kept entry lands among all entries
    total = int(slot[-1]) + 1 if slot.size else 0
    gaps = np.full(total, width - 1, dtype=np.min_scalar_type(width - 1))
    gaps[slot] = skipped - fillers * width
    values = np.zeros(total, dtype=flat.dtype)
    values[slot] = flat[positions]
    return gaps, values


def from_gaps(gaps: np.ndarray, values: np.ndarray, numel: int) -> np.ndarray:
    """The dense 1-D array of `numel` elements (dtype of `values`) that to_gaps described.

    Raises DzipFormatError when the entries do not fit: a gap that is negative or not an integer,
    entries that run past `numel`, or gaps and values of different lengths.
    """
    gaps, values = np.asarray(gaps), np.asarray(values)
    if gaps.ndim != 1 or values.ndim != 1 or len(gaps) != len(values):
        raise DzipFormatError(f"a sparse tensor has {gaps.size} gaps but {values.size} values.")
    if not isinstance(numel, (int, np.integer)) or numel < 0:
        raise DzipFormatError(f"a sparse tensor cannot have {numel!r} elements.")
    out = np.zeros(int(numel), dtype=values.dtype)
    if not gaps.size:
        return out
    if gaps.dtype.kind not in "iu":
        raise DzipFormatError(f"the gaps of a sparse tensor are {gaps.dtype}, not integers.")
    # Bounding each gap by numel first keeps the int64 running sum below len(gaps) * numel.
    if gaps.min() < 0 or gaps.max() >= numel:
        raise DzipFormatError(f"a sparse tensor of {numel} elements has a gap that does not fit in it.")
    positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
    if positions[-1] >= numel:
        raise DzipFormatError(f"the entries of a sparse tensor run to position {positions[-1]}, "
                              f"past its {numel} elements.")
    out[positions] = values
    return out
