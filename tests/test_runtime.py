"""The runtimes that never densify: same outputs as the decoded model, no dense weight anywhere."""
import numpy as np
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip import runtime as rt
from deepzip.runtime import CodebookConv2d, CodebookLinear, SparseConv2d, SparseLinear, resident_weight_bytes
from deepzip.runtime.codebook import pack


def _rel_close(a, b, tol=1e-5):
    assert (a - b).abs().max() <= tol * max(b.abs().max(), 1e-12)


def _codes(rows, cols, density, k=31, seed=0):
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((rows, cols)) < density, rng.integers(1, k + 1, (rows, cols)), 0)
    table = np.concatenate([[0.0], rng.normal(0, 0.1, k)]).astype(np.float32)
    return codes, table


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 300), (300, 784), (33, 1000)])
@pytest.mark.parametrize("density", [0.0, 0.001, 0.05, 0.5, 0.999])
@pytest.mark.parametrize("batch", [1, 7, 64, 150])
def test_the_codebook_linear_kernel_equals_the_dense_product(shape, density, batch):
    rows, cols = shape
    codes, table = _codes(rows, cols, density, seed=rows * cols + batch)
    codes[: rows // 3] = 0  # empty rows
    positions = np.flatnonzero(codes)
    dense = nn.Linear(cols, rows)
    dense.weight.data = torch.from_numpy(table[codes])
    layer = CodebookLinear(dense, positions, codes.ravel()[positions], table, dense.bias.data)
    x = torch.randn(batch, cols)
    with torch.no_grad():
        _rel_close(layer(x), dense(x))
    assert layer.weight.nnz == positions.size


def test_codebook_layers_hold_three_bytes_a_weight_and_no_dense_matrix():
    codes, table = _codes(1024, 1024, 0.05)
    positions = np.flatnonzero(codes)
    layer = CodebookLinear(nn.Linear(1024, 1024), positions, codes.ravel()[positions], table, None)
    held = [t for t in layer.buffers()]
    assert max(t.numel() for t in held) == positions.size  # nothing of the matrix's 1,048,576 elements
    assert layer.weight.cols.dtype == torch.uint16 and layer.weight.codes.dtype == torch.uint8
    assert resident_weight_bytes(layer) <= 3.0 * positions.size + 8 * 1025 + 4 * 32
    wide = pack(np.array([0, 70_000]), np.array([1, 300]), 1, 70_001)  # past uint16 columns and uint8 codes
    assert wide["cols"].dtype == torch.int32 and wide["codes"].dtype == torch.uint16


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


@pytest.mark.parametrize("runtime, share", [("csr", False), ("csr", True), ("codebook", True)])
@pytest.mark.parametrize("batch", [1, 3])
def test_conv_stride_padding_groups_dilation_match_dense(tmp_path, runtime, share, batch):
    model = Convs()
    dz.prune_(model, sparsity=0.8)
    if share:
        dz.share_weights_(model, bits=6)
    dz.save(model, tmp_path / "c.dzip")
    dense = dz.load(tmp_path / "c.dzip", model=Convs())
    fast = dz.load(tmp_path / "c.dzip", model=Convs(), runtime=runtime)
    kind = CodebookConv2d if runtime == "codebook" else SparseConv2d
    assert all(isinstance(getattr(fast, n), kind) for n in "abcd")
    x = torch.randn(batch, 4, 16, 16)
    with torch.no_grad():
        _rel_close(fast(x), dense(x))


def test_the_rule_picks_by_size_and_density_and_inspect_reports_it(tmp_path):
    def pick(numel, density, encoding="shared"):
        return rt.choose(layer="Linear", name="x.weight", numel=numel, nonzero=int(numel * density),
                         encoding=encoding)[0]

    assert pick(4096 * 4096, 0.1) == "codebook" and pick(4096 * 4096, 0.1, "sparse") == "csr"
    assert pick(4096 * 4096, 0.3) == "dense"
    assert pick(1024 * 1024, 0.05) == "csr" and pick(1024 * 1024, 0.1) == "dense"
    assert pick(784 * 300, 0.01) == "dense"  # small layers: a sparse call costs more than it saves
    assert rt.choose(layer="Conv2d", name="c.bias", numel=64, nonzero=64, encoding="raw")[0] == "dense"
    model = dz.create_model("lenet300")
    dz.prune_(model, sparsity=0.95)
    dz.save(model, tmp_path / "m.dzip")
    rows = {r["layer"]: r for r in dz.inspect(tmp_path / "m.dzip")["layers"]}
    assert rows["fc1.weight"]["runtime"] == "dense" and "weights <" in rows["fc1.weight"]["runtime_reason"]


def test_unknown_runtime_is_refused(tmp_path, tiny_mlp):
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    with pytest.raises(dz.ConfigError, match="runtime"):
        dz.load(tmp_path / "m.dzip", runtime="fast")


@pytest.mark.parametrize("runtime", ["csr", "codebook"])
@pytest.mark.parametrize("name, sparsity", [
    ("lenet300", {"fc1": 0.95, "fc2": 0.9, "fc3": 0.7}),
    ("lenet5", {"conv1": 0.4, "conv2": 0.92, "fc1": 0.96, "fc2": 0.8}),
])
def test_forced_runtimes_equal_dense_on_real_images(tmp_path, runtime, name, sparsity):
    from deepzip.data import load as load_data

    digits = load_data("digits", train=False)  # real handwriting, shipped with scikit-learn
    x = torch.nn.functional.interpolate(digits.x, size=(28, 28), mode="bilinear", align_corners=False)
    model = dz.create_model(name)
    dz.prune_(model, sparsity=sparsity)
    dz.share_weights_(model)
    dz.save(model, tmp_path / "m.dzip")
    dense, fast = dz.load(tmp_path / "m.dzip"), dz.load(tmp_path / "m.dzip", runtime=runtime)
    kinds = (CodebookLinear, CodebookConv2d) if runtime == "codebook" else (SparseLinear, SparseConv2d)
    assert sum(isinstance(m, kinds) for m in fast.modules()) == len(sparsity)
    assert all(v.startswith(runtime) for k, v in fast.deepzip_runtime.items() if k.endswith("weight"))
    with torch.no_grad():
        _rel_close(fast(x), dense(x))
        assert torch.equal(fast(x).argmax(1), dense(x).argmax(1))
    assert resident_weight_bytes(fast) <= 0.15 * resident_weight_bytes(dense)


def test_sparse_runtime_checks_the_model_and_falls_back_where_it_must(tmp_path):
    layer = nn.Linear(784, 300)
    dz.prune_(layer, sparsity=0.95)
    dz.save(layer, tmp_path / "l.dzip")
    with pytest.raises(dz.ModelMismatchError, match="weight"):
        dz.load(tmp_path / "l.dzip", model=nn.Linear(1568, 300), runtime="csr")
    conv = nn.Sequential(nn.Conv2d(8, 64, 3, padding="same"))
    dz.prune_(conv, sparsity=0.95)
    dz.save(conv, tmp_path / "c.dzip")
    fast = dz.load(tmp_path / "c.dzip", model=nn.Sequential(nn.Conv2d(8, 64, 3, padding="same")), runtime="csr")
    assert isinstance(fast[0], nn.Conv2d) and "padding" in fast.deepzip_runtime["0.weight"]
    x = torch.randn(2, 8, 10, 10)
    assert torch.equal(fast(x), conv(x))
