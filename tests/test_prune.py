import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.errors import ConfigError
from deepzip.reparam import get_mask, remove_mask_


def _step(model, opt, x):
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=1e-2),
    lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=1e-2),
])
def test_pruned_weights_stay_zero_through_momentum_and_weight_decay(tiny_mlp, make_opt):
    x = torch.randn(16, 1, 8, 8)
    opt = make_opt(tiny_mlp.parameters())
    for _ in range(3):  # fill momentum buffers *before* pruning: the case that revives weights elsewhere
        _step(tiny_mlp, opt, x)
    dz.prune_(tiny_mlp, sparsity=0.8)
    for _ in range(5):
        _step(tiny_mlp, opt, x)
        for layer in (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3):
            mask = get_mask(layer, "weight")
            assert torch.all(layer.weight[~mask] == 0)
            assert torch.all(layer.weight.grad[~mask] == 0)
            assert layer.weight[mask].abs().min() > 0  # kept weights still train
    assert dz.sparsity_of(tiny_mlp)["fc1"] == pytest.approx(0.8, abs=1 / tiny_mlp.fc1.weight.numel())


def test_sparsity_per_layer_dict_and_kind():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    dz.prune_(model, sparsity={"conv": 0.5, "2": 0.9})
    s = dz.sparsity_of(model)
    assert s["0"] == pytest.approx(0.5, abs=0.03)
    assert s["2"] == pytest.approx(0.9, abs=0.01)
    assert torch.count_nonzero(model[2].bias) == 10  # biases are never pruned


def test_quality_threshold_is_quality_times_std(tiny_mlp):
    w = tiny_mlp.fc2.weight.detach().clone()
    dz.prune_(tiny_mlp, quality={"fc2": 1.0})
    expected = w.abs() > w.std()
    assert torch.equal(get_mask(tiny_mlp.fc2, "weight"), expected)
    assert get_mask(tiny_mlp.fc1, "weight") is None  # layers the dict does not name are left alone


def test_masks_only_shrink(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.5)
    first = get_mask(tiny_mlp.fc1, "weight").clone()
    with torch.no_grad():
        tiny_mlp.fc1.weight.normal_()  # shuffle magnitudes: a fresh ranking must not revive pruned weights
    dz.prune_(tiny_mlp, sparsity=0.7)
    second = get_mask(tiny_mlp.fc1, "weight")
    assert not torch.any(second & ~first)
    assert 1 - second.float().mean() == pytest.approx(0.7, abs=0.2)


def test_global_sparsity_is_exact(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.75, scope="global")
    total = sum(m.weight.numel() for m in (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3))
    zeros = sum(int((m.weight == 0).sum()) for m in (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3))
    assert zeros == round(0.75 * total)


def test_integer_amount_is_a_count(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity={"fc3": 7})
    assert int((tiny_mlp.fc3.weight == 0).sum()) == 7


def test_remove_keeps_zeros_and_drops_hooks(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.6)
    before = tiny_mlp(torch.randn(4, 1, 8, 8))
    remove_mask_(tiny_mlp.fc1, "weight")
    assert "weight_mask" not in dict(tiny_mlp.fc1.named_buffers())
    assert float((tiny_mlp.fc1.weight == 0).float().mean()) == pytest.approx(0.6, abs=0.01)
    torch.testing.assert_close(tiny_mlp(torch.randn(4, 1, 8, 8)).shape, before.shape)


@pytest.mark.parametrize("kwargs, words", [
    ({}, "exactly one"),
    ({"sparsity": 0.5, "quality": 1.0}, "quality must be absent when sparsity is given"),
    ({"sparsity": 1.5}, "sparsity"),
    ({"quality": -1.0}, "quality"),
    ({"sparsity": {"fc9": 0.5}}, "fc9"),
])
def test_bad_pruning_configs_are_refused(tiny_mlp, kwargs, words):
    with pytest.raises(dz.ConfigError, match=words):
        dz.prune_(tiny_mlp, **kwargs)


