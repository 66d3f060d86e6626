"""Streams back into tensors' contents: positions, codes, codebooks and values, per entry.

The decoder trusts nothing the file says: every header field is checked before it is used, and
the total number of elements a file may make it allocate is bounded by the file's size
(spec.MAX_ELEMENTS_PER_BYTE), so a hostile file raises DzipFormatError instead of exhausting
memory. It decodes and does not decide: what becomes of a tensor (a dense weight, a sparse
layer, a kernel that reads the codes) is assemble.py's business and the runtime's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..checks import is_uint
from ..encode import context
from ..encode.floats import HIGH_ALPHABET, join_float32
from ..encode.streams import MAX_ALPHABET, decode_stream
from ..errors import DzipFormatError
from .container import DzipReader, read_leb128, unpack_ints
from .spec import (
    DTYPES,
    ENCODINGS,
    LEAN_VERSION,
    LEFT_VERSION,
    MAX_DIM,
    MAX_DIMS,
    MAX_ELEMENTS_PER_BYTE,
    MAX_INDEX_BITS,
    POSITIONS,
    SCALES_VERSION,
    STORED_FLOATS,
    grid_shape,
)

Live = tuple[np.ndarray, np.ndarray]  # indices of the live rows, of the live columns


@dataclass(frozen=True)
class TensorInfo:
    """What a tensor entry says of itself, validated: enough to decide what to do with it.

    name: qualified name; shape, numel; dtype: the torch dtype it loads as; encoding: "raw",
    "shared" or "sparse"; layer: class name of a compressible owner ("Linear"), else None;
    nonzero: the count of non-zero elements for shared and sparse entries, else None.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    dtype: torch.dtype
    encoding: str
    layer: str | None
    nonzero: int | None


@dataclass
class Decoded:
    """One tensor's content as stored, before any module is involved.

    raw:       "raw" entries: the flat tensor.
    codebook:  "shared" entries: float32 (K + 1,), entry 0 is the zero that code 0 means.
    codes:     "shared": int32 codes, one per weight (`positions` None) or one per non-zero.
    values:    "sparse": float32 values at `positions`.
    positions: int64 sorted flat positions of the non-zeros, for codes stored per non-zero and
               for sparse values; None where codes cover every weight.
    scales:    "shared" entries with a scale per row (version 5): float32 (shape[0],), or None.
    """

    info: TensorInfo
    raw: torch.Tensor | None = None
    codebook: np.ndarray | None = None
    codes: np.ndarray | None = None
    values: np.ndarray | None = None
    positions: np.ndarray | None = None
    scales: np.ndarray | None = None

    def dense(self) -> torch.Tensor:
        """The whole tensor, in its shape and dtype."""
        shape = self.info.shape
        if self.raw is not None:
            return self.raw.reshape(shape)
        if self.codebook is not None and self.positions is None:
            flat = _lookup(self.codebook, self.codes)
            if self.scales is not None and flat.size:  # row by row, in float32: what every reader computes
                flat.reshape(len(self.scales), -1)[...] *= self.scales[:, None]
            return torch.from_numpy(flat).reshape(shape)
        out = np.zeros(self.info.numel, np.float32)
        out[self.positions] = self._values() if self.codebook is not None else self.values
        return torch.from_numpy(out).reshape(shape)

    def _values(self) -> np.ndarray:
        """The float32 values of the codes at `positions` (each scaled by its row's scale)."""
        values = _lookup(self.codebook, self.codes)
        if self.scales is not None:
            values *= self.scales[self.positions // max(1, math.prod(self.info.shape[1:]))]
        return values

    def nonzeros(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(positions, codes, codebook) of a shared tensor's non-zeros, or (positions, values,
        None) of a sparse one's — and of a shared one with scaled rows, whose values are not one
        codebook's — without building the dense tensor."""
        if self.scales is not None:
            if self.positions is None:
                self.positions = np.flatnonzero(self.codes)
                self.codes = self.codes[self.positions]
            keep = self.codes != 0
            self.positions, self.codes = self.positions[keep], self.codes[keep]
            return self.positions, self._values(), None
        if self.codebook is None:
            return self.positions, self.values, None
        positions, codes, codebook, _ = self.coded()
        if positions is None:
            positions = np.flatnonzero(codes)
            codes = codes[positions]
        return positions, codes, codebook

    def coded(self) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray | None]:
        """(positions, codes, codebook, scales) of a shared tensor as stored, for a runtime that
        computes from the codes: positions None where a code covers every weight, else the
        non-zeros' positions and codes (filler entries dropped); scales None unless rows are scaled."""
        if self.positions is None:
            return None, self.codes, self.codebook, self.scales
        keep = self.codes != 0  # filler entries carry code 0
        return self.positions[keep], self.codes[keep], self.codebook, self.scales


