"""CIFAR-10 binary and python batches, and the restricted unpickler that reads the python ones."""
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from deepzip.data import load
from deepzip.errors import DataError

MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)
TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def batches(sizes: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)) for n in sizes]


def write_binary(folder: Path, stems: list[str], parts) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (pixels, labels) in zip(stems, parts):
        (folder / f"{stem}.bin").write_bytes(np.concatenate([labels[:, None], pixels], axis=1).tobytes())


def write_python(folder: Path, stems: list[str], parts, plain: bool = False, protocol: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, (pixels, labels) in zip(stems, parts):
        data = pixels.tobytes() if plain else pixels
        batch = {b"batch_label": b"test", b"labels": labels.tolist(), b"data": data, b"filenames": [b"a.png"]}
        (folder / stem).write_bytes(pickle.dumps(batch, protocol=protocol))


def restored(x: torch.Tensor) -> np.ndarray:
    """Undo the documented normalisation, back to N×3072 bytes in the files' order."""
    return ((x * STD + MEAN) * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()


def check(data, parts) -> None:
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    assert data.x.shape == (len(pixels), 3, 32, 32) and data.classes == 10
    assert data.y.tolist() == labels.tolist()
    np.testing.assert_array_equal(restored(data.x), pixels)


@pytest.mark.parametrize("subdir", ["", "cifar-10-batches-bin"])
def test_binary(tmp_path, subdir):
    parts = batches([3, 2, 4, 1, 2])
    write_binary(tmp_path / subdir, TRAIN, parts)
    check(load("cifar10", tmp_path, train=True), parts)
    test_part = batches([5])
    write_binary(tmp_path / subdir, ["test_batch"], test_part)
    check(load("cifar10", tmp_path, train=False), test_part)


def test_binary_pixel_layout(tmp_path):
    # One record whose red plane is 1, green 2, blue 3: channels must land in that order.
    record = bytes([7]) + bytes([1] * 1024 + [2] * 1024 + [3] * 1024)
    (tmp_path / "test_batch.bin").write_bytes(record)
    data = load("cifar10", tmp_path, train=False)
    assert data.y.tolist() == [7]
    assert restored(data.x).reshape(3, 1024)[:, 0].tolist() == [1, 2, 3]


@pytest.mark.parametrize("plain", [False, True], ids=["numpy", "bytes"])
@pytest.mark.parametrize("protocol", [4, 5])
def test_python(tmp_path, plain, protocol):
    parts = batches([2, 3, 1, 1, 2])
    write_python(tmp_path / "cifar-10-batches-py", TRAIN, parts, plain, protocol)
    check(load("cifar10", tmp_path, train=True), parts)


def python2_pickle(pixels: np.ndarray, labels: np.ndarray) -> bytes:
    """A batch as Python 2's cPickle wrote the official files: str as BINSTRING, numpy 1's module names."""

    def string(b: bytes) -> bytes:
        return b"T" + struct.pack("<I", len(b)) + b

    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R"
    dtype = b"cnumpy\ndtype\n" + string(b"u1") + b"K\x00K\x01\x87R"
    dtype += b"(K\x03" + string(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"J" + struct.pack("<i", len(pixels)) + b"M\x00\x0c\x86"
    array += b"(K\x01" + shape + dtype + b"\x89" + string(pixels.tobytes()) + b"tb"
    label_list = b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"e"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + label_list + b"u."


def test_python2_batch(tmp_path):
    parts = batches([3])
    (tmp_path / "test_batch").write_bytes(python2_pickle(*parts[0]))
    check(load("cifar10", tmp_path, train=False), parts)


def test_python_with_list_of_lists(tmp_path):
    parts = batches([3])
    pixels, labels = parts[0]
    batch = {b"data": pixels.tolist(), b"labels": labels.tolist()}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    check(load("cifar10", tmp_path, train=False), parts)


class Payload:
    """Unpickling this runs `touch MARKER` through os.system, as a doctored batch file could."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickle_carrying_a_callable_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": Payload(marker)}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    system = f"{os.system.__module__}.system"  # "posix.system" on Linux
    with pytest.raises(DataError, match=f"test_batch refers to class {system}, which deepzip does not load"):
        load("cifar10", tmp_path, train=False)
    assert not marker.exists()
    # Sanity check on the test itself: plain pickle does run it.
    pickle.loads((tmp_path / "test_batch").read_bytes())
    assert marker.exists()


def test_pickle_of_a_numpy_subclass_is_refused(tmp_path):
    batch = {b"data": np.zeros((1, 3072), np.uint8).view(np.recarray), b"labels": [0]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(DataError, match="refers to class numpy.*recarray"):
        load("cifar10", tmp_path, train=False)


def test_truncated_binary_batch(tmp_path):
    write_binary(tmp_path, TRAIN, batches([2] * 5))
    path = tmp_path / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="data_batch_3.bin is truncated: 6145 bytes"):
        load("cifar10", tmp_path, train=True)


@pytest.mark.parametrize("write", [write_binary, write_python])
def test_label_out_of_range(tmp_path, write):
    parts = batches([4])
    parts[0][1][2] = 10
    write(tmp_path, ["test_batch"], parts)
    with pytest.raises(DataError, match="test_batch(.bin)? has label 10 at sample 2, outside 0..9"):
        load("cifar10", tmp_path, train=False)


def test_missing_batch_is_named(tmp_path):
    write_binary(tmp_path, TRAIN[:4], batches([1] * 4))
    with pytest.raises(DataError, match="data_batch_5.bin; download"):
        load("cifar10", tmp_path, train=True)


def test_no_batches_at_all(tmp_path):
    with pytest.raises(DataError, match="CIFAR-10 file not found: .*test_batch.*cs.toronto.edu"):
        load("cifar10", tmp_path, train=False)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"not a pickle", "not a readable python batch"),
        (pickle.dumps([1, 2, 3]), "lacks b'data' or b'labels'"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), r"shape \(2, 100\)"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "holds 2 images"),
        (pickle.dumps({b"data": [[0.5] * 3072], b"labels": [0]}), "not an array of integers"),
        (pickle.dumps({b"data": [[300] * 3072], b"labels": [0]}), "outside 0..255"),
    ],
    ids=["garbage", "list", "width", "count", "floats", "range"],
)
def test_malformed_python_batch(tmp_path, content, message):
    (tmp_path / "test_batch").write_bytes(content)
    with pytest.raises(DataError, match=f"test_batch.*{message}"):
        load("cifar10", tmp_path, train=False)
