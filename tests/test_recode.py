"""recode: the same weights, coded again; auto never loses to a single coder."""
import os

import pytest
import torch
from typer.testing import CliRunner

import deepzip as dz
from deepzip.cli import app
from deepzip.dzip import DzipReader

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _state(path):
    return dz.load(path).state_dict()


def _same(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    torch.manual_seed(3)
    model = dz.create_model("lenet300", image_size=14, classes=10)
    dz.prune_units_(model, {"fc1": 0.3})
    dz.prune_(model, sparsity={"fc1": 0.92, "fc2": 0.85, "fc3": 0.5})
    dz.share_weights_(model, bits={"fc1": 5, "fc2": 4, "fc3": 3})
    path = tmp_path_factory.mktemp("r") / "m.dzip"
    dz.save(model, path, coder="huffman", metadata={"accuracy": {"dense": 50.0}})
    return path


def test_a_version_1_file_becomes_version_3_with_the_same_weights(tmp_path):
    src = os.path.join(FIXTURES, "v1-lenet300-ans.dzip")
    header = dz.recode(src, tmp_path / "new.dzip")
    with DzipReader(tmp_path / "new.dzip") as r:
        assert r.version == 3 and all("crc32" not in s and "table" not in s for s in r.header["streams"])
    _same(_state(src), _state(tmp_path / "new.dzip"))
    assert header["file_bytes"] < os.path.getsize(src)


def test_every_coder_gives_the_same_weights_and_auto_the_smallest(tmp_path, compressed):
    sizes = {}
    for coder in ("huffman", "ans", "context", "auto"):
        sizes[coder] = dz.recode(compressed, tmp_path / f"{coder}.dzip", coder=coder)["file_bytes"]
        _same(_state(compressed), _state(tmp_path / f"{coder}.dzip"))
    # auto chooses per layer and stream on estimated header bytes: within a few bytes of the best
    assert sizes["auto"] <= min(sizes["huffman"], sizes["ans"], sizes["context"]) + 8, sizes
    assert sizes["context"] < sizes["huffman"], sizes
    with DzipReader(tmp_path / "context.dzip") as r:
        kinds = {e["name"]: e.get("positions") for e in r.header["tensors"] if e["encoding"] == "shared"}
        assert set(kinds.values()) == {"context"}
        assert r.header["meta"]["accuracy"] == {"dense": 50.0}  # the old file's metadata is kept


def test_recode_in_place_and_from_the_command_line(tmp_path, compressed):
    path = tmp_path / "m.dzip"
    path.write_bytes(compressed.read_bytes())
    result = CliRunner().invoke(app, ["recode", str(path), "--out", str(path), "--coder", "context"])
    assert result.exit_code == 0, result.output
    assert "same weights" in result.output and f"{os.path.getsize(compressed):,} before" in result.output
    _same(_state(compressed), _state(path))


def test_tied_compressed_weights_are_refused_before_anything_is_written(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(16, 16)
            self.b = torch.nn.Linear(16, 16)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    torch.manual_seed(0)
    model = Tied()
    dz.prune_(model, sparsity=0.5)
    dz.save(model, tmp_path / "t.dzip")
    with pytest.raises(dz.ConfigError, match="tied"):
        dz.recode(tmp_path / "t.dzip", tmp_path / "out.dzip", model=Tied())
    assert not (tmp_path / "out.dzip").exists()


def test_buffers_and_frozen_weights_stored_sparse_recode_too(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(32, 32)
            self.register_buffer("table", torch.zeros(400))

        def forward(self, x):
            return self.fc(x)

    torch.manual_seed(0)
    model = Net()
    model.table[:50] = torch.randn(50)
    with torch.no_grad():
        model.fc.weight[model.fc.weight.abs() < 0.15] = 0  # mostly zero: stored sparse
    model.fc.weight.requires_grad_(False)
    dz.save(model, tmp_path / "n.dzip")
    mine = Net()
    dz.recode(tmp_path / "n.dzip", tmp_path / "r.dzip", model=mine)
    assert not torch.nn.utils.parametrize.is_parametrized(mine.fc)  # the caller's module is left plain
    back = dz.load(tmp_path / "r.dzip", model=Net())
    assert torch.equal(back.table, model.table) and torch.equal(back.fc.weight, model.fc.weight)
