"""Data sets by name: `load("fashion-mnist", train=True)` returns a whole split as tensors.

The sets deepzip trains on are small, so a split lives in memory as one tensor. Each format
module registers a loader that returns the split as numpy `Arrays`; `load` trims those to
`limit` samples *before* converting to float (so a quick run on 512 samples never builds the
60000-image tensor) and normalises every set the same way: uint8 pixels are divided by 255,
then each channel becomes (x - mean) / std with the set's constants:

    fashion-mnist   mean 0.2860, std 0.3530              (its 60000 training images)
    mnist           mean 0.1307, std 0.3081              (its 60000 training images)
    cifar10         mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
    digits          mean 0.3053, std 0.3760              (all 1797 images, ink counts / 16)
    synthetic       none: drawn with mean 0 and variance 1 already
    npz             uint8: mean 0.5, std 0.5 (pixels land in [-1, 1]); float: used as stored;
                    integer token ids (N×T): kept as int64, never normalised
    imagefolder     mean 0.5, std 0.5

A data set may have a validation split of its own (an npz directory with val.npz, an image
folder with val/); `load_validation` returns it, or None, and data/splits.py holds one out of
the training split otherwise.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, DataError


@dataclass(frozen=True)
class Dataset:
    """One split, whole: `x` float32 N×C×H×W normalised (or int64 N×T token ids), `y` int64 N
    with labels in [0, classes) (or N×T next tokens, for a causal language model)."""

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    name: str

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Arrays:
    """What a format loader returns: a split as read from disk, before trimming and normalising.

    `x` is N×C×H×W, uint8 (divided by 255 first) or float32 (used as is), or N×T integer token
    ids (kept as they are); `mean` and `std` hold one value per channel, or a single value for
    every channel (unused for tokens).
    """

    x: np.ndarray
    y: np.ndarray
    classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


Loader = Callable[[Path | None, bool], Arrays]
_REGISTRY: dict[str, Loader] = {}
_VALIDATION: dict[str, Callable[[Path | None], Arrays | None]] = {}


def register(name: str) -> Callable[[Loader], Loader]:
    """Decorator: `@register("cifar10")` makes `load("cifar10", ...)` call the function."""

    def add(loader: Loader) -> Loader:
        _REGISTRY[name] = loader
        return loader

    return add


def register_validation(name: str) -> Callable:
    """Decorator: the loader of data set `name`'s own validation split (returns None if absent)."""

    def add(loader: Callable[[Path | None], Arrays | None]) -> Callable[[Path | None], Arrays | None]:
        _VALIDATION[name] = loader
        return loader

    return add


def names() -> list[str]:
    return sorted(_REGISTRY)


def load(name: str, root: str | Path | None = None, *, train: bool, limit: int | None = None,
         size: int | None = None) -> Dataset:
    """The training (`train=True`) or test split of data set `name`, keeping its first `limit` samples.

    `root` is where the files are (a directory, or for npz a file); None means the set's
    default location, for the sets that have one. `size` resizes the images to size×size
    (bilinear), e.g. Fashion-MNIST to the 32×32 that CIFAR networks expect.
    """
    if size is not None and size < 1:
        raise ConfigError(f"size must be at least 1 pixel, not {size}.")
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown data set {name!r}; known data sets: {', '.join(names())}.")
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1 sample, not {limit}.")
    return _tensors(_REGISTRY[name](None if root is None else Path(root), train), name, limit, size)


def load_validation(name: str, root: str | Path | None = None, *, limit: int | None = None,
                    size: int | None = None) -> Dataset | None:
    """Data set `name`'s own validation split, normalised like its other splits, or None if it has none.

    Examples:
        >>> load_validation("npz", "mydata/")   # mydata/val.npz, if there is one
    """
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown data set {name!r}; known data sets: {', '.join(names())}.")
    found = _VALIDATION[name](None if root is None else Path(root)) if name in _VALIDATION else None
    return None if found is None else _tensors(found, name, limit, size)


def _tensors(arrays: Arrays, name: str, limit: int | None, size: int | None) -> Dataset:
    x, y = arrays.x[:limit], arrays.y[:limit]
    if x.ndim == 2:  # token ids (N×T): nothing to normalise or resize
        return Dataset(torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.int64)), arrays.classes,
                       name)
    # astype copies, so the in-place arithmetic below never touches a read-only frombuffer view.
    pixels = torch.from_numpy(x.astype(np.float32, order="C"))
    if x.dtype == np.uint8:
        pixels.div_(255.0)
    pixels.sub_(torch.tensor(arrays.mean).view(-1, 1, 1)).div_(torch.tensor(arrays.std).view(-1, 1, 1))
    if size is not None and pixels.shape[-2:] != (size, size):
        pixels = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    return Dataset(pixels, torch.from_numpy(y.astype(np.int64)), arrays.classes, name)


def check_labels(y: np.ndarray, classes: int, where: str, hint: str) -> None:
    """Raise DataError naming `where` ("CIFAR-10 file /d/test_batch") if a label is outside [0, classes)."""
    bad = np.flatnonzero((y < 0) | (y >= classes))
    if len(bad):
        i = int(bad[0])
        raise DataError(f"{where} has label {int(y[i])} at sample {i}, outside 0..{classes - 1}; {hint}.")


from . import bundled, cifar, formats, idx  # noqa: E402,F401  (each registers its loaders)