def test_amounts_follow_torch_float_fraction_int_count(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity={"fc3": 1.0})
    assert int((tiny_mlp.fc3.weight != 0).sum()) == 0
    with pytest.raises(dz.ConfigError, match="fraction"):
        dz.prune_(tiny_mlp, sparsity=5000.0)
    with pytest.raises(dz.ConfigError, match="fraction"):
        dz.prune_(tiny_mlp, sparsity=True)


def test_pruning_a_shared_layer_is_refused(tiny_mlp):
    dz.share_weights_(tiny_mlp, bits=3)
    with pytest.raises(dz.ConfigError, match="before share_weights_"):
        dz.prune_(tiny_mlp, sparsity=0.5)


def test_a_deep_copy_of_a_pruned_model_trains_safely(tiny_mlp):
    import copy

    from deepzip.data import Dataset

    dz.prune_(tiny_mlp, sparsity=0.8)
    clone = copy.deepcopy(tiny_mlp)
    zeros = clone.fc1.weight == 0
    data = Dataset(torch.randn(64, 1, 8, 8), torch.randint(0, 4, (64,)), 4, "noise")
    dz.train(clone, data, epochs=2, lr=0.05, optimizer="sgd", batch_size=16, progress=False)
    assert torch.equal(clone.fc1.weight == 0, zeros)
    assert clone.fc1.weight.grad[zeros].abs().sum() == 0


class PruneTheLargest:
    """A criterion of the test's own: ranks by 1 / |w|, so the largest weights go first."""

    name = "inverse"

    def scores(self, weight):
        return 1 / (weight.value.detach().abs() + 1e-3)


def test_a_criterion_of_ones_own_decides_what_goes_per_layer_globally_and_on_a_schedule():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    before = [m.weight.detach().abs().clone() for m in (net[0], net[2])]
    dz.prune_(net, sparsity=0.25, criterion=PruneTheLargest())
    for m, w in zip((net[0], net[2]), before):
        gone = m.weight.detach() == 0
        assert gone.float().mean() == 0.25 and w[gone].min() >= w[~gone].max()  # the largest quarter went
    glob = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    dz.prune_(glob, sparsity=0.5, scope="global", criterion=PruneTheLargest())
    kept = torch.cat([m.weight.detach().flatten() for m in (glob[0], glob[2])])
    assert (kept == 0).float().mean() == 0.5
    sched = dz.GradualPruning(net, 0.5, every=1, criterion=PruneTheLargest())
    sched.update(10, 10)
    assert (net[0].weight == 0).float().mean() == 0.5


def test_activation_weighted_keeps_small_weights_on_large_inputs():
    """Wanda's |w| · ‖x_j‖: every weight the same size, input 0 a hundred times the others, so
    pruning by magnitude alone could not tell them apart and this keeps column 0 whole."""
    net = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Conv2d(1, 4, 1))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
        net[0].weight[:, 1:] *= 2  # larger weights on the quiet inputs: magnitude keeps those
    x = torch.randn(64, 8) * torch.tensor([100.0] + [1.0] * 7)
    crit = dz.ActivationWeighted().measure(nn.Sequential(net[0]), [x, (x, None)])
    dz.prune_(net[0], sparsity=0.5, criterion=crit)
    assert bool((net[0].weight[:, 0] != 0).all()) and (net[0].weight == 0).float().mean() == 0.5
    with pytest.raises(ConfigError, match="measured no input of this layer"):
        dz.prune_(net[2], sparsity=0.5, criterion=crit)
    with pytest.raises(ConfigError, match="quality thresholds"):
        dz.prune_(net[0], quality=1.0, criterion=crit)


def test_a_criterion_scoring_the_wrong_shape_or_negative_is_one_sentence():
    class Bad:
        name = "bad"

        def __init__(self, fn):
            self.fn = fn

        def scores(self, weight):
            return self.fn(weight.value.detach())

    for fn, words in ((lambda w: w.flatten(), "must score each weight"), (lambda w: w - 10, "negative or not finite")):
        with pytest.raises(ConfigError, match=words):
            dz.prune_(nn.Linear(4, 4), sparsity=0.5, criterion=Bad(fn))
