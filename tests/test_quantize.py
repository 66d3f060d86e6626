import numpy as np
import pytest
import torch

import deepzip as dz
from deepzip.quantize import kmeans_1d
from deepzip.reparam import shared_weight, sharing


def _distinct_nonzero(t):
    return torch.unique(t[t != 0]).numel()


@pytest.mark.parametrize("init", ["linear", "density", "random"])
def test_kmeans_is_a_fixed_point_of_lloyd(init):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-1, 0.2, 500), rng.normal(1.5, 0.3, 700)])
    c, labels = kmeans_1d(x, 8, init)
    assert c.size <= 8 and np.all(np.diff(c) > 0)
    # each point sits at its nearest centroid, and each centroid is its members' mean
    assert np.array_equal(labels, np.abs(x[:, None] - c[None, :]).argmin(1))
    np.testing.assert_allclose(c, [x[labels == k].mean() for k in range(c.size)])


def test_kmeans_with_fewer_distinct_values_than_k():
    c, labels = kmeans_1d(np.array([3.0, 1.0, 3.0, 2.0]), 8)
    assert list(c) == [1.0, 2.0, 3.0] and list(labels) == [2, 0, 2, 1]


def test_sharing_limits_distinct_values_and_keeps_zeros(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.7)
    zeros = {n: (m.weight == 0).clone() for n, m in tiny_mlp.named_children() if hasattr(m, "weight")}
    dz.share_weights_(tiny_mlp, bits={"fc1": 3, "linear": 4})
    x = torch.randn(32, 1, 8, 8)
    opt = torch.optim.SGD(tiny_mlp.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-2)
    for _ in range(4):
        opt.zero_grad()
        tiny_mlp(x).pow(2).sum().backward()
        opt.step()
    for name, bits in (("fc1", 3), ("fc2", 4), ("fc3", 4)):
        layer = getattr(tiny_mlp, name)
        assert _distinct_nonzero(layer.weight) <= 2**bits - 1
        assert torch.equal(layer.weight == 0, zeros[name])  # assignments fixed, zeros stay zero
    # what trains is each layer's codebook and bias: nothing of weight size
    trainable = {id(p) for p in tiny_mlp.parameters() if p.requires_grad}
    assert trainable == {id(p) for m in (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3)
                         for p in (sharing(m).centroids, m.bias)}


def test_centroid_gradient_is_grouped_sum_of_weight_gradients(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.5)
    dense = {n: m.weight.detach().clone() for n, m in tiny_mlp.named_children() if hasattr(m, "weight")}
    dz.share_weights_(tiny_mlp, bits=4)
    layer = tiny_mlp.fc2
    x = torch.randn(8, 1, 8, 8)
    # gradient w.r.t. the dense weight, taken on a plain copy with the same shared values
    w = shared_weight(layer).detach().clone().requires_grad_(True)
    h = torch.relu(tiny_mlp.fc1(x.flatten(1)))
    out = tiny_mlp.fc3(torch.relu(torch.nn.functional.linear(h, w, layer.bias)))
    out.pow(2).sum().backward()
    tiny_mlp.zero_grad()
    tiny_mlp(x).pow(2).sum().backward()
    assign, centroids = sharing(layer).assign.long(), sharing(layer).centroids
    expected = torch.zeros(centroids.numel()).index_add_(0, assign[assign > 0] - 1, w.grad[assign > 0])
    torch.testing.assert_close(centroids.grad, expected)
    assert dense  # (the dense copies were taken before sharing replaced the Parameter)


def test_strip_restores_plain_parameters_with_the_same_values(tiny_mlp):
    dz.prune_(tiny_mlp, sparsity=0.5)
    dz.share_weights_(tiny_mlp, bits=2)
    x = torch.randn(4, 1, 8, 8)
    before = tiny_mlp(x)
    dz.strip_(tiny_mlp)
    assert sorted(tiny_mlp.state_dict()) == sorted(["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"])
    torch.testing.assert_close(tiny_mlp(x), before, rtol=0, atol=0)


@pytest.mark.parametrize("kwargs", [{"bits": 0}, {"bits": 13}, {"bits": {"fc7": 4}}, {"init": "kmeans++"}])
def test_bad_sharing_configs_are_refused(tiny_mlp, kwargs):
    with pytest.raises(dz.ConfigError):
        dz.share_weights_(tiny_mlp, **kwargs)


