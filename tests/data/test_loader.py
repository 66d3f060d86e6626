"""Batches: every sample once per epoch, batch sizes, and orders reproducible from a seed."""
import pytest
import torch

from deepzip.data import Dataset
from deepzip.data.loader import Batches
from deepzip.errors import ConfigError


def numbered(n: int) -> Dataset:
    """A set whose sample i has pixel value i and label i, so a batch shows which samples it holds."""
    return Dataset(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.arange(n), n, "numbered")


def epoch(batches: Batches) -> list[int]:
    seen = []
    for x, y in batches:
        assert torch.equal(x.view(-1).long(), y)  # images stay with their labels
        seen += y.tolist()
    return seen


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_per_epoch(shuffle):
    batches = Batches(numbered(10), 4, shuffle=shuffle, seed=0)
    assert len(batches) == 3
    assert [len(y) for _, y in batches] == [4, 4, 2]
    for _ in range(3):
        assert sorted(epoch(batches)) == list(range(10))


def test_in_order_without_shuffle():
    assert epoch(Batches(numbered(7), 3)) == list(range(7))
    assert len(Batches(numbered(6), 3)) == 2 and len(Batches(numbered(6), 10)) == 1


def test_same_seed_same_orders():
    a = Batches(numbered(50), 8, shuffle=True, seed=3)
    b = Batches(numbered(50), 8, shuffle=True, seed=3)
    orders_a = [epoch(a) for _ in range(3)]
    orders_b = [epoch(b) for _ in range(3)]
    assert orders_a == orders_b
    assert orders_a[0] != orders_a[1] != orders_a[2]  # a fresh order each epoch
    assert orders_a[0] != list(range(50))
    assert epoch(Batches(numbered(50), 8, shuffle=True, seed=4)) != orders_a[0]


def test_without_seed_follows_torch_manual_seed():
    torch.manual_seed(0)
    first = epoch(Batches(numbered(30), 7, shuffle=True))
    torch.manual_seed(0)
    assert epoch(Batches(numbered(30), 7, shuffle=True)) == first


def test_bad_batch_size():
    with pytest.raises(ConfigError, match="batch_size must be at least 1, not 0"):
        Batches(numbered(3), 0)


def test_resize_to_32_pixels():
    from deepzip.data import load

    small = load("synthetic", train=False, limit=8)
    big = load("synthetic", train=False, limit=8, size=32)
    assert big.x.shape == (8, small.x.shape[1], 32, 32) and torch.equal(big.y, small.y)
    assert abs(float(big.x.mean() - small.x.mean())) < 0.05  # bilinear keeps the intensity
