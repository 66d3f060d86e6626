"""Structured pruning: whole units go, the columns they fed follow, magnitude pruning keeps both."""
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.data import Dataset
from deepzip.prune import get_mask


def _data(n=64, shape=(1, 8, 8)):
    return Dataset(torch.randn(n, *shape), torch.randint(0, 4, (n,)), classes=4, name="random")


def test_weakest_units_go_with_their_biases(tiny_mlp):
    norms = tiny_mlp.fc1.weight.detach().norm(dim=1)
    removed = dz.prune_units_(tiny_mlp, {"fc1": 0.5})
    assert removed == {"fc1": 150}
    dead = (tiny_mlp.fc1.weight == 0).all(dim=1)
    assert int(dead.sum()) == 150
    # exactly the 150 smallest-norm rows
    assert torch.equal(dead.nonzero().flatten().sort().values, norms.argsort()[:150].sort().values)
    assert torch.all(tiny_mlp.fc1.bias[dead] == 0) and torch.all(tiny_mlp.fc1.bias[~dead] != 0)
    assert get_mask(tiny_mlp.fc2, "weight") is None  # the setting named only fc1


def test_dead_inputs_follow_removed_units_and_outputs_do_not_change(tiny_mlp):
    dz.prune_units_(tiny_mlp, {"fc1": 0.6, "fc2": 0.5})
    x = _data().x
    before = tiny_mlp(x)
    masked = dz.prune_dead_inputs_(tiny_mlp, _data())
    # fc2's 180 columns fed by dead fc1 units, in its 50 live rows (its dead rows were zero already)
    assert masked["fc2"] == 50 * 180
    assert masked["fc3"] == 4 * 50
    assert torch.all(tiny_mlp.fc2.weight[:, (tiny_mlp.fc1.weight == 0).all(dim=1)] == 0)
    assert torch.all(tiny_mlp.fc3.weight[:, (tiny_mlp.fc2.weight == 0).all(dim=1)] == 0)
    assert masked["fc1"] == 0  # random inputs are never exactly zero
    assert torch.allclose(tiny_mlp(x), before, atol=1e-6)


def test_magnitude_pruning_and_training_keep_structured_zeros(tiny_mlp):
    dz.prune_units_(tiny_mlp, {"fc1": 0.5})
    dead = (tiny_mlp.fc1.weight == 0).all(dim=1)
    dz.prune_(tiny_mlp, sparsity={"fc1": 0.3})  # less than the units already removed: nothing revives
    assert torch.equal((tiny_mlp.fc1.weight == 0).all(dim=1), dead)
    dz.train(tiny_mlp, _data(256), epochs=1, lr=1e-2, progress=False)
    assert torch.all(tiny_mlp.fc1.weight[dead] == 0) and torch.all(tiny_mlp.fc1.bias[dead] == 0)
    dz.prune_(tiny_mlp, sparsity={"fc1": 0.9})
    assert dz.sparsity_of(tiny_mlp)["fc1"] == pytest.approx(0.9, abs=1e-3)
    assert torch.all(tiny_mlp.fc1.weight[dead] == 0)


def test_grouped_conv_dead_channels_map_to_their_group():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, groups=2), nn.Flatten())
    with torch.no_grad():
        model[0].weight[1] = 0  # channel 1 (group 0 of the next conv) is dead
        model[0].bias[1] = -1.0  # ReLU(−1) = 0 everywhere
    masked = dz.prune_dead_inputs_(model, _data(8, (2, 5, 5)))
    w = model[2].weight  # (6, 2, 3, 3): outputs 0–2 read inputs 0–1, outputs 3–5 read inputs 2–3
    assert torch.all(w[:3, 1] == 0) and torch.all(w[:3, 0] != 0) and torch.all(w[3:] != 0)
    assert masked["2"] == 3 * 9


def test_bad_unit_settings_are_refused(tiny_mlp):
    with pytest.raises(dz.ConfigError, match="fc9"):
        dz.prune_units_(tiny_mlp, {"fc9": 0.5})
    with pytest.raises(dz.ConfigError, match="units for fc1"):
        dz.prune_units_(tiny_mlp, {"fc1": 1.5})
    assert dz.prune_units_(tiny_mlp, {"fc1": 1.0}) == {"fc1": 299}  # a layer keeps one unit