def test_sharing_biases_keeps_masked_ones_zero_and_trains_their_codebook(tiny_mlp):
    dz.prune_units_(tiny_mlp, {"fc1": 0.5})
    dead = tiny_mlp.fc1.bias_mask.logical_not().clone()
    dz.share_weights_(tiny_mlp, bits=2, param="bias")
    assert all(dz.reparam.is_shared(m, "bias") and not dz.reparam.is_shared(m, "weight")
               for m in (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3))
    before = sharing(tiny_mlp.fc1, "bias").centroids.detach().clone()
    opt = torch.optim.SGD(tiny_mlp.parameters(), lr=0.1)
    tiny_mlp(torch.randn(16, 1, 8, 8)).sum().backward()
    opt.step()
    assert not torch.equal(sharing(tiny_mlp.fc1, "bias").centroids, before)
    assert torch.all(tiny_mlp.fc1.bias[dead] == 0) and _distinct_nonzero(tiny_mlp.fc1.bias) <= 3
    assert tiny_mlp.fc1.weight.requires_grad  # the weights are untouched, still plain parameters
    with pytest.raises(dz.ConfigError, match="already shared"):  # re-clustering needs strip_ first
        dz.share_weights_(tiny_mlp, bits=3, param="bias")


def test_a_shared_weight_read_without_forward_follows_its_codebook_over_many_steps():
    # nn.MultiheadAttention reads out_proj.weight directly, never calling out_proj's forward: the
    # shared weight must still be recomputed on every read, and each step backpropagate afresh.
    attn = torch.nn.MultiheadAttention(8, 2)
    dz.share_weights_(attn, bits=3)
    assert dz.reparam.is_shared(attn.out_proj)
    x = torch.randn(5, 3, 8)
    opt = torch.optim.Adam(attn.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        attn(x, x, x)[0].pow(2).sum().backward()
        opt.step()
    sw = sharing(attn.out_proj)
    table = torch.cat([torch.zeros(1), sw.centroids.detach()])
    assert torch.equal(attn.out_proj.weight.detach(), table[sw.assign.long()])


def test_tied_weights_share_one_codebook_through_training():
    a, b = torch.nn.Linear(6, 6), torch.nn.Linear(6, 6)
    b.weight = a.weight
    model = torch.nn.Sequential(a, torch.nn.ReLU(), b)
    dz.share_weights_(model, bits=2)
    assert sharing(a) is sharing(b)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 6)).sum().backward()
    opt.step()
    assert torch.equal(a.weight, b.weight) and _distinct_nonzero(a.weight) <= 3


def test_stripping_a_copy_leaves_the_original_shared(tiny_mlp):
    import copy

    dz.share_weights_(tiny_mlp, bits=3)
    twin = copy.deepcopy(tiny_mlp)
    dz.strip_(twin)
    dz.share_weights_(twin, bits=2, param="bias")  # and new sharing on the copy adds nothing to the original
    x = torch.randn(2, 1, 8, 8)
    assert dz.reparam.is_shared(tiny_mlp.fc1) and not dz.reparam.is_shared(tiny_mlp.fc1, "bias")
    assert tiny_mlp(x).shape == twin(x).shape == (2, 4)


def test_checkpoints_keep_tied_weights_tied_and_masked_under_both_names():
    from deepzip.reparam import capture, restore_

    def make():
        emb, out = torch.nn.Embedding(10, 6), torch.nn.Linear(6, 10, bias=False)
        out.weight = emb.weight
        return torch.nn.ModuleDict({"emb": emb, "out": out})

    model = make()
    dz.prune_(model, sparsity={"embedding": 0.3, "linear": 0.8})
    zeros = int((model["emb"].weight == 0).sum())
    record, tensors = capture(model)
    fresh = make()
    restore_(fresh, record, tensors)
    assert fresh["out"].weight is fresh["emb"].weight
    opt = torch.optim.SGD(fresh.parameters(), lr=1.0)
    fresh["out"](torch.randn(2, 6)).sum().backward()
    opt.step()
    assert int((fresh["emb"].weight == 0).sum()) == zeros  # both masks hold after a step


def test_foreign_parametrizations_are_refused_not_dropped(tmp_path):
    model = torch.nn.Sequential(torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(4, 4)))
    with pytest.raises(dz.ConfigError, match="parametrization deepzip does not know"):
        dz.save(model, tmp_path / "m.dzip")
    assert not (tmp_path / "m.dzip").exists()