def _lookup(table: np.ndarray, codes: np.ndarray, chunk: int = 1 << 22) -> np.ndarray:
    """table[codes] a chunk at a time: numpy widens an index array to int64 whole, which for a
    100 M-weight layer's uint8 codes would be an 800 MB temporary."""
    out = np.empty(codes.shape, table.dtype)
    for start in range(0, codes.size, chunk):
        out[start:start + chunk] = table[codes[start:start + chunk]]
    return out


class TensorDecoder:
    """Decodes the tensor entries of one open file; counts what they allocate against the bound.

    Examples:
        >>> with DzipReader("model.dzip") as r:
        ...     dec = TensorDecoder(r)
        ...     weight = dec.decode(r.header["tensors"][0], 0).dense()
    """

    def __init__(self, reader: DzipReader) -> None:
        self.r = reader
        self.budget = MAX_ELEMENTS_PER_BYTE * reader.size + (1 << 16)

    def fail(self, message: str) -> None:
        raise DzipFormatError(f"{self.r.path.name} is corrupt: {message}.")

    def need(self, cond: bool, message: str) -> None:
        if not cond:
            self.fail(message)

    def spend(self, elements: int, what: str) -> None:
        self.budget -= elements
        self.need(self.budget >= 0, f"{what} claims more elements than a file of {self.r.size} bytes can hold")

    def raw_stream(self, index: Any, what: str) -> bytes:
        self.need(self.r.stream(index).get("coder") == "raw", f"{what} should be a raw stream")
        return self.r.read(index)

    def coded(self, index: Any, alphabet: int, what: str) -> np.ndarray:
        s = self.r.stream(index)
        self.need(s.get("coder") in ("huffman", "ans"), f"{what} has unknown coder {s.get('coder')!r}")
        self.need(s.get("alphabet") == alphabet, f"{what} has alphabet {s.get('alphabet')!r}, expected {alphabet}")
        self.need(is_uint(s.get("count")), f"{what} has no valid symbol count")
        self.spend(s["count"], what)
        data = self.r.read(index)
        where = f"{self.r.path.name}: the code table of {what}"
        if self.r.version >= LEAN_VERSION:  # the table leads the stream
            table, used = read_leb128(data, alphabet, where)
            data = data[used:]
        else:
            table = unpack_ints(s.get("table"), MAX_ALPHABET, where)
        return decode_stream(data, {**s, "table": table})

    def context_coded(self, index: Any, grid: tuple[int, int], alphabet: int, what: str) -> np.ndarray:
        """A context-coded matrix of codes (encode/context.py); its size was spent with its tensor's."""
        s = self.r.stream(index)
        self.need(self.r.version >= LEAN_VERSION, f"{what} is context coded, which a version {self.r.version} file cannot be")
        # The models are named by the coder, not by a flag beside it: a header that says "context"
        # for a "context-left" stream names another coder, as "ans" for a Huffman stream would.
        coder = s.get("coder")
        self.need(coder in ("context", "context-left"), f"{what} has coder {coder!r} where its positions say context")
        self.need(coder == "context" or self.r.version >= LEFT_VERSION,
                  f"{what} has coder 'context-left', which a version {self.r.version} file cannot")
        try:
            return context.decode(self.r.read(index), grid[0], grid[1], alphabet, coder == "context-left")
        except DzipFormatError as e:
            self.fail(f"{what}: {str(e).rstrip('.')}")

    def info(self, entry: Any, index: int) -> TensorInfo:
        """The validated description of entry `index` (no stream is read; no budget spent)."""
        self.need(isinstance(entry, dict) and isinstance(entry.get("name"), str), f"tensor entry {index} has no name")
        name = entry["name"]
        shape = entry.get("shape")
        self.need(isinstance(shape, list) and len(shape) <= MAX_DIMS and all(is_uint(d, MAX_DIM) for d in shape),
                  f"tensor {name!r} has an invalid shape {shape!r}")
        self.need(entry.get("dtype") in DTYPES, f"tensor {name!r} has unknown dtype {entry.get('dtype')!r}")
        encoding = entry.get("encoding")
        self.need(encoding in ENCODINGS, f"tensor {name!r} has unknown encoding {encoding!r}")
        layer = entry.get("layer")
        nonzero = entry.get("nonzero") if encoding != "raw" else None
        self.need(nonzero is None or is_uint(nonzero, 1 << 62), f"tensor {name!r} has an invalid nonzero count")
        return TensorInfo(name, tuple(shape), math.prod(shape), DTYPES[entry["dtype"]], encoding,
                          layer if isinstance(layer, str) else None, nonzero)

    def decode(self, entry: Any, index: int) -> Decoded:
        """Entry `index`'s content: raw elements, or positions, codes and codebook, or values."""
        info = self.info(entry, index)
        self.spend(info.numel, f"tensor {info.name!r}")
        if info.encoding == "raw":
            return Decoded(info, raw=self._raw(entry, info))
        self.need(info.dtype == torch.float32, f"{info.encoding} tensor {info.name!r} must be float32")
        live = self.live(entry, info)
        size = info.numel if live is None else live[0].size * live[1].size
        if info.encoding == "shared":
            decoded = self._shared(entry, info, live, size)
            decoded.scales = self.scales(entry, info)
            return decoded
        gaps, values = self.entries(entry, info.name, None)
        positions = self._gap_positions(gaps, size, info.name)
        keep = values != 0  # fillers
        return Decoded(info, values=values[keep], positions=self._full_positions(positions[keep], live, info.shape))

    def _shared(self, entry: dict, info: TensorInfo, live: Live | None, size: int) -> Decoded:
        """Codebook and codes (and their positions) of a shared entry."""
        codebook = self.codebook(entry, info.name)
        kind = self.positions_kind(entry, info.name)
        if kind in ("dense", "context"):
            what = f"the codes of {info.name!r}"
            if kind == "dense":
                codes = self.coded(entry.get("values"), codebook.size, what)
            else:
                grid = (live[0].size, live[1].size) if live is not None else grid_shape(info.shape)
                codes = self.context_coded(entry.get("values"), grid, codebook.size, what).reshape(-1)
            self.need(codes.size == size, f"tensor {info.name!r} has {codes.size} codes for {size} weights")
            if live is None:
                return Decoded(info, codebook=codebook, codes=codes)
            positions = np.flatnonzero(codes)
            return Decoded(info, codebook=codebook, codes=codes[positions],
                           positions=self._full_positions(positions, live, info.shape))
        gaps, codes = self.entries(entry, info.name, codebook.size)
        return Decoded(info, codebook=codebook, codes=codes,
                       positions=self._full_positions(self._gap_positions(gaps, size, info.name), live, info.shape))

    def scales(self, entry: dict, info: TensorInfo) -> np.ndarray | None:
        """A shared entry's scale per row (version 5), float16 or float32 by the stream's
        length, or None."""
        if "scales" not in entry:
            return None
        name = info.name
        self.need(self.r.version >= SCALES_VERSION, f"tensor {name!r} has scaled rows, which a version "
                  f"{self.r.version} file cannot have")
        self.need(len(info.shape) >= 1, f"tensor {name!r} has scaled rows but no rows")
        data = self.raw_stream(entry.get("scales"), f"the scales of {name!r}")
        rows = info.shape[0]
        self.need(len(data) in (2 * rows, 4 * rows), f"the scales of {name!r} are {len(data)} bytes, not "
                  f"{rows} float16 or float32 values")
        return np.frombuffer(data, "<f2" if len(data) == 2 * rows else "<f4").astype(np.float32)

    def _raw(self, entry: dict, info: TensorInfo) -> torch.Tensor:
        if "split" in entry:
            return self._split(entry, info)
        data = self.raw_stream(entry.get("data"), f"tensor {info.name!r}")
        stored = entry.get("stored", entry["dtype"])
        self.need(stored == entry["dtype"] or (stored == "float16" and info.dtype == torch.float32),
                  f"tensor {info.name!r} cannot be stored as {stored!r}")
        itemsize = torch.empty(0, dtype=DTYPES[stored]).element_size()
        self.need(len(data) == info.numel * itemsize, f"tensor {info.name!r} has {len(data)} bytes for {info.numel} elements")
        if info.numel == 0:
            return torch.empty(0, dtype=info.dtype)
        return torch.frombuffer(bytearray(data), dtype=DTYPES[stored]).to(info.dtype)

    def _split(self, entry: dict, info: TensorInfo) -> torch.Tensor:
        """A float32 tensor stored as context-coded signs and exponents plus packed mantissas."""
        name = info.name
        self.need(entry["split"] == "float32" and info.dtype == torch.float32 and "stored" not in entry,
                  f"tensor {name!r} cannot be split as {entry['split']!r}")
        high = self.context_coded(entry.get("high"), (info.numel, 1), HIGH_ALPHABET,
                                  f"the signs and exponents of {name!r}")
        low = self.raw_stream(entry.get("low"), f"the mantissas of {name!r}")
        try:
            values = join_float32(high, low, info.numel)
        except DzipFormatError as e:
            self.fail(f"tensor {name!r}: {str(e).rstrip('.')}")
        return torch.from_numpy(values.copy())

    def index_bits(self, entry: dict, name: str) -> int:
        bits = entry.get("index_bits")
        self.need(is_uint(bits) and 1 <= bits <= MAX_INDEX_BITS, f"tensor {name!r} has invalid index_bits {bits!r}")
        return bits

    def stored(self, entry: dict, name: str, what: str) -> str:
        stored = entry.get("stored", "float32")
        self.need(stored in STORED_FLOATS, f"{what} of {name!r} cannot be stored as {stored!r}")
        return stored

    def codebook(self, entry: dict, name: str) -> np.ndarray:
        """[0, c_1, …, c_K] as float32."""
        data = self.raw_stream(entry.get("codebook"), f"the codebook of {name!r}")
        stored = self.stored(entry, name, "the codebook")
        size = 4 if stored == "float32" else 2
        self.need(len(data) < size * MAX_ALPHABET and len(data) % size == 0,
                  f"the codebook of {name!r} is {len(data)} bytes, not a whole number of {stored} values")
        values = np.frombuffer(data, "<f4" if size == 4 else "<f2").astype(np.float32)
        return np.concatenate([np.zeros(1, np.float32), values])

    def entries(self, entry: dict, name: str, alphabet: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(gaps, values) of a relative-index tensor: codes of a shared one (alphabet given), float32
        values of a sparse one (alphabet None)."""
        bits = self.index_bits(entry, name)
        gaps = self.coded(entry.get("gaps"), 2**bits, f"the gaps of {name!r}")
        if alphabet is not None:
            values = self.coded(entry.get("values"), alphabet, f"the codes of {name!r}")
        else:
            data = self.raw_stream(entry.get("values"), f"the values of {name!r}")
            kind = "<f4" if self.stored(entry, name, "tensor") == "float32" else "<f2"
            size = np.dtype(kind).itemsize
            self.need(len(data) == size * gaps.size,
                      f"tensor {name!r} has {len(data)} value bytes for {gaps.size} entries")
            values = np.frombuffer(data, kind).astype(np.float32)
        self.need(gaps.size == values.size, f"tensor {name!r} has {gaps.size} gaps for {values.size} values")
        return gaps, values

    def _gap_positions(self, gaps: np.ndarray, size: int, name: str) -> np.ndarray:
        """Sorted positions of the entries (fillers included) within `size` elements."""
        if gaps.size == 0:
            return np.zeros(0, np.int64)
        # from_gaps' checks, without the dense array: each gap below size keeps the sum in int64.
        self.need(gaps.min() >= 0 and gaps.max() < max(size, 1), f"the gaps of {name!r} do not fit its {size} elements")
        positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
        self.need(positions[-1] < size, f"the gaps of {name!r} run past its {size} elements")
        return positions

    def live(self, entry: dict, info: TensorInfo) -> Live | None:
        """(indices of the live rows, of the live columns) when the tensor is stored as its live
        submatrix (bitmaps `rows` and `cols`), else None."""
        if "rows" not in entry and "cols" not in entry:
            return None
        name, shape = info.name, info.shape
        self.need(len(shape) >= 2, f"tensor {name!r} has live bitmaps but {len(shape)} dimensions")
        out = []
        for key, size in (("rows", shape[0]), ("cols", math.prod(shape[1:]))):
            data = self.raw_stream(entry.get(key), f"the live {key} of {name!r}")
            self.need(len(data) == -(-size // 8), f"the live {key} bitmap of {name!r} is {len(data)} bytes, "
                                                 f"not {-(-size // 8)}")
            bits = np.unpackbits(np.frombuffer(data, np.uint8))
            self.need(not bits[size:].any(), f"the live {key} bitmap of {name!r} has bits set past its end")
            out.append(np.flatnonzero(bits[:size]))
        return out[0], out[1]

    def positions_kind(self, entry: dict, name: str) -> str:
        positions = entry.get("positions")
        self.need(positions in POSITIONS, f"tensor {name!r} has unknown positions {positions!r}")
        return positions

    @staticmethod
    def _full_positions(positions: np.ndarray, live: Live | None, shape: tuple[int, ...]) -> np.ndarray:
        """Positions within a live submatrix (row-major) mapped to positions within the whole tensor."""
        if live is None:
            return positions
        row, col = np.divmod(positions, max(live[1].size, 1))
        return live[0][row].astype(np.int64) * (math.prod(shape) // max(shape[0], 1)) + live[1][col]
