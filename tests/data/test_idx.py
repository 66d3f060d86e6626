"""MNIST / Fashion-MNIST IDX files: exact values from raw and gzipped files, and every kind of bad file."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deepzip.data import load
from deepzip.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    magic = 0x0800 | array.ndim if magic is None else magic
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_split(root: Path, prefix: str, images: np.ndarray, labels: np.ndarray, packed: bool = False) -> None:
    for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if packed:
            (root / f"{stem}.gz").write_bytes(gzip.compress(data))
        else:
            (root / stem).write_bytes(data)


def sample(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("packed", [False, True])
def test_reads_exact_pixels_and_labels(tmp_path, packed):
    images, labels = sample(7)
    write_split(tmp_path, "train", images, labels, packed)
    data = load("mnist", tmp_path, train=True)
    assert data.x.shape == (7, 1, 28, 28) and data.x.dtype == torch.float32
    assert data.y.dtype == torch.int64 and data.y.tolist() == labels.tolist()
    assert data.classes == 10 and data.name == "mnist"
    # Undo the documented normalisation: (p / 255 - 0.1307) / 0.3081.
    restored = (data.x * 0.3081 + 0.1307) * 255
    assert torch.allclose(restored[:, 0], torch.from_numpy(images).float(), atol=1e-3)


def test_test_split_and_limit(tmp_path):
    images, labels = sample(9, seed=1)
    write_split(tmp_path, "t10k", images, labels)
    data = load("fashion-mnist", tmp_path, train=False, limit=4)
    assert data.y.tolist() == labels[:4].tolist()
    restored = (data.x * 0.3530 + 0.2860) * 255
    assert torch.allclose(restored[:, 0], torch.from_numpy(images[:4]).float(), atol=1e-3)


def test_missing_file_names_it_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte") as e:
        load("fashion-mnist", tmp_path, train=True)
    assert str(tmp_path) in str(e.value) and "apt-get install -y dataset-fashion-mnist" in str(e.value)
    images, labels = sample(3)
    write_split(tmp_path, "train", images, labels)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load("fashion-mnist", tmp_path, train=True)


def test_mnist_needs_a_directory():
    with pytest.raises(DataError, match="--data-dir"):
        load("mnist", None, train=True)


@pytest.mark.parametrize("packed", [False, True])
def test_truncated_file(tmp_path, packed):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels)
    data = idx_bytes(images)[:-100]
    name = "train-images-idx3-ubyte" + (".gz" if packed else "")
    (tmp_path / "train-images-idx3-ubyte").unlink()
    (tmp_path / name).write_bytes(gzip.compress(data) if packed else data)
    with pytest.raises(DataError, match=f"{name}.*truncated.*3920 bytes.*3820"):
        load("mnist", tmp_path, train=True)


def test_cut_off_gzip_stream(tmp_path):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels, packed=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz cannot be read"):
        load("mnist", tmp_path, train=True)


def test_trailing_bytes(tmp_path):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0\0")
    with pytest.raises(DataError, match="train-labels-idx1-ubyte has 2 bytes past"):
        load("mnist", tmp_path, train=True)


def test_wrong_magic(tmp_path):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels)
    # Labels where images belong: a 1-D file has magic 0x801, not 0x803.
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(labels))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*0x00000801, expected 0x00000803"):
        load("mnist", tmp_path, train=True)


def test_short_header(tmp_path):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03\0\0")
    with pytest.raises(DataError, match="train-images-idx3-ubyte is truncated: 6 bytes"):
        load("mnist", tmp_path, train=True)


def test_count_mismatch_names_both_files(tmp_path):
    images, labels = sample(5)
    write_split(tmp_path, "train", images, labels[:4])
    with pytest.raises(DataError, match="train-images-idx3-ubyte holds 5 images.*train-labels-idx1-ubyte holds 4"):
        load("mnist", tmp_path, train=True)


def test_label_out_of_range(tmp_path):
    images, labels = sample(5)
    labels[3] = 10
    write_split(tmp_path, "train", images, labels)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte has label 10 at sample 3"):
        load("mnist", tmp_path, train=True)


@pytest.mark.skipif(not FASHION.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist():
    train = load("fashion-mnist", train=True)
    test = load("fashion-mnist", train=False)
    assert train.x.shape == (60000, 1, 28, 28) and test.x.shape == (10000, 1, 28, 28)
    assert train.classes == test.classes == 10
    assert torch.bincount(train.y).tolist() == [6000] * 10
    assert torch.bincount(test.y).tolist() == [1000] * 10
    # The documented constants are the training set's own mean and std.
    assert abs(train.x.mean().item()) < 1e-3 and abs(train.x.std().item() - 1) < 1e-3
