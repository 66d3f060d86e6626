"""bench/baseline.py: the stock-parts Deep Compression that the compression benchmark compares against."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("dahuffman")  # a bench extra, not a dependency of deepzip
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from baseline import relative_index, stock_compress, stock_load  # noqa: E402

from deepzip import data, models  # noqa: E402
from deepzip.train import evaluate  # noqa: E402

BITS = {"linear": 5, "conv": 8}


def _weights(model):
    return {name: m.weight.detach() for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))}


# lenet5 covers conv layers: 8-bit ids and index, and conv1 has fewer nonzeros than 2^8 clusters.
@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_stock_compress_writes_a_file_that_decodes_to_the_quantized_weights(arch, tmp_path):
    train_set = data.load("synthetic", train=True, limit=512)
    test_set = data.load("synthetic", train=False, limit=256)
    model = models.create(arch, in_channels=1, image_size=28, classes=10)
    path = tmp_path / "stock.npz"
    result = stock_compress(model, train_set, test_set, sparsity=0.9, steps=2, retrain_epochs=0.25, lr=1e-3,
                            bits=BITS, out_path=path)

    assert path.stat().st_size == result["file_bytes"]
    reloaded = stock_load(path, models.create(arch, in_channels=1, image_size=28, classes=10))
    for key, value in model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[key], value), key
    assert evaluate(reloaded, test_set) == result["accuracy"]

    weights = _weights(model)
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros / sum(w.numel() for w in weights.values()) == pytest.approx(0.9, abs=1e-4)
    for name, w in weights.items():
        kind = "conv" if w.dim() == 4 else "linear"
        assert len(torch.unique(w[w != 0])) <= 2 ** BITS[kind], name


def test_relative_index_adds_fillers_for_long_gaps():
    flat = np.zeros(100)
    flat[[3, 40, 99]] = 1  # gaps of 3, 36 and 58 zeros; a 5-bit index holds at most 31
    gaps, ids = relative_index(np.flatnonzero(flat), np.array([1, 2, 3]), index_bits=5)
    assert gaps.tolist() == [3, 31, 4, 31, 26]
    assert ids.tolist() == [1, 0, 2, 0, 3]
    assert (np.cumsum(gaps + 1) - 1)[ids > 0].tolist() == [3, 40, 99]
