"""Your own data: arrays in an .npz file, or images in a folder per class.

npz: `root` is an .npz file, used as given for either split (point it at the split you want),
or a directory holding train.npz and test.npz (and val.npz, its own validation split, if it has
one). Each holds `x` (N×H×W or N×C×H×W, uint8 pixels or floats already normalised), `y` (N
integer labels) and optionally `classes` (a scalar, for a split that lacks the highest class;
otherwise the highest label + 1). Token ids are `x` of N×T integers: with `y` (N labels, or N×T
targets) as given, without it a causal language model's task (each position predicts the next).

imagefolder: root/train/<class>/*.png|*.jpg and root/test/<class>/… (and root/val/<class>/…, its
own validation split, if present), classes numbered in the
order of their sorted folder names under train/. Every image is converted to the mode (grey or
RGB) and must have the size of the first training image, so both splits fit one model.
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DataError
from . import Arrays, check_labels, register, register_validation

_NPZ_HINT = "write it with numpy.savez(path, x=images, y=labels) and pass --data-dir"
_TOKEN_HINT = ("write token ids with numpy.savez(path, x=ids) (a causal language model predicts each next id) or "
               "numpy.savez(path, x=ids, y=labels)")
_FOLDER_HINT = "lay the images out as DIR/train/<class>/*.png and DIR/test/<class>/*.png and pass --data-dir"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


@register("npz")
def _npz(root: Path | None, train: bool) -> Arrays:
    if root is None:
        raise DataError(f"The npz data set has no default location; {_NPZ_HINT}.")
    path = root / ("train.npz" if train else "test.npz") if root.is_dir() else root
    return _read_npz(path)


@register_validation("npz")
def _npz_validation(root: Path | None) -> Arrays | None:
    """DIR/val.npz, when the directory has one (a single .npz file has no validation split)."""
    if root is None or not root.is_dir() or not (root / "val.npz").is_file():
        return None
    return _read_npz(root / "val.npz")


def _read_npz(path: Path) -> Arrays:
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; {_NPZ_HINT}.")
    try:
        archive = np.load(path, allow_pickle=False)  # object arrays would need pickle: refused
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"npz file {path} is a single .npy array, not an archive of x and y; {_NPZ_HINT}.")
        with archive:
            if "x" not in archive.files:
                raise DataError(f"npz file {path} lacks the array x (it has {archive.files}); {_NPZ_HINT}.")
            x = archive["x"]
            y = archive["y"] if "y" in archive.files else None
            classes = int(archive["classes"]) if "classes" in archive.files else None
    except DataError:
        raise
    except (OSError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"npz file {path} cannot be read ({e}); {_NPZ_HINT}.") from None
    if x.ndim == 2 and x.dtype.kind in "iu":
        return _tokens(path, x, y, classes)
    if y is None:
        raise DataError(f"npz file {path} lacks the array y (it has x only, which is not N×T token ids); "
                        f"{_NPZ_HINT}.")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or not len(x):
        raise DataError(
            f"npz file {path} holds x of shape {x.shape}, not N×H×W or N×C×H×W with N > 0 (or N×T integer "
            f"token ids); {_NPZ_HINT}."
        )
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise DataError(f"npz file {path} holds x of type {x.dtype}; expected uint8 or float; {_NPZ_HINT}.")
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DataError(f"npz file {path} holds x with NaN or infinite values; {_NPZ_HINT}.")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise DataError(
            f"npz file {path} holds y of shape {y.shape} and type {y.dtype}, not {len(x)} integer labels; "
            f"{_NPZ_HINT}."
        )
    classes = int(y.max()) + 1 if classes is None else classes
    check_labels(y, classes, f"npz file {path}", _NPZ_HINT)
    if x.dtype == np.uint8:
        return Arrays(x, y, classes, (0.5,), (0.5,))
    return Arrays(x.astype(np.float32, copy=False), y, classes, (0.0,), (1.0,))


def _tokens(path: Path, x: np.ndarray, y: np.ndarray | None, classes: int | None) -> Arrays:
    """Token ids, N×T. With y (N labels, or N×T targets) as given; without y, a causal language
    model's task: each position predicts the next token (x[:, :-1] → x[:, 1:])."""
    if not len(x) or x.shape[1] < 2 or x.min() < 0:
        raise DataError(f"npz file {path} holds token ids x of shape {x.shape} with smallest id {x.min() if x.size else '?'}; "
                        f"tokens need N > 0 sequences of at least 2 ids ≥ 0; {_TOKEN_HINT}.")
    if y is None:
        x, y = x[:, :-1], x[:, 1:]
    elif y.dtype.kind not in "iu" or y.shape not in ((len(x),), x.shape):
        raise DataError(f"npz file {path} holds y of shape {y.shape} and type {y.dtype} beside token ids of shape "
                        f"{x.shape}: y must be N integer labels or N×T target ids; {_TOKEN_HINT}.")
    classes = int(max(x.max(), y.max())) + 1 if classes is None else classes
    check_labels(y.reshape(-1), classes, f"npz file {path}", _TOKEN_HINT)
    return Arrays(x, y, classes, (0.0,), (1.0,))


