"""The sparse runtime: same outputs as the densely decoded model, no dense weight anywhere."""
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip import runtime as rt
from deepzip.runtime import SparseConv2d, SparseLinear, resident_weight_bytes


def _rel_close(a, b, tol=1e-5):
    assert (a - b).abs().max() <= tol * b.abs().max()


def test_lenet300_sparse_matches_dense_and_is_small(tmp_path):
    model = dz.create_model("lenet300")
    dz.prune_(model, sparsity={"fc1": 0.95, "fc2": 0.9, "fc3": 0.7})
    dz.share_weights_(model, bits=5)
    dz.save(model, tmp_path / "m.dzip")
    dense = dz.load(tmp_path / "m.dzip")
    fast = dz.load(tmp_path / "m.dzip", runtime="sparse")
    assert isinstance(fast.fc1, SparseLinear) and isinstance(fast.fc2, SparseLinear)
    assert isinstance(fast.fc3, nn.Linear)  # 1,000 weights: below the size where sparse pays
    assert fast.fc1.weight.layout == torch.sparse_csr
    assert fast.deepzip_runtime["fc1.weight"].startswith("sparse") and fast.deepzip_runtime["fc3.weight"].startswith("dense")
    assert fast.fc1.weight.values().numel() == int((dense.fc1.weight != 0).sum())
    for batch in (1, 64):
        x = torch.randn(batch, 1, 28, 28)
        _rel_close(fast(x), dense(x))
    assert resident_weight_bytes(fast) <= 0.15 * resident_weight_bytes(dense)


class Convs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 32, 3, stride=2, padding=1)
        self.b = nn.Conv2d(32, 32, 3, padding=2, dilation=2, groups=2, bias=False)
        self.c = nn.Conv2d(32, 32, 3, padding=1, groups=32)  # depthwise
        self.d = nn.Conv2d(32, 16, (3, 1), stride=(1, 2), padding=(1, 0))
        self.fc = nn.Linear(16 * 8 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x))
        x = torch.relu(self.c(x))
        return self.fc(torch.relu(self.d(x)).flatten(1))


@pytest.mark.parametrize("share", [False, True])
def test_conv_stride_padding_groups_dilation_match_dense(tmp_path, monkeypatch, share):
    monkeypatch.setattr(rt, "MIN_WEIGHTS", 0)  # force every layer, the depthwise one too, onto the sparse path
    monkeypatch.setattr(rt, "MAX_DENSITY", 1.0)
    model = Convs()
    dz.prune_(model, sparsity=0.8)
    if share:
        dz.share_weights_(model, bits=6)
    dz.save(model, tmp_path / "c.dzip")
    dense = dz.load(tmp_path / "c.dzip", model=Convs())
    fast = dz.load(tmp_path / "c.dzip", model=Convs(), runtime="sparse")
    assert all(isinstance(getattr(fast, n), SparseConv2d) for n in "abcd")
    x = torch.randn(3, 4, 16, 16)
    _rel_close(fast(x), dense(x))


def test_dense_layers_stay_dense_and_choice_is_reported(tmp_path):
    model = dz.create_model("lenet300")
    dz.prune_(model, sparsity={"fc1": 0.5, "fc2": 0.95})
    dz.save(model, tmp_path / "m.dzip")
    fast = dz.load(tmp_path / "m.dzip", runtime="sparse")
    assert isinstance(fast.fc1, nn.Linear) and isinstance(fast.fc2, SparseLinear)
    rows = {r["layer"]: r for r in dz.inspect(tmp_path / "m.dzip")["layers"]}
    assert rows["fc1.weight"]["runtime"] == "dense" and "density 0.50 > 0.1" in rows["fc1.weight"]["runtime_reason"]
    assert rows["fc2.weight"]["runtime"] == "sparse"


def test_unknown_runtime_is_refused(tmp_path, tiny_mlp):
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    with pytest.raises(dz.ConfigError, match="runtime"):
        dz.load(tmp_path / "m.dzip", runtime="fast")


@pytest.mark.parametrize("name, sparsity", [
    ("lenet300", {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7}),
    ("lenet5", {"conv1": 0.4, "conv2": 0.92, "fc1": 0.96, "fc2": 0.8}),
])
def test_sparse_equals_dense_on_real_images(tmp_path, monkeypatch, name, sparsity):
    from deepzip.data import load as load_data

    monkeypatch.setattr(rt, "MIN_WEIGHTS", 0)
    digits = load_data("digits", train=False)  # real handwriting, shipped with scikit-learn
    x = torch.nn.functional.interpolate(digits.x, size=(28, 28), mode="bilinear", align_corners=False)
    model = dz.create_model(name)
    dz.prune_(model, sparsity=sparsity)
    dz.share_weights_(model)
    dz.save(model, tmp_path / "m.dzip")
    dense, fast = dz.load(tmp_path / "m.dzip"), dz.load(tmp_path / "m.dzip", runtime="sparse")
    assert any(isinstance(m, (SparseLinear, SparseConv2d)) for m in fast.modules())
    with torch.no_grad():
        _rel_close(fast(x), dense(x))
        assert torch.equal(fast(x).argmax(1), dense(x).argmax(1))


def test_sparse_runtime_checks_the_model_and_falls_back_where_it_must(tmp_path):
    layer = nn.Linear(784, 300)
    dz.prune_(layer, sparsity=0.95)
    dz.save(layer, tmp_path / "l.dzip")
    with pytest.raises(dz.ModelMismatchError, match="weight"):
        dz.load(tmp_path / "l.dzip", model=nn.Linear(1568, 300), runtime="sparse")
    conv = nn.Sequential(nn.Conv2d(8, 64, 3, padding="same"))
    dz.prune_(conv, sparsity=0.95)
    dz.save(conv, tmp_path / "c.dzip")
    fast = dz.load(tmp_path / "c.dzip", model=nn.Sequential(nn.Conv2d(8, 64, 3, padding="same")), runtime="sparse")
    assert isinstance(fast[0], nn.Conv2d) and "padding" in fast.deepzip_runtime["0.weight"]
    x = torch.randn(2, 8, 10, 10)
    assert torch.equal(fast(x), conv(x))
