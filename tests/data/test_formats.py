"""The registry, npz files, image folders, and the sets that need no files (digits, synthetic)."""
import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

import deepzip.data as data
from deepzip.data import Arrays, load, names, register
from deepzip.errors import ConfigError, DataError


def test_names():
    assert names() == ["cifar10", "digits", "fashion-mnist", "imagefolder", "mnist", "npz", "synthetic"]


def test_unknown_name_and_bad_limit():
    with pytest.raises(ConfigError, match="Unknown data set 'imagenet'; known data sets: cifar10, digits"):
        load("imagenet", train=True)
    with pytest.raises(ConfigError, match="limit must be at least 1 sample, not 0"):
        load("synthetic", train=True, limit=0)


def test_register_adds_a_loader(monkeypatch):
    monkeypatch.setitem(data._REGISTRY, "tiny", None)  # monkeypatch removes the entry afterwards
    x = np.array([[[[0, 255]]], [[[51, 102]]]], np.uint8)

    @register("tiny")
    def tiny(root, train):
        return Arrays(x, np.array([1, 0]), 2, (0.2,), (0.4,))

    assert "tiny" in names()
    got = load("tiny", train=True, limit=5)
    assert got.name == "tiny" and got.classes == 2 and got.y.tolist() == [1, 0]
    assert torch.allclose(got.x.flatten(), torch.tensor([-0.5, 2.0, 0.0, 0.5]))


def test_digits():
    train, test = load("digits", train=True), load("digits", train=False)
    assert train.x.shape == (1437, 1, 8, 8) and test.x.shape == (360, 1, 8, 8)
    assert train.classes == test.classes == 10
    assert torch.bincount(test.y, minlength=10).min() >= 33
    bunch = load_digits()
    assert test.y.tolist() == bunch.target[1437:].tolist()
    restored = (test.x[:, 0] * 0.3760 + 0.3053) * 16
    assert torch.allclose(restored, torch.from_numpy(bunch.images[1437:]).float(), atol=1e-4)


def test_synthetic_is_deterministic_balanced_and_learnable():
    train, test = load("synthetic", train=True), load("synthetic", train=False)
    assert train.x.shape == (2048, 1, 28, 28) and test.x.shape == (512, 1, 28, 28)
    assert train.classes == 10 and torch.bincount(train.y).tolist() == [205] * 8 + [204] * 2
    assert torch.equal(load("synthetic", train=True).x, train.x)
    assert abs(train.x.mean().item()) < 0.01 and abs(train.x.std().item() - 1) < 0.01
    # Nearest class mean, fitted on train, classifies test perfectly: the classes are learnable.
    means = torch.stack([train.x[train.y == c].mean(0) for c in range(10)]).flatten(1)
    predicted = torch.cdist(test.x.flatten(1), means).argmin(1)
    assert (predicted == test.y).float().mean().item() == 1.0


def test_npz_uint8_directory(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    y = np.array([0, 2, 1, 2, 0, 1])
    np.savez(tmp_path / "train.npz", x=x, y=y)
    np.savez(tmp_path / "test.npz", x=x[:2], y=y[:2], classes=np.array(4))
    train = load("npz", tmp_path, train=True)
    assert train.x.shape == (6, 1, 5, 4) and train.classes == 3 and train.y.tolist() == y.tolist()
    assert torch.allclose((train.x[:, 0] * 0.5 + 0.5) * 255, torch.from_numpy(x).float(), atol=1e-4)
    assert load("npz", tmp_path, train=False).classes == 4


def test_npz_float_file_is_used_as_stored(tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 2, 4, 4)).astype(np.float64)
    np.savez(tmp_path / "mine.npz", x=x, y=np.array([1, 1, 0], np.int32))
    got = load("npz", tmp_path / "mine.npz", train=False)
    assert got.x.dtype == torch.float32 and got.x.shape == (3, 2, 4, 4) and got.y.dtype == torch.int64
    assert torch.allclose(got.x, torch.from_numpy(x).float())


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((2, 3, 3), np.uint8)}, "lacks the array y"),
        ({"x": np.zeros((2, 3), np.float32), "y": np.zeros(2, int)}, r"x of shape \(2, 3\)"),
        ({"x": np.zeros((2, 1), np.int64)}, r"token ids x of shape \(2, 1\)"),
        ({"x": np.zeros((2, 4), np.int64), "y": np.zeros((2, 3), int)}, r"y of shape \(2, 3\)"),
        ({"x": np.zeros((2, 3, 3), np.int16), "y": np.zeros(2, int)}, "x of type int16"),
        ({"x": np.full((2, 3, 3), np.nan), "y": np.zeros(2, int)}, "NaN"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.zeros(3, int)}, r"y of shape \(3,\)"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, -1])}, "label -1 at sample 1"),
        ({"x": np.zeros((2, 3, 3), np.uint8), "y": np.array([0, 3]), "classes": np.array(3)}, "label 3"),
        ({"x": np.array([None, None]), "y": np.zeros(2, int)}, "cannot be read"),
    ],
    ids=["no-y", "x-2d", "tokens-short", "tokens-y-shape", "x-int16", "nan", "y-count", "negative", "over-classes", "object"],
)
def test_npz_malformed(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=f"bad.npz.*{message}"):
        load("npz", tmp_path / "bad.npz", train=True)


