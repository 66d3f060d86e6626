"""save → load round trips: exact weights, identical predictions, every encoding and coder."""
import json
import os

import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.data import Dataset
from deepzip.dzip import DzipReader


def _compressed(model, sparsity=0.8, bits=4):
    dz.prune_(model, sparsity=sparsity)
    dz.share_weights_(model, bits=bits)
    return model


@pytest.mark.parametrize("coder", ["huffman", "ans", "auto"])
def test_load_of_save_is_bit_identical(tmp_path, tiny_mlp, coder):
    model = _compressed(tiny_mlp)
    x = torch.randn(64, 1, 8, 8)
    expected = model(x)
    weights = {n: getattr(model, n).weight.detach().clone() for n in ("fc1", "fc2", "fc3")}
    dz.save(model, tmp_path / "m.dzip", coder=coder)
    back = dz.load(tmp_path / "m.dzip")
    for n, w in weights.items():
        assert torch.equal(getattr(back, n).weight, w)
    assert torch.equal(back(x), expected)
    assert torch.equal(back(x).argmax(1), expected.argmax(1))


def test_coders_are_recorded_per_stream(tmp_path, tiny_mlp):
    header = dz.save(_compressed(tiny_mlp), tmp_path / "m.dzip", coder="ans")
    coded = [s["coder"] for s in header["streams"] if s["coder"] != "raw"]
    assert coded and set(coded) == {"ans"}
    with DzipReader(tmp_path / "m.dzip") as r:
        assert [s["coder"] for s in r.streams] == [s["coder"] for s in header["streams"]]


def test_auto_is_never_larger_than_either_coder(tmp_path, tiny_mlp):
    model = _compressed(tiny_mlp)
    sizes = {c: dz.save(model, tmp_path / f"{c}.dzip", coder=c)["file_bytes"]
             for c in ("huffman", "ans", "context", "auto")}
    # auto decides per tensor and stream on payload bytes plus an estimate of each stream's header
    # entry; mixing coders costs deflate a few bytes of the header, never more
    assert sizes["auto"] <= min(sizes["huffman"], sizes["ans"], sizes["context"]) + 16, sizes


def test_pruned_unshared_and_plain_models_round_trip(tmp_path, tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.9)
    header = dz.save(tiny_mlp, tmp_path / "p.dzip")
    encodings = {e["name"]: e["encoding"] for e in header["tensors"]}
    assert encodings["fc1.weight"] == "sparse" and encodings["fc1.bias"] == "raw"
    back = dz.load(tmp_path / "p.dzip")
    assert torch.equal(back.fc1.weight, tiny_mlp.fc1.weight)
    plain = dz.create_model("lenet5", image_size=16)
    dz.save(plain, tmp_path / "d.dzip")
    again = dz.load(tmp_path / "d.dzip")
    for (n, a), (_, b) in zip(plain.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), n


def test_file_is_much_smaller_than_dense(tmp_path):
    model = dz.create_model("lenet300")
    _compressed(model, sparsity=0.95, bits=5)
    header = dz.save(model, tmp_path / "m.dzip")
    dense = 4 * sum(p.numel() for p in dz.create_model("lenet300").parameters())
    assert (tmp_path / "m.dzip").stat().st_size == header["file_bytes"]
    assert dense / header["file_bytes"] > 25  # random weights: no training, still 95 % sparse, 5 bits


def test_custom_module_needs_model_argument_and_reports_mismatches(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    model[1].running_mean.fill_(0.25)
    dz.save(model, tmp_path / "c.dzip")
    with pytest.raises(dz.ConfigError, match="model="):
        dz.load(tmp_path / "c.dzip")
    fresh = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 2))
    dz.load(tmp_path / "c.dzip", model=fresh)
    assert torch.equal(fresh[1].running_mean, model[1].running_mean)
    assert int(fresh[1].num_batches_tracked) == int(model[1].num_batches_tracked)
    with pytest.raises(dz.ModelMismatchError, match="2.weight"):
        dz.load(tmp_path / "c.dzip", model=nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)))
    with pytest.raises(dz.ModelMismatchError, match=r"\[2, 5\] in the file but \[3, 5\]"):
        dz.load(tmp_path / "c.dzip", model=nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)))