def _listing(split: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """(image file, label) for every image under split/<class>/, in sorted order."""
    if not split.is_dir():
        raise DataError(f"Image folder not found: {split}; {_FOLDER_HINT}.")
    found = []
    for folder in sorted(p for p in split.iterdir() if p.is_dir()):
        if folder.name not in index:
            raise DataError(
                f"Image folder {folder} is a class that {split.parent / 'train'} lacks; {_FOLDER_HINT}."
            )
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
        found += [(f, index[folder.name]) for f in files]
    if not found:
        raise DataError(f"Image folder {split} holds no .png or .jpg images in class folders; {_FOLDER_HINT}.")
    return found


def _pixels(path: Path, mode: str | None = None) -> np.ndarray:
    """The image at `path` as an H×W or H×W×3 uint8 array, converted to `mode` if given."""
    try:
        with Image.open(path) as image:
            # Palette, alpha, CMYK and 16-bit images become RGB or grey so a pixel is its colour.
            mode = mode or ("L" if image.mode in ("1", "L") else "RGB")
            return np.asarray(image.convert(mode))
    except (OSError, Image.DecompressionBombError) as e:  # unreadable, truncated, unknown format, or a bomb
        raise DataError(f"Image {path} cannot be read ({e}); {_FOLDER_HINT}.") from None


@register("imagefolder")
def _imagefolder(root: Path | None, train: bool) -> Arrays:
    return _folder_split(root, "train" if train else "test")


@register_validation("imagefolder")
def _imagefolder_validation(root: Path | None) -> Arrays | None:
    return _folder_split(root, "val") if root is not None and (root / "val").is_dir() else None


def _folder_split(root: Path | None, split: str) -> Arrays:
    if root is None:
        raise DataError(f"The imagefolder data set has no default location; {_FOLDER_HINT}.")
    if not (root / "train").is_dir():
        raise DataError(f"Image folder not found: {root / 'train'}; {_FOLDER_HINT}.")
    names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    index = {name: i for i, name in enumerate(names)}
    files = _listing(root / "train", index)
    first = files[0][0]
    reference = _pixels(first)
    mode = "L" if reference.ndim == 2 else "RGB"
    if split != "train":
        files = _listing(root / split, index)
    images = []
    for path, _ in files:
        pixels = _pixels(path, mode)
        if pixels.shape != reference.shape:
            raise DataError(
                f"Image {path} is {pixels.shape[1]}×{pixels.shape[0]} but {first} is "
                f"{reference.shape[1]}×{reference.shape[0]}; resize the images to one size."
            )
        images.append(pixels)
    x = np.stack(images)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    return Arrays(x, np.array([label for _, label in files]), len(names), (0.5,), (0.5,))
