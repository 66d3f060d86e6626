"""deepzip.save: a model's tensors to .dzip streams (decode.py and assemble.py read them back).

Each tensor is written in one of three encodings (docs/FORMAT.md):
  raw     the tensor's bytes (biases, batch-norm statistics, anything small or unpruned); float32
          ones with their signs and exponents context coded apart from the mantissas, where smaller
  shared  a float32 (float16 when exact) codebook + per-weight codes (0 = zero), positions
          either dense (one code per weight), sparse (the paper's relative gaps with filler
          zeros) or context (positions and codes in one context-adaptive stream, encode/context.py);
          whichever is smallest, over the whole tensor or only its live rows × columns
          (structured pruning)
  sparse  pruned but not shared: float32 values at kept positions + relative gaps
Code and gap streams are entropy coded (Huffman, ANS, or per stream whichever is smaller), each
with its code table in front of it.
"""
from __future__ import annotations

import os
import re
import warnings
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .._version import __version__
from ..checks import check_each, require_finite, whole
from ..encode import context
from ..encode.floats import HIGH_ALPHABET, split_float32
from ..encode.sparse import to_gaps
from ..encode.streams import encode_stream
from ..errors import ConfigError, DeepzipWarning
from ..models import arch_of
from ..models.widths import widths_of
from ..reparam import slots
from ..selection import kind_of, lookup
from .container import DzipWriter, leb128
from .spec import (
    AUTO_WIDTHS,
    CODERS,
    DTYPES,
    FILE_NAME,
    FILES_VERSION,
    LEAN_VERSION,
    LEFT_VERSION,
    MAX_DIMS,
    MAX_FILES,
    MAX_INDEX_BITS,
    PAPER_INDEX_BITS,
    SCALES_VERSION,
    grid_shape,
)


@dataclass
class _Tensor:
    """One logical tensor to store: a plain one, or a shared layer's codebook and codes."""
    name: str
    role: str            # "param" or "buffer"
    kind: str | None     # layer kind of the owning module, for per-kind index widths
    layer: str | None    # class name of a compressible owner ("Linear", "Conv2d", …): the runtime's rule uses it
    value: torch.Tensor | None = None
    centroids: torch.Tensor | None = None
    assign: torch.Tensor | None = None
    scales: torch.Tensor | None = None
    masked: bool = False


def _logical_tensors(model: nn.Module) -> Iterator[_Tensor | tuple[str, str]]:
    """Yield each tensor once, or (name, first name) for one tied to a tensor seen before."""
    seen: dict[int, str] = {}
    for slot in slots(model):
        if slot.identity in seen:
            yield slot.name, seen[slot.identity]
            continue
        seen[slot.identity] = slot.name
        kind = kind_of(slot.module)
        layer = type(slot.module).__name__.removeprefix("Parametrized") if kind else None
        if slot.shared is not None:
            yield _Tensor(slot.name, "param", kind, layer, centroids=slot.shared.centroids.detach(),
                          assign=slot.shared.assign, scales=slot.shared.scales)
        else:
            yield _Tensor(slot.name, slot.role, kind, layer, value=slot.value.detach(), masked=slot.mask is not None)


# What a stream's entry adds to the deflated header, measured on the demo's files: a coded
# stream's count and alphabet are numbers deflate cannot share, a context stream has neither.
_HEADER_BYTES = {"context": 5, "context-left": 10, "huffman": 14, "ans": 14}
_LIVE_BYTES = 8  # the live layout's two raw streams and its "rows"/"cols" keys in the header


_LEFT_SAMPLE = 1 << 20  # weights of a large layer's first rows on which left contexts are tried first