def test_npz_not_an_archive(tmp_path):
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(DataError, match="one.npy is a single .npy array"):
        load("npz", tmp_path / "one.npy", train=True)
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="junk.npz cannot be read"):
        load("npz", tmp_path / "junk.npz", train=True)
    with pytest.raises(DataError, match="npz file not found: .*test.npz"):
        load("npz", tmp_path, train=False)


def write_image(path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_imagefolder_grey(tmp_path):
    # Class folders sort as bird < cat < dog, so those are classes 0, 1, 2.
    for split, count in (("train", 2), ("test", 1)):
        for c, name in enumerate(["cat", "bird", "dog"]):
            for i in range(count):
                write_image(tmp_path / split / name / f"{i}.png", np.full((3, 5), 10 * c + i, np.uint8))
    train = load("imagefolder", tmp_path, train=True)
    assert train.x.shape == (6, 1, 3, 5) and train.classes == 3
    assert train.y.tolist() == [0, 0, 1, 1, 2, 2]
    values = ((train.x * 0.5 + 0.5) * 255).round()[:, 0, 0, 0].tolist()
    assert values == [10, 11, 0, 1, 20, 21]
    test = load("imagefolder", tmp_path, train=False)
    assert test.y.tolist() == [0, 1, 2] and test.classes == 3


def test_imagefolder_rgb_converts_to_first_image_mode(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    write_image(tmp_path / "train" / "a" / "x.png", rgb)
    write_image(tmp_path / "train" / "b" / "y.png", np.full((2, 2), 77, np.uint8))  # grey, made RGB
    write_image(tmp_path / "test" / "b" / "z.jpg", rgb)  # only class b: still label 1
    train = load("imagefolder", tmp_path, train=True)
    pixels = ((train.x * 0.5 + 0.5) * 255).round()
    assert train.x.shape == (2, 3, 2, 2)
    assert pixels[0, :, 1, 1].tolist() == [200, 100, 50] and pixels[1, :, 0, 0].tolist() == [77, 77, 77]
    test = load("imagefolder", tmp_path, train=False)
    assert test.y.tolist() == [1] and test.x.shape == (1, 3, 2, 2)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(DataError, match="Image folder not found: .*train"):
        load("imagefolder", tmp_path, train=True)
    write_image(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "train" / "a" / "1.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(DataError, match="1.png is 6×4 but .*0.png is 4×4"):
        load("imagefolder", tmp_path, train=True)
    (tmp_path / "train" / "a" / "1.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="1.png cannot be read"):
        load("imagefolder", tmp_path, train=True)
    write_image(tmp_path / "test" / "zebra" / "0.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError, match="zebra is a class that .*train lacks"):
        load("imagefolder", tmp_path, train=False)


def test_npz_token_ids_without_labels_are_a_next_token_task(tmp_path):
    ids = np.arange(24, dtype=np.int32).reshape(3, 8) % 11
    np.savez(tmp_path / "lm.npz", x=ids)
    got = load("npz", tmp_path / "lm.npz", train=True)
    assert got.x.dtype == torch.int64 and got.x.shape == (3, 7)
    assert torch.equal(got.y, torch.from_numpy(ids[:, 1:]).long())  # each position predicts the next id
    assert got.classes == 11


def test_npz_token_ids_with_labels_and_a_validation_split_of_their_own(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        np.savez(tmp_path / f"{split}.npz", x=np.ones((n, 5), np.int64), y=np.arange(n) % 2)
    from deepzip.data import load_validation

    val = load_validation("npz", tmp_path)
    assert len(val) == 2 and val.y.tolist() == [0, 1] and val.x.dtype == torch.int64
    assert load_validation("npz", tmp_path / "train.npz") is None  # a single file has no validation split
