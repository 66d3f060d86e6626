"""The one entry point the container uses: a stream of small non-negative integers to bytes plus
a JSON-able description (coder, count, alphabet, table) and back.

The table is what the decoder needs besides the bytes: Huffman code lengths or ANS counts, one
per symbol of the alphabet.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..checks import is_uint
from ..errors import ConfigError, DzipFormatError
from . import ans, huffman

MAX_ALPHABET = 1 << 16


class _Coder(NamedTuple):
    table: Callable[[np.ndarray], np.ndarray]  # symbol counts -> the table stored beside the stream
    encode: Callable[[np.ndarray, np.ndarray], bytes]
    decode: Callable[[bytes, np.ndarray, int], np.ndarray]


_REGISTRY: dict[str, _Coder] = {
    "huffman": _Coder(huffman.code_lengths, huffman.encode, huffman.decode),
    "ans": _Coder(lambda counts: counts, ans.encode, ans.decode),
}
CODERS = tuple(_REGISTRY)


def table_bytes(table: np.ndarray) -> int:
    """What a table costs in the file: its entries as LEB128 varints, the way the container packs
    them (so a Huffman length is one byte, an ANS count one byte per 7 bits it needs)."""
    bit_length = np.frexp(np.asarray(table, np.float64))[1]
    return int(np.maximum(1, -(-bit_length // 7)).sum())


def encode_stream(symbols: np.ndarray, alphabet: int, coder: str) -> tuple[bytes, dict[str, Any]]:
    """Code `symbols` (each in range(alphabet)) with `coder`: "huffman", "ans" or "auto".

    "auto" codes with both and keeps the smaller of (stream bytes + table_bytes), Huffman on a
    tie since it decodes faster. Returns (bytes, {"coder", "count", "alphabet", "table"}).
    """
    if coder != "auto" and coder not in _REGISTRY:
        raise ConfigError(f"coder must be one of {', '.join(CODERS)} or auto, not {coder!r}.")
    if not isinstance(alphabet, (int, np.integer)) or not 1 <= alphabet <= MAX_ALPHABET:
        raise ConfigError(f"alphabet must be an integer from 1 to {MAX_ALPHABET}, not {alphabet!r}.")
    symbols = np.asarray(symbols)
    if symbols.ndim != 1 or (symbols.size and symbols.dtype.kind not in "iu"):
        raise ConfigError("symbols must be a 1-D array of integers.")
    if symbols.size and (symbols.min() < 0 or symbols.max() >= alphabet):
        raise ConfigError(f"a symbol lies outside the alphabet 0..{alphabet - 1}.")
    counts = _counts(symbols, alphabet)
    best = None
    for name in CODERS if coder == "auto" else (coder,):
        table = _REGISTRY[name].table(counts)
        data = _REGISTRY[name].encode(symbols, table)
        cost = len(data) + table_bytes(table)
        if best is None or cost < best[0]:
            best = (cost, name, data, table)
    _, name, data, table = best
    meta = {"coder": name, "count": int(symbols.size), "alphabet": int(alphabet),
            "table": [int(v) for v in table]}
    return data, meta


def _counts(symbols: np.ndarray, alphabet: int) -> np.ndarray:
    """Symbol histogram without widening the whole stream to intp: a 100 M-weight layer's uint8
    codes would otherwise cost 800 MB for the copy alone, so go a chunk at a time."""
    counts = np.zeros(alphabet, np.int64)
    for start in range(0, symbols.size, 1 << 22):
        counts += np.bincount(symbols[start:start + (1 << 22)].astype(np.intp), minlength=alphabet)
    return counts


def decode_stream(data: bytes, meta: dict[str, Any]) -> np.ndarray:
    """Decode a stream encode_stream wrote, given its meta (extra keys are ignored); the symbols
    come in the narrowest unsigned type the alphabet needs (dtypes.symbol_dtype).

    Every field of `meta` is checked before use and anything wrong raises DzipFormatError. For
    ANS the caller must bound meta["count"] (see ans.decode); Huffman bounds it by the data.
    """
    if not isinstance(meta, dict):
        raise DzipFormatError("a stream's description is not a JSON object.")
    coder = meta.get("coder")
    if not isinstance(coder, str) or coder not in _REGISTRY:
        raise DzipFormatError(f"a stream has unknown coder {coder!r}.")
    alphabet, count, table = meta.get("alphabet"), meta.get("count"), meta.get("table")
    if not is_uint(alphabet, MAX_ALPHABET + 1) or alphabet == 0:
        raise DzipFormatError(f"a stream has invalid alphabet size {alphabet!r}.")
    if not is_uint(count, 1 << 63):
        raise DzipFormatError(f"a stream has invalid symbol count {count!r}.")
    if not isinstance(table, list) or len(table) != alphabet or not all(is_uint(v, 1 << 63) for v in table):
        raise DzipFormatError(f"a stream's code table is not a list of {alphabet} non-negative integers.")
    return _REGISTRY[coder].decode(bytes(data), np.array(table, np.int64), count)
