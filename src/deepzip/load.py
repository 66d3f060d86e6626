"""deepzip.load: a .dzip back into an nn.Module, trusting nothing the file says.

Every header field is checked before it is used; the total number of elements the file may make
us allocate is bounded by its size (store.MAX_ELEMENTS_PER_BYTE), so a hostile file raises
DzipFormatError instead of exhausting memory. Tensors are decoded one at a time and copied into
the model, so peak memory is the model plus a small multiple of its largest layer.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from . import models
from .encode.sparse import from_gaps
from .encode.streams import MAX_ALPHABET, decode_stream
from .errors import ConfigError, DzipFormatError, ModelMismatchError
from .format import DzipReader, is_uint, unpack_ints
from .quantize.shared import strip_
from .store import DTYPES, MAX_DIMS, MAX_ELEMENTS_PER_BYTE



class TensorDecoder:
    """Decodes the tensor entries of one open file; counts what they allocate against the bound."""

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

    def raw(self, index: Any, what: str) -> bytes:
        self.need(self.r.stream(index).get("coder") == "raw", f"{what} should be a raw stream")
        return self.r.read(index)

    def coded(self, index: Any, alphabet: int, what: str) -> np.ndarray:
        s = self.r.stream(index)
        self.need(s.get("coder") in ("huffman", "ans"), f"{what} has unknown coder {s.get('coder')!r}")
        self.need(s.get("alphabet") == alphabet, f"{what} has alphabet {s.get('alphabet')!r}, expected {alphabet}")
        self.need(is_uint(s.get("count")), f"{what} has no valid symbol count")
        self.spend(s["count"], what)
        table = unpack_ints(s.get("table"), MAX_ALPHABET, f"{self.r.path.name}: the code table of {what}")
        return decode_stream(self.r.read(index), {**s, "table": table})

    def entry_header(self, entry: Any, index: int) -> tuple[str, list[int], torch.dtype, int]:
        self.need(isinstance(entry, dict) and isinstance(entry.get("name"), str), f"tensor entry {index} has no name")
        name = entry["name"]
        shape = entry.get("shape")
        self.need(isinstance(shape, list) and len(shape) <= MAX_DIMS and all(is_uint(d) for d in shape),
                  f"tensor {name!r} has an invalid shape {shape!r}")
        self.need(entry.get("dtype") in DTYPES, f"tensor {name!r} has unknown dtype {entry.get('dtype')!r}")
        numel = math.prod(shape)
        self.spend(numel, f"tensor {name!r}")
        return name, shape, DTYPES[entry["dtype"]], numel

    def tensor(self, entry: Any, index: int) -> torch.Tensor:
        name, shape, dtype, numel = self.entry_header(entry, index)
        decode = _ENCODINGS.get(entry.get("encoding"))
        self.need(decode is not None, f"tensor {name!r} has unknown encoding {entry.get('encoding')!r}")
        flat = decode(self, entry, name, dtype, numel)
        return flat.reshape(shape)

    def index_bits(self, entry: dict, name: str) -> int:
        bits = entry.get("index_bits")
        self.need(is_uint(bits) and 1 <= bits <= 16, f"tensor {name!r} has invalid index_bits {bits!r}")
        return bits

    def codebook(self, entry: dict, name: str) -> np.ndarray:
        data = self.raw(entry.get("codebook"), f"the codebook of {name!r}")
        stored = entry.get("stored", "float32")
        self.need(stored in ("float32", "float16"), f"the codebook of {name!r} cannot be stored as {stored!r}")
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
            data = self.raw(entry.get("values"), f"the values of {name!r}")
            stored = entry.get("stored", "float32")
            self.need(stored in ("float32", "float16"), f"tensor {name!r} cannot be stored as {stored!r}")
            kind = "<f4" if stored == "float32" else "<f2"
            size = np.dtype(kind).itemsize
            self.need(len(data) == size * gaps.size,
                      f"tensor {name!r} has {len(data)} value bytes for {gaps.size} entries")
            values = np.frombuffer(data, kind).astype(np.float32)
        self.need(gaps.size == values.size, f"tensor {name!r} has {gaps.size} gaps for {values.size} values")
        return gaps, values

    def live(self, entry: dict, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(indices of the live rows, of the live columns) when the tensor is stored as its live
        submatrix (bitmaps `rows` and `cols`), else None."""
        if "rows" not in entry and "cols" not in entry:
            return None
        shape = entry["shape"]
        self.need(len(shape) >= 2, f"tensor {name!r} has live bitmaps but {len(shape)} dimensions")
        out = []
        for key, size in (("rows", shape[0]), ("cols", math.prod(shape[1:]))):
            data = self.raw(entry.get(key), f"the live {key} of {name!r}")
            self.need(len(data) == -(-size // 8), f"the live {key} bitmap of {name!r} is {len(data)} bytes, "
                                                 f"not {-(-size // 8)}")
            bits = np.unpackbits(np.frombuffer(data, np.uint8))
            self.need(not bits[size:].any(), f"the live {key} bitmap of {name!r} has bits set past its end")
            out.append(np.flatnonzero(bits[:size]))
        return out[0], out[1]

    def scatter(self, flat: np.ndarray, live: tuple[np.ndarray, np.ndarray] | None, shape: list[int]) -> np.ndarray:
        """A live submatrix's elements, in C order, back into the whole tensor (flat)."""
        if live is None:
            return flat
        out = np.zeros(math.prod(shape), dtype=flat.dtype)
        out.reshape(shape[0], -1)[np.ix_(*live)] = flat.reshape(live[0].size, live[1].size)
        return out

    @staticmethod
    def live_numel(live: tuple[np.ndarray, np.ndarray] | None, numel: int) -> int:
        return numel if live is None else live[0].size * live[1].size

    def positions(self, entry: dict, name: str) -> str:
        positions = entry.get("positions")
        self.need(positions in ("dense", "sparse"), f"tensor {name!r} has unknown positions {positions!r}")
        return positions

    def nonzeros(self, entry: Any, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(sorted flat positions, float32 values) of a shared or sparse tensor's non-zeros,
        without building the dense tensor: what the sparse runtime runs on."""
        name, shape, _, numel = self.entry_header(entry, index)
        live = self.live(entry, name)
        size = self.live_numel(live, numel)
        if entry.get("encoding") == "shared":
            table = self.codebook(entry, name)
            if self.positions(entry, name) == "dense":
                codes = self._dense_codes(entry, name, size, table.size)
                positions = np.flatnonzero(codes)
                return self._full_positions(positions, live, shape), table[codes[positions]]
            gaps, codes = self.entries(entry, name, table.size)
            values = table[codes]
        else:
            self.need(entry.get("encoding") == "sparse", f"tensor {name!r} is not stored sparse")
            gaps, values = self.entries(entry, name, None)
        positions = np.cumsum(gaps.astype(np.int64) + 1) - 1
        self.need(positions.size == 0 or positions[-1] < size, f"the gaps of {name!r} run past its {size} elements")
        keep = values != 0
        return self._full_positions(positions[keep], live, shape), values[keep]

    @staticmethod
    def _full_positions(positions: np.ndarray, live: tuple[np.ndarray, np.ndarray] | None,
                        shape: list[int]) -> np.ndarray:
        if live is None:
            return positions
        row, col = np.divmod(positions, max(live[1].size, 1))
        return live[0][row].astype(np.int64) * (math.prod(shape) // max(shape[0], 1)) + live[1][col]

    def _dense_codes(self, entry: dict, name: str, size: int, alphabet: int) -> np.ndarray:
        values = self.coded(entry.get("values"), alphabet, f"the codes of {name!r}")
        self.need(values.size == size, f"tensor {name!r} has {values.size} codes for {size} weights")
        return values

    def codes(self, entry: dict, name: str, numel: int, alphabet: int) -> np.ndarray:
        """Per-weight codes (0 = zero) of a shared tensor, dense, as int32."""
        live = self.live(entry, name)
        size = self.live_numel(live, numel)
        if self.positions(entry, name) == "dense":
            codes = self._dense_codes(entry, name, size, alphabet)
        else:
            codes = from_gaps(*self.entries(entry, name, alphabet), size)
        return self.scatter(codes, live, entry["shape"])


def _raw(dec: TensorDecoder, entry: dict, name: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
    data = dec.raw(entry.get("data"), f"tensor {name!r}")
    stored = entry.get("stored", entry["dtype"])
    dec.need(stored == entry["dtype"] or (stored == "float16" and dtype == torch.float32),
             f"tensor {name!r} cannot be stored as {stored!r}")
    itemsize = torch.empty(0, dtype=DTYPES[stored]).element_size()
    dec.need(len(data) == numel * itemsize, f"tensor {name!r} has {len(data)} bytes for {numel} elements")
    if numel == 0:
        return torch.empty(0, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=DTYPES[stored]).to(dtype)


def _shared(dec: TensorDecoder, entry: dict, name: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
    dec.need(dtype == torch.float32, f"shared tensor {name!r} must be float32")
    table = dec.codebook(entry, name)
    codes = dec.codes(entry, name, numel, table.size)
    return torch.from_numpy(table[codes])


def _sparse(dec: TensorDecoder, entry: dict, name: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
    dec.need(dtype == torch.float32, f"sparse tensor {name!r} must be float32")
    live = dec.live(entry, name)
    flat = from_gaps(*dec.entries(entry, name, None), dec.live_numel(live, numel))
    return torch.from_numpy(dec.scatter(flat, live, entry["shape"]))


_ENCODINGS: dict[str, Callable[..., torch.Tensor]] = {"raw": _raw, "shared": _shared, "sparse": _sparse}


def targets(model: nn.Module) -> dict[str, tuple[nn.Module, str, str]]:
    """(owner module, attribute, "param" | "buffer") of every parameter and persistent buffer by
    name; tied parameters appear under each of their names."""
    out: dict[str, tuple[nn.Module, str, str]] = {}
    for prefix, module in model.named_modules(remove_duplicate=False):
        dot = f"{prefix}." if prefix else ""
        for name, p in module._parameters.items():
            if p is not None:
                out[dot + name] = (module, name, "param")
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set:
                out[dot + name] = (module, name, "buffer")
    return out


def build_model(header: dict, path_name: str) -> nn.Module:
    """The registry architecture the file records, built on the meta device: no memory for
    weights (and no random init) until the file's values arrive."""
    arch = header.get("arch")
    if arch is None:
        raise ConfigError(f"{path_name} records no architecture (it was saved from a custom module); "
                          f"pass the module to fill: deepzip.load(path, model=MyNet()).")
    kwargs = arch.get("kwargs", {}) if isinstance(arch, dict) else None
    if not (isinstance(arch.get("name") if kwargs is not None else None, str) and isinstance(kwargs, dict)
            and all(_plain_argument(v) for v in kwargs.values())):
        raise DzipFormatError(f"{path_name} is corrupt: its architecture record is malformed or out of range.")
    try:
        with torch.device("meta"):
            return models.create(arch["name"], **kwargs)
    except (ConfigError, ValueError, TypeError, RuntimeError, OverflowError, ZeroDivisionError) as e:
        reason = str(e).rstrip(".")
        raise DzipFormatError(f"{path_name} records an architecture that cannot be built here: {reason}.") from None


def _plain_argument(value: Any) -> bool:
    """Architecture arguments a file may carry: small numbers, strings, booleans. A hostile file
    must not make the reader build a network of a billion layers before anything else is checked."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return 0 <= value <= 4096
    return isinstance(value, float) and math.isfinite(value) and 0 <= value <= 64


def _check_names(entries: list, have: dict, path_name: str) -> None:
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    missing = sorted(set(have) - set(names))
    extra = sorted(n for n in names if n not in have)
    if missing or extra:
        parts = []
        if extra:
            parts.append(f"the file has {', '.join(map(repr, extra[:5]))}{' …' if len(extra) > 5 else ''} "
                         f"which the model lacks")
        if missing:
            parts.append(f"the model has {', '.join(map(repr, missing[:5]))}{' …' if len(missing) > 5 else ''} "
                         f"which the file lacks")
        raise ModelMismatchError(f"{path_name} does not fit this model: {'; '.join(parts)}.")


STREAM_KEYS = ("data", "codebook", "values", "gaps", "rows", "cols")


def _check_entries(entries: list, count: int, path_name: str) -> None:
    """Shape of the tensor table, checked once so later lookups can trust the types: each entry is
    an object with a string name and either a string alias or string encoding and dtype. And each
    stream belongs to exactly one tensor field: a header that points two tensors at one stream,
    or leaves a stream unused, was not written by deepzip and is refused."""
    for i, e in enumerate(entries):
        keys = ("name", "alias") if isinstance(e, dict) and "alias" in e else ("name", "encoding", "dtype")
        if not (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys)):
            raise DzipFormatError(f"{path_name} is corrupt: tensor entry {i} lacks a valid {' or '.join(keys)}.")
        shape = e.get("shape")
        if "alias" not in e and not (isinstance(shape, list) and len(shape) <= MAX_DIMS and all(is_uint(d) for d in shape)):
            raise DzipFormatError(f"{path_name} is corrupt: tensor {e['name']!r} has an invalid shape {shape!r}.")
    used = [e[k] for e in entries if "alias" not in e for k in STREAM_KEYS if k in e]
    if sorted(map(repr, used)) != sorted(map(repr, range(count))):
        raise DzipFormatError(f"{path_name} is corrupt: its tensors do not use each of its {count} streams exactly once.")


def _check_shapes(entries: list, have: dict, path_name: str) -> None:
    for e in entries:
        if "alias" in e or e["name"] not in have:
            continue
        owner, attr, role = have[e["name"]]
        current = owner._parameters[attr] if role == "param" else owner._buffers[attr]
        if not isinstance(e.get("shape"), list) or list(e["shape"]) != list(current.shape):
            raise ModelMismatchError(f"{path_name} does not fit this model: {e['name']!r} is {e.get('shape')!r} "
                                     f"in the file but {list(current.shape)} in the model.")


def _put(owner: nn.Module, attr: str, role: str, value: torch.Tensor, name: str, path_name: str) -> torch.Tensor:
    """Store `value` as owner.attr: in place into a real tensor, or as the tensor itself on a
    meta-built model. Returns the tensor now held, so tied names can share it."""
    current = owner._parameters[attr] if role == "param" else owner._buffers[attr]
    if tuple(current.shape) != tuple(value.shape):
        raise ModelMismatchError(f"{path_name} does not fit this model: {name!r} is {tuple(value.shape)} "
                                 f"in the file but {tuple(current.shape)} in the model.")
    if not current.is_meta:
        with torch.no_grad():
            current.copy_(value)
        return current
    value = value.to(current.dtype)
    if role == "param":
        value = nn.Parameter(value, requires_grad=current.requires_grad)
        owner._parameters[attr] = value
    else:
        owner._buffers[attr] = value
    return value


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


RUNTIMES = ("dense", "sparse")


def load(path: str | os.PathLike, model: nn.Module | None = None, *, runtime: str = "dense",
         strict: bool = True) -> nn.Module:
    """Rebuild the model stored in `path`, in eval mode.

    runtime="dense": exact weights in an ordinary module. runtime="sparse": compressed Linear and
    Conv2d layers become SparseLinear / SparseConv2d running CSR products straight from the
    decoded streams (deepzip.runtime.choose decides, per layer, where that pays); no dense weight
    matrix is built for them. With model=None the architecture recorded in the file is built
    from the model registry; otherwise `model` is filled in place (deepzip masks or sharing on
    it are stripped first). strict=False skips names the file and the model do not share.
    """
    from . import runtime as rt

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}.")
    with DzipReader(path) as reader:
        pname = reader.path.name
        header = reader.header
        entries = header.get("tensors")
        if not isinstance(entries, list):
            raise DzipFormatError(f"{pname} is corrupt: 'tensors' is not a list.")
        if model is None:
            model = build_model(header, pname)
        else:
            strip_(model)
        _check_entries(entries, len(reader.streams), pname)
        have = targets(model)
        if strict:
            _check_names(entries, have, pname)
        _check_shapes(entries, have, pname)  # before anything is written into the caller's model
        dec = TensorDecoder(reader)
        # Tensors a later entry aliases are kept; everything else is dropped once stored, so
        # memory stays one layer at a time.
        aliased = {e.get("alias") for e in entries if isinstance(e, dict)}
        held: dict[str, torch.Tensor] = {}
        sparse: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        decisions: dict[str, str] = {}
        for i, entry in enumerate(entries):
            if isinstance(entry, dict) and "alias" in entry:
                dec.need(isinstance(entry.get("name"), str) and entry["alias"] in held,
                         f"tensor entry {i} aliases an unknown tensor")
                value = held[entry["alias"]]
            elif entry["name"] not in have and entry["name"] not in aliased:
                continue  # strict=False: nothing in the model takes it
            else:
                if runtime == "sparse" and entry["name"] in have and entry.get("layer"):
                    how, why = rt.choose(entry)
                    owner = have[entry["name"]][0]
                    if how == "sparse" and not rt.supports(owner):
                        how, why = "dense", f"no sparse {type(owner).__name__} with this padding"
                    if how == "sparse" and entry["name"] in aliased:
                        how, why = "dense", "tied to another layer"
                    decisions[entry["name"]] = f"{how} ({why})"
                    if how == "sparse":
                        sparse[entry["name"].rpartition(".")[0]] = dec.nonzeros(entry, i)
                        continue
                value = dec.tensor(entry, i)
            if entry["name"] not in have:
                continue
            stored = _put(*have[entry["name"]], value, entry["name"], pname)
            if entry["name"] in aliased:
                held[entry["name"]] = stored
        for layer, (positions, values) in sparse.items():
            module = model.get_submodule(layer) if layer else model
            new = rt.build(module, positions, values, getattr(module, "bias", None))
            if layer:
                _replace(model, layer, new)
            else:  # the model is the layer itself
                model = new
        model.deepzip_meta = header.get("meta", {})
        if runtime == "sparse":
            model.deepzip_runtime = decisions  # per layer weight: "sparse (density …)" or "dense (why)"
    leftover = [n for n, (m, a, r) in targets(model).items()
                if (m._parameters[a] if r == "param" else m._buffers[a]).is_meta]
    if leftover:
        raise ModelMismatchError(f"{pname} does not fit this model: nothing in the file for {', '.join(leftover[:5])}.")
    return model.eval()
