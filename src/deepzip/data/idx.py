"""MNIST and Fashion-MNIST from their IDX files, raw or gzipped, as LeCun's site and Debian ship them.

An IDX file is a big-endian header (magic number, then one uint32 per dimension) followed by
the bytes of the array; the magic's last byte is the number of dimensions and 0x08 before it
says the elements are unsigned bytes.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from functools import partial
from math import prod
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import Arrays, check_labels, register

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions: count × rows × columns
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension: count


@dataclass(frozen=True)
class _Source:
    title: str
    default_root: Path | None
    hint: str  # how to get the files; ends every error message
    mean: float
    std: float


_FASHION = _Source(
    "Fashion-MNIST",
    Path("/usr/share/datasets/fashion-mnist"),
    "install it with 'apt-get install -y dataset-fashion-mnist' or pass --data-dir",
    0.2860,
    0.3530,
)
_MNIST = _Source(
    "MNIST",
    None,
    "download the four IDX files from https://yann.lecun.com/exdb/mnist/ and pass --data-dir",
    0.1307,
    0.3081,
)


def _read(src: _Source, root: Path, stem: str, magic: int) -> tuple[np.ndarray, Path]:
    """The array in root/stem or root/stem.gz, and the path it came from."""
    raw, packed = root / stem, root / f"{stem}.gz"
    path = raw if raw.is_file() else packed if packed.is_file() else None
    if path is None:
        raise DataError(f"{src.title} file not found: {raw}(.gz); {src.hint}.")
    try:
        data = gzip.decompress(path.read_bytes()) if path is packed else path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # unreadable, not gzip, or a cut-off gzip stream
        raise DataError(f"{src.title} file {path} cannot be read ({e}); {src.hint}.") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big")
    # The magic first: a file of the wrong kind is more often the mistake than a cut-off header.
    if len(data) >= 4 and found != magic:
        raise DataError(
            f"{src.title} file {path} is not an IDX file of {ndim}-dimensional bytes: magic number "
            f"0x{found:08x}, expected 0x{magic:08x}; {src.hint}."
        )
    if len(data) < header:
        raise DataError(
            f"{src.title} file {path} is truncated: {len(data)} bytes, shorter than its header; {src.hint}."
        )
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    if 0 in dims:
        raise DataError(f"{src.title} file {path} declares an empty array of shape {dims}; {src.hint}.")
    payload, expected = len(data) - header, prod(dims)
    if payload < expected:
        raise DataError(
            f"{src.title} file {path} is truncated: its header promises {expected} bytes of data "
            f"but it holds {payload}; {src.hint}."
        )
    if payload > expected:
        raise DataError(
            f"{src.title} file {path} has {payload - expected} bytes past the {expected} its header "
            f"declares; {src.hint}."
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims), path


def _load(src: _Source, root: Path | None, train: bool) -> Arrays:
    root = src.default_root if root is None else root
    if root is None:
        raise DataError(f"{src.title} has no default location; {src.hint}.")
    prefix = "train" if train else "t10k"
    images, images_path = _read(src, root, f"{prefix}-images-idx3-ubyte", _IMAGES_MAGIC)
    labels, labels_path = _read(src, root, f"{prefix}-labels-idx1-ubyte", _LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{src.title} files disagree: {images_path} holds {len(images)} images but {labels_path} "
            f"holds {len(labels)} labels; {src.hint}."
        )
    check_labels(labels, 10, f"{src.title} file {labels_path}", src.hint)
    return Arrays(images[:, None], labels, 10, (src.mean,), (src.std,))


register("fashion-mnist")(partial(_load, _FASHION))
register("mnist")(partial(_load, _MNIST))
