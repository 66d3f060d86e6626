"""CIFAR-10 in either official form: the binary batches or the python (pickled) batches.

Binary: data_batch_1.bin … data_batch_5.bin and test_batch.bin, each a run of 3073-byte records
(one label byte, then 1024 red, 1024 green and 1024 blue bytes, rows top to bottom).
Python: data_batch_1 … data_batch_5 and test_batch, each a pickled dict whose b"data" is an
N×3072 uint8 array in the same pixel order and whose b"labels" is a list of N ints.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError
from . import Arrays, check_labels, register

_HINT = (
    "download cifar-10-binary.tar.gz or cifar-10-python.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html, unpack it and pass --data-dir"
)
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS
_MEAN = (0.4914, 0.4822, 0.4465)
_STD = (0.2470, 0.2435, 0.2616)


class _ArraysOnly(pickle.Unpickler):
    """An unpickler that rebuilds builtin values and plain numpy arrays and refuses every class.

    Unpickling calls whatever callable the file names, so a doctored batch file could run any
    code. The real batches hold dicts, lists, bytes, ints and str, which pickle rebuilds without
    naming a class, plus numpy arrays, which it rebuilds by calling `_reconstruct(ndarray, shape,
    dtype)` and then `ndarray.__setstate__` (protocols 2 to 4) or `_frombuffer(bytes, dtype,
    shape, order)` (protocol 5), with `dtype(...)` for the element type. Numpy 1 files name the
    module numpy.core and numpy 2 files numpy._core, so both spellings are listed. None of these
    can run code: numpy refuses to fill an object array from raw bytes, and any object inside
    one would itself need a class this unpickler refuses.
    """

    _ALLOWED = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
        }
    )

    def __init__(self, file, path: Path):
        # The official files were written by Python 2; encoding="bytes" keeps its str as bytes.
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(
            f"CIFAR-10 file {self.path} refers to class {module}.{name}, which deepzip does not load; {_HINT}."
        )


def _read_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    data = _bytes(path)
    if len(data) % _RECORD:
        raise DataError(
            f"CIFAR-10 file {path} is truncated: {len(data)} bytes is not a whole number of "
            f"{_RECORD}-byte records; {_HINT}."
        )
    if not data:
        raise DataError(f"CIFAR-10 file {path} is empty; {_HINT}.")
    records = np.frombuffer(data, np.uint8).reshape(-1, _RECORD)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0]


def _read_python(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open("rb") as f:
            batch = _ArraysOnly(f, path).load()
    except DataError:
        raise
    except Exception as e:  # a corrupt pickle fails with almost any exception type
        raise DataError(f"CIFAR-10 file {path} is not a readable python batch ({e}); {_HINT}.") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"CIFAR-10 file {path} is not a python batch: it lacks b'data' or b'labels'; {_HINT}.")
    pixels = _integers(batch[b"data"], path, "b'data'")
    if pixels.ndim == 1 and pixels.size % _PIXELS == 0:  # the pixels as one flat run of bytes
        pixels = pixels.reshape(-1, _PIXELS)
    if pixels.ndim != 2 or pixels.shape[1] != _PIXELS or not len(pixels):
        raise DataError(
            f"CIFAR-10 file {path} holds b'data' of shape {pixels.shape}, not N×{_PIXELS} with N > 0; {_HINT}."
        )
    if pixels.dtype != np.uint8 and (pixels.min() < 0 or pixels.max() > 255):
        raise DataError(f"CIFAR-10 file {path} holds pixel values outside 0..255; {_HINT}.")
    labels = _integers(batch[b"labels"], path, "b'labels'")
    if labels.shape != (len(pixels),):
        raise DataError(
            f"CIFAR-10 file {path} holds {len(pixels)} images but b'labels' of shape {labels.shape}; {_HINT}."
        )
    return pixels.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), labels


def _integers(value: object, path: Path, key: str) -> np.ndarray:
    """`value` (an ndarray, bytes or a list of ints) as an integer array."""
    try:
        array = np.frombuffer(value, np.uint8) if isinstance(value, (bytes, bytearray)) else np.asarray(value)
    except (ValueError, TypeError):  # ragged lists and the like
        array = None
    if array is None or array.dtype.kind not in "iu":
        raise DataError(f"CIFAR-10 file {path} holds a {key} that is not an array of integers; {_HINT}.")
    return array


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"CIFAR-10 file {path} cannot be read ({e}); {_HINT}.") from None


@register("cifar10")
def _load(root: Path | None, train: bool) -> Arrays:
    if root is None:
        raise DataError(f"CIFAR-10 has no default location; {_HINT}.")
    stems = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    # The first batch's name tells which form is there; then every batch must be in that form.
    forms = [
        (folder, suffix, read)
        for folder in (root, root / "cifar-10-batches-bin", root / "cifar-10-batches-py")
        for suffix, read in ((".bin", _read_binary), ("", _read_python))
        if (folder / f"{stems[0]}{suffix}").is_file()
    ]
    if not forms:
        raise DataError(
            f"CIFAR-10 file not found: {root / stems[0]}(.bin), also looked in cifar-10-batches-bin/ and "
            f"cifar-10-batches-py/ under it; {_HINT}."
        )
    folder, suffix, read = forms[0]
    images, labels = [], []
    for stem in stems:
        path = folder / f"{stem}{suffix}"
        if not path.is_file():
            raise DataError(f"CIFAR-10 file not found: {path}; {_HINT}.")
        x, y = read(path)
        check_labels(y, 10, f"CIFAR-10 file {path}", _HINT)
        images.append(x)
        labels.append(y)
    return Arrays(np.concatenate(images), np.concatenate(labels), 10, _MEAN, _STD)