def test_tied_parameters_are_stored_once(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(50, 16)
            self.out = nn.Linear(16, 50, bias=False)
            self.out.weight = self.emb.weight

        def forward(self, i):
            return self.out(self.emb(i))

    m = Tied()
    header = dz.save(m, tmp_path / "t.dzip")
    aliases = [e for e in header["tensors"] if "alias" in e]
    assert aliases == [{"name": "out.weight", "alias": "emb.weight"}]
    fresh = Tied()
    dz.load(tmp_path / "t.dzip", model=fresh)
    assert torch.equal(fresh.out.weight, m.emb.weight) and fresh.out.weight is fresh.emb.weight


def test_header_records_arch_and_metadata(tmp_path, tiny_mlp):
    dz.save(tiny_mlp, tmp_path / "m.dzip", metadata={"accuracy": {"dense": 90.0}})
    info = dz.inspect(tmp_path / "m.dzip")
    assert info["arch"] == {"name": "lenet300", "kwargs": {"in_channels": 1, "image_size": 8, "classes": 4}}
    assert info["meta"]["accuracy"] == {"dense": 90.0}
    assert info["parameters"] == sum(p.numel() for p in tiny_mlp.parameters())
    json.dumps(info)  # JSON-able, for `deepzip inspect --json`


def test_bad_save_arguments(tmp_path, tiny_mlp):
    with pytest.raises(dz.ConfigError, match="coder"):
        dz.save(tiny_mlp, tmp_path / "m.dzip", coder="zip")
    with pytest.raises(dz.ConfigError, match="index_bits must be a whole number from 1 to 16"):
        dz.save(tiny_mlp, tmp_path / "m.dzip", index_bits=0)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


def test_half_representable_tensors_are_stored_in_half_the_bytes(tmp_path, tiny_mlp):
    plain = dz.save(tiny_mlp, tmp_path / "a.dzip", coder="ans")  # float32 stored as it is
    split = dz.save(tiny_mlp, tmp_path / "s.dzip", coder="auto")  # signs and exponents context coded
    dz.round_(tiny_mlp)
    rounded = dz.save(tiny_mlp, tmp_path / "b.dzip", coder="ans")
    biases = 300 + 100 + 4
    assert plain["file_bytes"] - rounded["file_bytes"] >= 2 * biases - 64  # header noise aside
    assert {e["name"] for e in split["tensors"] if e.get("split")} >= {"fc1.bias", "fc2.bias"}
    assert split["file_bytes"] < plain["file_bytes"] - 0.08 * 4 * 400  # at least 8 % off the biases' bytes
    back = dz.load(tmp_path / "b.dzip")
    assert torch.equal(back.fc1.bias, tiny_mlp.fc1.bias) and back.fc1.bias.dtype == torch.float32
    assert not torch.equal(back.fc1.weight.half().float(), back.fc1.weight)  # weights were not rounded


def test_saved_file_has_ordinary_permissions(tmp_path, tiny_mlp):
    import os

    mask = os.umask(0)
    os.umask(mask)
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    assert (tmp_path / "m.dzip").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_fully_pruned_layer_round_trips(tmp_path, tiny_mlp):
    dz.prune_(tiny_mlp, sparsity={"fc3": 1.0, "fc2": 0.5})
    assert int((tiny_mlp.fc3.weight != 0).sum()) == 0
    dz.share_weights_(tiny_mlp, bits=3)
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    back = dz.load(tmp_path / "m.dzip")
    assert torch.equal(back.fc3.weight, torch.zeros_like(back.fc3.weight))
    assert torch.equal(back.fc2.weight, tiny_mlp.fc2.weight)


def test_failed_load_leaves_the_callers_model_untouched(tmp_path, tiny_mlp):
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    other = dz.create_model("lenet300", image_size=8, classes=5)
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(dz.ModelMismatchError, match="fc3.weight"):
        dz.load(tmp_path / "m.dzip", model=other)
    assert all(torch.equal(v, before[k]) for k, v in other.state_dict().items())


def test_unstorable_tensors_are_refused_at_save(tmp_path):
    m = nn.Linear(3, 3)
    m.register_buffer("phase", torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(dz.ConfigError, match="complex64"):
        dz.save(m, tmp_path / "m.dzip")
    assert list(tmp_path.iterdir()) == []


def test_sparse_tensors_store_half_representable_values_as_float16(tmp_path):
    model = nn.Sequential(nn.Linear(4, 1000))
    with torch.no_grad():
        model[0].bias.zero_()
        model[0].bias[::10] = torch.randn(100).half().float()
    dz.save(model, tmp_path / "half.dzip")
    with torch.no_grad():
        model[0].bias[5] = 1 / 3  # not a float16 value: the whole tensor stays float32
    dz.save(model, tmp_path / "full.dzip")
    entries = {p.stem: {e["name"]: e for e in DzipReader(p).header["tensors"]} for p in tmp_path.glob("*.dzip")}
    half, full = entries["half"]["0.bias"], entries["full"]["0.bias"]
    assert half["encoding"] == full["encoding"] == "sparse"
    assert half["stored"] == "float16" and "stored" not in full
    back = dz.load(tmp_path / "full.dzip", model=nn.Sequential(nn.Linear(4, 1000)))
    assert torch.equal(back[0].bias, model[0].bias)
    model[0].bias.data[5] = 0
    back = dz.load(tmp_path / "half.dzip", model=nn.Sequential(nn.Linear(4, 1000)))
    assert torch.equal(back[0].bias, model[0].bias)


@pytest.mark.parametrize("share", [True, False])
def test_live_rows_and_columns_round_trip_and_shrink_the_file(tmp_path, share):
    model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.Flatten(), nn.Linear(64 * 4 * 4, 50))
    dz.prune_units_(model, {"0": 0.5, "2": 0.75, "4": 0.4})
    x = torch.randn(16, 3, 8, 8)
    dz.prune_dead_inputs_(model, Dataset(x, torch.zeros(16, dtype=torch.long), classes=1, name="x"))
    dz.prune_(model, sparsity=0.9)
    if share:
        dz.share_weights_(model, bits=4)
    # The context coder needs no live layout (its column and row contexts learn dead ones), so
    # the layout is tested with the coders that do.
    header = dz.save(model, tmp_path / "m.dzip", index_bits="auto", coder="ans")
    entries = {e["name"]: e for e in header["tensors"]}
    assert all("rows" in entries[f"{i}.weight"] for i in (2, 4))
    template = lambda: nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.Flatten(),  # noqa: E731
                                     nn.Linear(64 * 4 * 4, 50))
    back = dz.load(tmp_path / "m.dzip", model=template())
    with torch.no_grad():
        model(x)  # refreshes shared layers' weights from their centroids
    for i in (0, 2, 4):
        assert torch.equal(back[i].weight, model[i].weight) and torch.equal(back[i].bias, model[i].bias)
    assert torch.equal(back(x), model(x))
    fast = dz.load(tmp_path / "m.dzip", model=template(), runtime="sparse")
    torch.testing.assert_close(fast(x), back(x), rtol=1e-5, atol=1e-5)
    # the same tensors without the live layout: strictly larger
    from deepzip.dzip import write as store

    choices = store._live_choices
    store._live_choices = lambda a: iter([next(choices(a))])
    try:
        plain = dz.save(model, tmp_path / "plain.dzip", index_bits="auto", coder="ans")
    finally:
        store._live_choices = choices
    assert plain["file_bytes"] > header["file_bytes"]
    if share:  # and the context coder over the live submatrix alone reads back the same weights
        store._live_choices = lambda a: iter(list(choices(a))[-1:])
        try:
            header = dz.save(model, tmp_path / "ctx.dzip", coder="context")
        finally:
            store._live_choices = choices
        entries = {e["name"]: e for e in header["tensors"]}
        assert all("rows" in entries[f"{i}.weight"] and entries[f"{i}.weight"]["positions"] == "context" for i in (2, 4))
        ctx = dz.load(tmp_path / "ctx.dzip", model=template())
        for i in (0, 2, 4):
            assert torch.equal(ctx[i].weight, model[i].weight)


