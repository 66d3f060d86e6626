"""Structured pruning: whole units go, the columns they fed follow, magnitude pruning keeps both."""
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.data import Dataset
from deepzip.reparam import get_mask


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


def _conv_bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Flatten(),
                        nn.Linear(6 * 8 * 8, 4))
    net.train()
    for _ in range(3):  # non-trivial running statistics, as in a trained network
        net(torch.randn(32, 1, 8, 8))
    with torch.no_grad():
        net[1].bias.fill_(5.0)  # a removed filter's channel leaves the batch norm at ≈ +5, not cut by ReLU
    return net.eval()


@pytest.mark.parametrize("norms", [True, False])
def test_removed_filters_reach_through_batch_norm_to_the_next_conv(norms):
    net = _conv_bn_net()
    dz.prune_units_(net, {"0": 0.5})
    removed = torch.nonzero(get_mask(net[0], "bias") == 0).flatten()
    masked = dz.prune_dead_inputs_(net, _data(16), norms=norms)
    if not norms:  # the batch norm's shift keeps the removed channels alive
        assert "1" not in masked and masked["3"] == 0 and torch.all(net[1].bias[removed] != 0)
        return
    assert masked["1"] == 4 and torch.all(net[1].weight[removed] == 0) and torch.all(net[1].bias[removed] == 0)
    assert masked["3"] == 4 * 6 * 9 and torch.all(net[3].weight[:, removed] == 0)
    kept = [c for c in range(8) if c not in removed.tolist()]
    assert torch.all(net[3].weight[:, kept] != 0)  # nothing live was touched
    # masked: retraining keeps the batch norm's γ and β of the removed channels at zero
    dz.train(net, _data(64), epochs=1, lr=1e-2, progress=False)
    assert torch.all(net[1].bias[removed] == 0) and torch.all(net[3].weight[:, removed] == 0)


def test_bad_unit_settings_are_refused(tiny_mlp):
    with pytest.raises(dz.ConfigError, match="fc9"):
        dz.prune_units_(tiny_mlp, {"fc9": 0.5})
    with pytest.raises(dz.ConfigError, match=r"units.fc1 must be a fraction in \[0, 1\]"):
        dz.prune_units_(tiny_mlp, {"fc1": 1.5})
    assert dz.prune_units_(tiny_mlp, {"fc1": 1.0}) == {"fc1": 299}  # a layer keeps one unit
