"""Any model a user brings: residual, depthwise, embedding, tied weights, batch norm, buffers."""
import pytest
import torch
from torch import nn

import deepzip as dz


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.pointwise = nn.Conv2d(c, c, 1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.bn(self.pointwise(self.depthwise(x))))  # residual


class UserNet(nn.Module):
    """Tokens → embedding, image → conv stem + residual block; the output layer shares the
    embedding's weight (tied), as language models do."""

    def __init__(self, vocab=60, dim=24):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.stem = nn.Conv2d(1, dim, 3, padding=1)
        self.block = Block(dim)
        self.seq = nn.Conv1d(dim, dim, 3, padding=1)
        self.mix = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, vocab, bias=False)
        self.out.weight = self.embed.weight
        self.register_buffer("scale", torch.tensor(0.5))

    def forward(self, tokens, image):
        t = self.seq(self.embed(tokens).transpose(1, 2)).mean(2)
        i = self.block(torch.relu(self.stem(image))).mean((2, 3))
        return self.out(torch.relu(self.mix(t + i)) * self.scale)


@pytest.mark.parametrize("coder", ["huffman", "ans"])
def test_user_model_round_trips_exactly(tmp_path, coder):
    torch.manual_seed(3)
    model = UserNet()
    model.train()
    for _ in range(3):  # non-trivial batch-norm statistics
        model(torch.randint(0, 60, (8, 5)), torch.randn(8, 1, 6, 6))
    model.eval()
    dz.prune_(model, sparsity={"conv": 0.6, "mix": 0.7, "embed": 0.5})
    dz.share_weights_(model, bits={"conv": 6, "linear": 4, "embedding": 5})
    tokens, image = torch.randint(0, 60, (16, 5)), torch.randn(16, 1, 6, 6)
    expected = model(tokens, image)
    header = dz.save(model, tmp_path / "u.dzip", coder=coder)
    assert header["arch"] is None  # not from the registry: the caller supplies the module
    assert sum("alias" in e for e in header["tensors"]) == 1  # out.weight stored once, as embed.weight
    fresh = UserNet()
    dz.load(tmp_path / "u.dzip", model=fresh)
    assert fresh.out.weight is fresh.embed.weight
    assert torch.equal(fresh(tokens, image), expected)
    assert torch.equal(fresh.block.bn.running_var, model.block.bn.running_var)
    for name in ("stem", "seq", "mix"):
        assert torch.unique(getattr(fresh, name).weight).numel() <= 2**6
    assert fresh.block.depthwise.weight.eq(0).float().mean() == pytest.approx(0.6, abs=0.02)


def test_names_that_do_not_match_are_listed(tmp_path):
    dz.save(UserNet(), tmp_path / "u.dzip")

    class Renamed(UserNet):
        def __init__(self):
            super().__init__()
            self.mixer = self.mix
            del self.mix

    with pytest.raises(dz.ModelMismatchError, match=r"file has 'mix.bias', 'mix.weight' which the model lacks; "
                                                     r"the model has 'mixer.bias', 'mixer.weight' which the file lacks"):
        dz.load(tmp_path / "u.dzip", model=Renamed())
    partial = Renamed()
    dz.load(tmp_path / "u.dzip", model=partial, strict=False)  # loads what matches
    assert torch.equal(partial.stem.weight, dz.load(tmp_path / "u.dzip", model=UserNet()).stem.weight)