def test_an_unmasked_tensor_of_negative_zeros_keeps_their_sign(tmp_path):
    layer = nn.Linear(32, 32)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:8] = torch.randn(8, 32)
        layer.weight[8:16] = -0.0
    dz.save(layer, tmp_path / "z.dzip")
    back = dz.load(tmp_path / "z.dzip", model=nn.Linear(32, 32))
    assert torch.equal(torch.signbit(back.weight), torch.signbit(layer.weight))
    # a tensor of +0.0 zeros is still stored sparse
    with torch.no_grad():
        layer.weight[8:16] = 0.0
    header = dz.save(layer, tmp_path / "p.dzip")
    assert next(e for e in header["tensors"] if e["name"] == "weight")["encoding"] == "sparse"


def test_a_large_layer_tries_left_contexts_only_where_its_first_rows_gain():
    import numpy as np

    from deepzip.dzip.write import _LEFT_SAMPLE, _left_may_pay

    rng = np.random.default_rng(0)
    rows, cols = 300, 4000
    assert rows * cols > _LEFT_SAMPLE  # large enough to be judged by its first rows
    sign = np.repeat(rng.random((rows, cols // 20)) < 0.5, 20, axis=1)  # neighbouring inputs share sign
    grid = np.where(sign, rng.integers(1, 16, (rows, cols)), rng.integers(16, 32, (rows, cols)))
    grid = np.where(rng.random((rows, cols)) < 0.5, grid, 0).astype(np.uint8)
    assert _left_may_pay(grid, 32)
    assert not _left_may_pay(grid[:, rng.permutation(cols)], 32)  # unordered inputs: coded once
    assert _left_may_pay(grid[:10, rng.permutation(cols)], 32)  # a small layer always tries both


def test_a_killed_save_leaves_nothing_behind_for_good(tmp_path, tiny_mlp):
    """The payload spool is an anonymous file (nothing in the directory even while a save runs),
    and the next save of a name removes the temporary a killed one left (its process is gone)."""
    from deepzip.dzip import DzipWriter

    with DzipWriter(tmp_path / "m.dzip") as w:
        w.add(b"\x00" * 64, {"coder": "raw"})
        assert [p.name for p in tmp_path.iterdir()] == []
    dead = 2**22 + 12345  # above Linux's default pid_max: no process has it
    stale = tmp_path / f".m.dzip.{dead}.x1y2.tmp"
    stale.write_bytes(b"half a file")
    alive = tmp_path / f".m.dzip.{os.getpid()}.z3.tmp"  # a write in progress (this process) stays
    alive.write_bytes(b"")
    dz.save(tiny_mlp, tmp_path / "m.dzip")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.dzip", alive.name])