def _left_may_pay(grid: np.ndarray, alphabet: int) -> bool:
    """Whether to code a layer with left contexts too: on a layer of more than a million weights,
    only if they pay on its first rows, so that a layer where they cannot (codes with no order
    among neighbours) is context coded once, not twice (a VGG-16-sized save: 6 s, not 11.5)."""
    if grid.size <= _LEFT_SAMPLE:
        return True
    head = grid[:max(1, _LEFT_SAMPLE // grid.shape[1])]
    return len(context.encode(head, alphabet, True)) < len(context.encode(head, alphabet))


def _live_cost(live: dict[str, bytes]) -> int:
    """Bytes the live layout's bitmaps add to the file, header entries included (0 without it)."""
    return sum(len(b) for b in live.values()) + (_LIVE_BYTES if live else 0)


def _cost(parts: list[tuple[bytes, dict[str, Any]]]) -> int:
    """Bytes a choice of streams adds to the file: the streams (their tables lead them) and an
    estimate of their entries in the header, so that ties between layouts go the right way."""
    return sum(len(data) + _HEADER_BYTES.get(meta["coder"], 0) for data, meta in parts)


def _raw_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


class _Encoder:
    def __init__(self, writer: DzipWriter, coder: str, index_bits: Any) -> None:
        self.w, self.coder, self.index_bits = writer, coder, index_bits

    def coded(self, symbols: np.ndarray, alphabet: int) -> tuple[bytes, dict[str, Any]]:
        """A Huffman or ANS stream: its table as LEB128 varints, then the coded symbols."""
        data, meta = encode_stream(symbols, alphabet, "ans" if self.coder == "context" else self.coder)
        return leb128(meta.pop("table")) + data, meta

    def add(self, pair: tuple[bytes, dict[str, Any]]) -> int:
        return self.w.add(*pair)

    def raw(self, data: bytes) -> int:
        return self.w.add(data, {"coder": "raw"})

    def widths(self, t: _Tensor) -> range:
        """Index widths to try: the configured one, or with "auto" every width from 2 to 10 bits."""
        bits = lookup(self.index_bits, t.name, t.name.rpartition(".")[0], t.kind) or 8
        return AUTO_WIDTHS if bits == "auto" else range(bits, bits + 1)

    def positions(self, flat: np.ndarray, t: _Tensor, alphabet: int | None,
                  value_bytes: int = 4) -> tuple[int, Any, Any]:
        """(width, coded gaps, values) of the smallest relative-index encoding among the widths
        tried. A narrow index needs filler entries where gaps are long, a wide one spends bits on
        every gap: where the balance lies depends on the layer's density, so it is measured.
        Values are coded symbols when `alphabet` is given, else raw floats of `value_bytes` each."""
        best = None
        for bits in self.widths(t):
            gaps, vals = to_gaps(flat, bits)
            g = self.coded(gaps, 2**bits)
            v = self.coded(vals, alphabet) if alphabet else vals
            cost = _cost([g]) + (_cost([v]) if alphabet else value_bytes * len(vals))
            if best is None or cost < best[0]:
                best = (cost, bits, g, v)
        return best[1:]

    def entry(self, t: _Tensor) -> dict[str, Any]:
        if t.centroids is not None:
            return self.shared(t)
        value = t.value
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype not in DTYPES or value.dim() > MAX_DIMS:
            raise ConfigError(f"cannot store {t.name!r}: {dtype} tensors of {value.dim()} dimensions are outside "
                              f"the format (dtypes {', '.join(DTYPES)}; at most {MAX_DIMS} dimensions).")
        base = {"name": t.name, "role": t.role, "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
        if t.layer:
            base["layer"] = t.layer
        # Sparse storage writes zeros as +0.0: fine where a mask made them (pruned is pruned), but an
        # unmasked tensor holding -0.0 keeps its exact bits elsewhere.
        zeros = value == 0
        if value.dtype == torch.float32 and value.numel() >= 256 and (
                t.masked or (zeros.float().mean() > 0.5 and not torch.signbit(value[zeros]).any())):
            array = value.detach().cpu().float().numpy()
            nonzero = int(np.count_nonzero(array))
            half = bool(np.array_equal(array.astype(np.float16).astype(np.float32), array))
            best = None
            for live, grid in _live_choices(array):
                bits, g, vals = self.positions(grid.reshape(-1), t, None, 2 if half else 4)
                stored = vals.astype("<f2" if half else "<f4").tobytes()
                cost = _cost([g]) + len(stored) + _live_cost(live)
                if best is None or cost < best[0]:
                    best = (cost, live, bits, g, stored)
            cost, live, bits, g, stored = best
            if cost < (2 if half else 4) * array.size:
                return {**base, "encoding": "sparse", "index_bits": bits, "nonzero": nonzero,
                        **({"stored": "float16"} if half else {}),
                        **{key: self.raw(bitmap) for key, bitmap in live.items()},
                        "values": self.raw(stored), "gaps": self.add(g)}
        if value.dtype == torch.float32 and value.numel() and torch.equal(value.half().float(), value):
            # Exactly representable in half precision (biases after deepzip.round_, say): half the
            # bytes, and still bit-exact on load.
            return {**base, "encoding": "raw", "stored": "float16", "data": self.raw(_raw_bytes(value.half()))}
        if value.dtype == torch.float32 and value.numel() >= 8 and self.coder in ("auto", "context"):
            # Sign and exponent coded apart from the mantissa (encode/floats.py), where that is smaller.
            high, low = split_float32(value.detach().cpu().numpy())
            coded = context.encode(high.reshape(-1, 1), HIGH_ALPHABET)
            if len(coded) + len(low) + 12 < 4 * value.numel():  # 12: its two streams and keys in the header
                return {**base, "encoding": "raw", "split": "float32", "high": self.add((coded, {"coder": "context"})),
                        "low": self.raw(low)}
        return {**base, "encoding": "raw", "data": self.raw(_raw_bytes(value))}

    def shared(self, t: _Tensor) -> dict[str, Any]:
        codes = t.assign.cpu().numpy()  # uint8 or int16: kept narrow, layers can be 100 M weights
        k = t.centroids.numel()
        centroids = t.centroids.cpu().float().numpy()
        # A codebook of float16 values (deepzip.round_ on the centroids) is stored in half the bytes.
        half = bool(np.array_equal(centroids.astype(np.float16).astype(np.float32), centroids))
        entry = {"name": t.name, "role": "param", "shape": list(t.assign.shape), "dtype": "float32",
                 "encoding": "shared", "kind": t.kind, "layer": t.layer, "nonzero": int(np.count_nonzero(codes)),
                 **({"stored": "float16"} if half else {}),
                 "codebook": self.raw(centroids.astype("<f2" if half else "<f4").tobytes())}
        if t.scales is not None:  # a scale per row: float16 when exact (its length tells the reader which)
            scales = t.scales.cpu().float().numpy()
            exact = np.array_equal(scales.astype(np.float16).astype(np.float32), scales)
            entry["scales"] = self.raw(scales.astype("<f2" if exact else "<f4").tobytes())
        best = None
        for live, grid in _live_choices(codes):
            extra = _live_cost(live)
            choices = []
            if self.coder in ("auto", "context"):
                # With and without left contexts: they pay on some layers and cost a few bytes of
                # learning on others; the first of equals (without, readable by version 3) wins.
                for left in (False, True) if _left_may_pay(grid, k + 1) else (False,):
                    coded = (context.encode(grid, k + 1, left), {"coder": "context-left" if left else "context"})
                    choices.append((_cost([coded]) + extra, live, {"positions": "context", "values": coded}))
            if self.coder != "context":
                flat = grid.reshape(-1)
                dense = self.coded(flat, k + 1)
                bits, *sparse = self.positions(flat, t, k + 1)
                choices.append((_cost([dense]) + extra, live, {"positions": "dense", "values": dense}))
                choices.append((_cost(sparse) + extra, live, {"positions": "sparse", "index_bits": bits,
                                                              "gaps": sparse[0], "values": sparse[1]}))
            for choice in choices:  # the first of equals wins: context, then dense, then sparse
                if best is None or choice[0] < best[0]:
                    best = choice
        _, live, fields = best
        return {**entry, **{key: self.raw(bitmap) for key, bitmap in live.items()},
                **{key: self.add(v) if isinstance(v, tuple) else v for key, v in fields.items()}}


def _live_choices(array: np.ndarray) -> Iterator[tuple[dict[str, bytes], np.ndarray]]:
    """The ways to lay out a tensor's codes for coding, each as a 2-D grid: all of it; and, when
    whole rows (dim 0: output units) or columns (the rest: inputs × kernel) are zero, only the
    live submatrix, with a bitmap of the live rows and one of the live columns (docs/FORMAT.md).
    Structured pruning leaves such rows and columns; coding around them saves the filler
    entries and the long gaps that crossing them costs."""
    grid = array.reshape(grid_shape(array.shape))
    yield {}, grid
    if array.ndim < 2 or array.size == 0:
        return
    nonzero = grid != 0
    rows, cols = nonzero.any(axis=1), nonzero.any(axis=0)
    if rows.all() and cols.all():
        return
    live = {"rows": np.packbits(rows).tobytes(), "cols": np.packbits(cols).tobytes()}
    yield live, grid[np.ix_(rows, cols)]


def _version(tensors: list[dict[str, Any]], streams: list[dict[str, Any]]) -> int:
    """The oldest version that holds these entries, so that older readers read every file that
    does not need a newer one (docs/FORMAT.md, Versions)."""
    if any("scales" in t for t in tensors):
        return SCALES_VERSION
    return LEFT_VERSION if any(s["coder"] == "context-left" for s in streams) else LEAN_VERSION


def _checked_files(files: Mapping[str, bytes] | None) -> dict[str, bytes]:
    """Files to carry: names every reader accepts (spec.FILE_NAME), bytes, at most MAX_FILES."""
    files = dict(files or {})
    if len(files) > MAX_FILES:
        raise ConfigError(f"a .dzip carries at most {MAX_FILES} files, not {len(files)}.")
    for name, data in files.items():
        if not isinstance(name, str) or not re.fullmatch(FILE_NAME, name):
            raise ConfigError(f"a carried file's name must be one or two path segments of letters, digits, '_', '-' "
                              f"and '.' (not first), not {name!r}.")
        if not isinstance(data, (bytes, bytearray)):
            raise ConfigError(f"carried file {name!r} must be bytes, not {type(data).__name__}.")
    return {k: bytes(v) for k, v in files.items()}


def check_index_bits(setting: Any) -> None:
    """The relative index's width: a whole number from 1 to 16, or "auto" (per layer, the
    smallest), one value or per layer. `save` and the recipe's index_bits both ask this.

    Examples:
        >>> check_index_bits({"fc1": "auto", "default": 8})
    """
    check_each(setting, "index_bits", f"a whole number from 1 to {MAX_INDEX_BITS} or 'auto'",
               lambda w: w == "auto" or whole(1, MAX_INDEX_BITS)(w))


def save(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    coder: str = "auto",
    index_bits: int | Mapping[str, int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    arch: Mapping[str, Any] | None = None,
    progress: bool = False,
    files: Mapping[str, bytes] | None = None,
) -> dict[str, Any]:
    """Write `model` to `path` as a .dzip; returns the header that was written (with "file_bytes").

    Args:
        model: any nn.Module; masked and shared weights are stored compressed, the rest raw.
        path: the file to write (atomically: a kill leaves the old file or none).
        coder: "huffman" (the paper), "ans" (constriction, at the entropy bound), "context"
            (shared layers' positions and codes in one context-adaptive stream; other streams ANS)
            or "auto" (per tensor and stream, whichever is smallest).
        index_bits: width of the relative index, an int, "auto" (the width from 2 to 10 that
            gives the smallest layer), or a dict of those by layer name / kind (default: the
            paper's 8 for conv, 5 for linear).
        metadata: JSON-able facts to record in the header's "meta" (accuracy, recipe, …).
        arch: the registry record to rebuild the model from (default: the model's own, if any).
        progress: a progress bar over the tensors.
        files: files to carry beside the tensors, by name (a tokenizer: "tokenizer.json", …),
            stored deflated (format version 6); default: the model's own `deepzip_files`, which
            a Hugging Face directory's model and any model `dz.load` read from such a file have.

    Examples:
        >>> dz.save(model, "model.dzip", coder="auto")["file_bytes"]
        20726
    """
    if coder not in CODERS:
        raise ConfigError(f"coder must be one of {', '.join(CODERS)}, not {coder!r}.")
    widths = PAPER_INDEX_BITS if index_bits is None else index_bits
    check_index_bits(widths)
    arch = dict(arch) if arch is not None else arch_of(model)
    files = _checked_files(getattr(model, "deepzip_files", None) if files is None else files)
    logical = list(_logical_tensors(model))
    plain = [t for t in logical if not isinstance(t, tuple)]
    for t in plain:  # all of them before a byte is written: a refused save leaves no file behind
        require_finite(t.value if t.centroids is None else t.centroids, t.name, "save")
    raw = [t.name for t in plain if t.centroids is None and not t.masked and t.value.dim() >= 2
           and t.value.is_floating_point()]
    if raw:
        warnings.warn(f"{len(raw)} weight matri{'ces' if len(raw) > 1 else 'x'} stored uncompressed (neither pruned "
                      f"nor shared): {', '.join(raw[:8])}{' …' if len(raw) > 8 else ''}; select them with filter_fn= "
                      f"or name them in the pruning and bits settings.", DeepzipWarning, stacklevel=2)
    tensors: list[dict[str, Any]] = []
    with DzipWriter(path) as writer:
        enc = _Encoder(writer, coder, widths)
        for t in tqdm(logical, desc="encode", disable=None if progress else True, leave=False):
            tensors.append({"name": t[0], "alias": t[1]} if isinstance(t, tuple) else enc.entry(t))
        header = {"format": "deepzip", "arch": arch, "tensors": tensors,
                  "meta": {"deepzip": __version__, "torch": torch.__version__, **(metadata or {})}}
        widths = widths_of(model)
        if widths:  # the layers channel surgery made narrower, so a fresh module can be made to fit
            header["widths"] = widths
        if files:
            header["files"] = [{"name": k, "stream": writer.add(zlib.compress(v, 9), {"coder": "raw"}),
                                "length": len(v)} for k, v in files.items()]
        size = writer.finish(header, FILES_VERSION if files else _version(tensors, writer.streams))
    return {**header, "streams": writer.streams, "file_bytes": size}
