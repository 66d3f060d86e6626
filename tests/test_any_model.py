"""Every weight matrix of the models users bring is compressed: attention, recurrent, tied, unknown."""
import warnings

import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.reparam import is_shared
from deepzip.selection import unselected, weights


class TinyTransformer(nn.Module):
    """Embedding, two encoder layers, an output layer tied to the embedding."""

    def __init__(self, vocab=300, d=64):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        layer = nn.TransformerEncoderLayer(d, 4, 4 * d, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens):
        return self.out(self.encoder(self.embed(tokens)))


class LSTMTagger(nn.Module):
    def __init__(self, vocab=300, d=48, tags=12):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, d, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * d, tags)

    def forward(self, tokens):
        return self.head(self.lstm(self.embed(tokens))[0])


class GRUModel(nn.Module):
    def __init__(self, features=16, d=96, classes=5):
        super().__init__()
        self.gru = nn.GRU(features, d, batch_first=True)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        return self.head(self.gru(x)[0][:, -1])


def _batch(model):
    torch.manual_seed(1)
    if isinstance(model, GRUModel):
        return torch.randn(8, 10, 16), torch.randint(0, 5, (8,))
    tokens = torch.randint(0, 300, (8, 10))
    classes = 300 if isinstance(model, TinyTransformer) else 12
    return tokens, torch.randint(0, classes, (8, 10))


def _loss(model, x, y):
    out = model(x)
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))


@pytest.mark.parametrize("make", [TinyTransformer, LSTMTagger, GRUModel], ids=lambda f: f.__name__)
def test_prune_share_train_save_load_with_every_matrix_compressed(tmp_path, make):
    model = make()
    matrices = {w.name for w in weights(model)}
    assert matrices and not unselected(model)  # every weight matrix is one deepzip compresses
    dz.prune_(model, sparsity=0.9)
    dz.share_weights_(model, bits=4)
    zeros = {w.name: (w.value == 0).clone() for w in weights(model)}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batch(model)
    for _ in range(20):  # masks and codebooks survive any number of steps
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.step()
    for w in weights(model):
        assert is_shared(w.module, w.param), w.name
        assert torch.equal(w.value == 0, zeros[w.name]), w.name
        assert torch.unique(w.value[w.value != 0]).numel() <= 15, w.name
    with warnings.catch_warnings():
        warnings.simplefilter("error", dz.DeepzipWarning)  # nothing is left uncompressed
        header = dz.save(model, tmp_path / "m.dzip")
    dense_bytes = 4 * sum(p.numel() for p in make().state_dict().values())
    assert dense_bytes / header["file_bytes"] >= 10
    back = dz.load(tmp_path / "m.dzip", model=make())
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=1e-5, atol=1e-5)
        assert torch.equal(back(x).argmax(-1), model(x).argmax(-1))
    assert dz.sparsity_of(back)["total"] == pytest.approx(0.9, abs=0.01)


def test_attention_and_recurrent_weights_are_selected_by_kind():
    model = TinyTransformer()
    kinds = {w.name: w.kind for w in weights(model)}
    assert kinds["encoder.layers.0.self_attn.in_proj_weight"] == "attention"
    assert kinds["encoder.layers.1.self_attn.out_proj.weight"] == "linear"
    assert {w.name for w in weights(LSTMTagger()) if w.kind == "recurrent"} == {
        f"lstm.weight_{g}_l{layer}{r}" for g in ("ih", "hh") for layer in (0, 1) for r in ("", "_reverse")}
    dz.prune_(model, sparsity={"attention": 0.5, "default": 0.0})
    assert dz.sparsity_of(model)["encoder.layers.0.self_attn.in_proj_weight"] == pytest.approx(0.5)
    assert dz.sparsity_of(model)["encoder.layers.0.linear1"] == 0


class Conv1D(nn.Module):
    """A transformer library's layer that stores its weight transposed (in × out)."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def test_modules_deepzip_does_not_know_are_named_or_filtered_in_and_otherwise_reported(tmp_path):
    model = nn.Sequential(Conv1D(32, 64), nn.ReLU(), nn.Linear(64, 4))
    assert [w.name for w in unselected(model)] == ["0.weight"]
    dz.prune_(model, sparsity=0.9)
    assert dz.sparsity_of(model)["0"] == 0  # counted, though untouched
    assert dz.sparsity_of(model)["total"] < 0.5
    with pytest.warns(dz.DeepzipWarning, match=r"1 weight matrix stored uncompressed .*: 0\.weight"):
        dz.save(model, tmp_path / "a.dzip")
    dz.prune_(model, sparsity={"0.weight": 0.8})  # naming it selects it
    dz.share_weights_(model, bits=3, filter_fn=lambda m, name: True)  # a filter admits it too
    assert is_shared(model[0]) and is_shared(model[2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", dz.DeepzipWarning)
        dz.save(model, tmp_path / "b.dzip")
    back = dz.load(tmp_path / "b.dzip", model=nn.Sequential(Conv1D(32, 64), nn.ReLU(), nn.Linear(64, 4)))
    assert torch.equal(back[0].weight, model[0].weight)
    assert dz.inspect(tmp_path / "a.dzip")["uncompressed"] == ["0.weight"]
    assert dz.inspect(tmp_path / "b.dzip")["uncompressed"] == []


@pytest.mark.parametrize("stage", ["prune", "share", "save"])
def test_non_finite_weights_are_refused_and_nothing_is_written(tmp_path, tiny_mlp, stage):
    path = tmp_path / "m.dzip"
    if stage != "prune":
        dz.prune_(tiny_mlp, sparsity=0.5)
    if stage == "save":
        dz.share_weights_(tiny_mlp, bits=3)
        dz.save(tiny_mlp, path)
        before = path.read_bytes()
        with torch.no_grad():
            dz.reparam.sharing(tiny_mlp.fc2).centroids[0] = float("inf")
        with pytest.raises(dz.NumericsError, match="fc2.weight holds 1 non-finite value"):
            dz.save(tiny_mlp, path)
        assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1
        return
    with torch.no_grad():
        tiny_mlp.fc1.weight[:2, :5] = float("nan")
    call = (lambda: dz.prune_(tiny_mlp, sparsity=0.9)) if stage == "prune" else (lambda: dz.share_weights_(tiny_mlp))
    with pytest.raises(dz.NumericsError, match="fc1.weight holds 10 non-finite values"):
        call()
