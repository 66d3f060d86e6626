"""Run libdzip's dzip-dump on a file and hold its output beside the Python reader's, bit for bit.

`c_read(path)` is what the C reader decodes (None when it refuses the file, with its message);
`python_read(path)` is the same through deepzip (None when deepzip raises DzipFormatError);
`assert_same(c, py)` compares them: every tensor's dense values (float32 bits, or raw bytes for
int and bool dtypes), the bytes of raw entries, and the kept positions, codes or values and
codebook of each shared or sparse entry.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
LIBDZIP = ROOT / "libdzip"
BUILD = LIBDZIP / "build"


@dataclass
class Read:
    """One reader's view of a file: per entry index, name and blobs."""
    version: int = 0
    names: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    dense: dict = field(default_factory=dict)       # index -> bytes (float32, or raw bytes of int/bool)
    raw: dict = field(default_factory=dict)         # index -> the stored bytes of raw entries in their own dtype
    kept: dict = field(default_factory=dict)        # index -> (positions uint64, codes or values, codebook or None)
    info: list = field(default_factory=list)
    files: dict = field(default_factory=dict)       # name -> the carried file's inflated bytes (version 6)


def _run(binary: Path, path, mode: str = "--dump", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), mode, str(path)], capture_output=True, timeout=timeout)


def c_read(path, binary: Path | None = None, mode: str = "--dump") -> tuple[Read | None, str]:
    """(the C reader's decode, "") or (None, its one-line refusal); a crash or an exit other than
    0 (valid) and 1 (invalid) fails the caller's test."""
    proc = _run(binary or BUILD / "dzip-dump", path, mode)
    err = proc.stderr.decode("utf-8", "replace")
    if proc.returncode == 1:
        assert err.count("\n") == 1 and "DZ_E_FORMAT" in err, err
        return None, err
    assert proc.returncode == 0, f"dzip-dump exited {proc.returncode} on {path}: {err}"
    head, _, body = proc.stdout.partition(b"\n")
    meta = json.loads(head)
    out = Read(version=meta["version"], info=meta["tensors"])
    at = 0

    def take(n):
        nonlocal at
        at += n
        return body[at - n:at]

    for t in meta["tensors"]:
        i = t["index"]
        out.names.append(bytes.fromhex(t["name"]).decode("utf-8", "surrogatepass"))
        out.targets.append(t["target"])
        if "dense" in t:
            out.dense[i] = take(t["dense"])
        if "raw" in t:
            out.raw[i] = take(t["raw"])
        if "positions" in t:
            pos = np.frombuffer(take(t["positions"]), "<u8")
            vals = np.frombuffer(take(t["codes"]), "<u2") if "codes" in t else np.frombuffer(take(t["values"]), "<f4")
            book = np.frombuffer(take(t["codebook"]), "<f4") if "codebook" in t else None
            out.kept[i] = (pos, vals, book)
    for f in meta.get("files", []):
        out.files[f["name"]] = take(f["length"])
    assert at == len(body), f"{len(body) - at} bytes of dzip-dump output left over"
    return out, ""


def _bytes(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def python_read(path) -> tuple[Read | None, str]:
    """deepzip's decode of the same file, entry by entry: read_tensors for dense values, the
    TensorDecoder's nonzeros() for kept entries. (None, message) where deepzip refuses it."""
    import deepzip as dz
    from deepzip.dzip import DzipReader, TensorDecoder, read_tensors

    try:
        dense = read_tensors(path)
        out = Read()
        with DzipReader(path) as r:
            out.version = r.version
            dec = TensorDecoder(r)
            for i, e in enumerate(r.header["tensors"]):
                out.names.append(e["name"])
                if "alias" in e:
                    continue
                d = dec.decode(e, i)
                if e["encoding"] != "raw":
                    pos, vals, book = d.nonzeros()
                    out.kept[i] = (np.asarray(pos, np.int64), np.asarray(vals), None if book is None else book[1:])
                elif d.raw is not None and "split" not in e and e.get("stored", e["dtype"]) == e["dtype"]:
                    out.raw[i] = _bytes(d.raw)
                value = d.dense()
                out.dense[i] = _bytes(value.float() if value.is_floating_point() else value)
            out.files = r.files()
        out.py_dense = dense
        return out, ""
    except dz.DzipFormatError as err:
        return None, str(err)


def _same_floats(a: bytes, b: bytes) -> bool:
    """Bit-equal float32 arrays, NaNs of any payload counting as equal (float16 NaN conversions
    differ between numpy, torch and the C reader; no writer puts NaN in a file)."""
    if a == b:
        return True
    x, y = np.frombuffer(a, "<u4"), np.frombuffer(b, "<u4")
    if x.shape != y.shape:
        return False
    nan_x, nan_y = np.isnan(x.view("<f4")), np.isnan(y.view("<f4"))
    return bool(np.array_equal(nan_x, nan_y) and np.array_equal(x[~nan_x], y[~nan_y]))


def assert_same(c: Read, py: Read, where="") -> int:
    """Every tensor of the two reads is equal; returns the number of entries compared."""
    assert c.version == py.version, where
    assert c.names == py.names, where
    assert c.files == py.files, f"{where}: carried files differ"
    float_dtypes = {"float32", "float64", "float16", "bfloat16"}
    for i, name in enumerate(c.names):
        if i not in py.dense:
            continue
        dtype = c.info[i]["dtype"]
        ok = _same_floats(c.dense[i], py.dense[i]) if dtype in float_dtypes else c.dense[i] == py.dense[i]
        assert ok, f"{where}: dense values of {name!r} differ"
        assert c.raw.get(i) == py.raw.get(i), f"{where}: raw bytes of {name!r} differ"
        assert (i in c.kept) == (i in py.kept), where
        if i in py.kept:
            (cp, cv, cb), (pp, pv, pb) = c.kept[i], py.kept[i]
            assert np.array_equal(cp.astype(np.int64), pp), f"{where}: kept positions of {name!r} differ"
            if pb is None:
                assert _same_floats(cv.astype("<f4").tobytes(), pv.astype("<f4").tobytes()), f"{where}: values of {name!r}"
            else:
                assert np.array_equal(cv.astype(np.int64), pv.astype(np.int64)), f"{where}: codes of {name!r} differ"
                assert _same_floats(cb.tobytes(), pb.astype("<f4").tobytes()), f"{where}: codebook of {name!r}"
    # read_tensors' dict, aliases included: the last entry of each name, an alias its target's values
    for name, value in py.py_dense.items():
        i = max(j for j, n in enumerate(c.names) if n == name)
        blob = _bytes(value.float() if value.is_floating_point() else value)
        assert _same_floats(c.dense[c.targets[i]], blob) if value.is_floating_point() else c.dense[c.targets[i]] == blob, \
            f"{where}: read_tensors()[{name!r}] differs"
    return len(c.names)
