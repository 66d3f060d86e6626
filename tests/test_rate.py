"""RateLoss: the estimate against a direct entropy, gradients, and a smaller file for λ > 0."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import deepzip as dz
from deepzip.data import Dataset


def _entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum() * counts.sum())


def test_the_estimate_is_the_entropy_of_hard_codes_at_their_frequencies():
    """Weights sitting on their levels: the estimate is n · H(codes), what an order-0 coder
    spends on the code stream, zeros included, and what harden_ reports."""
    torch.manual_seed(0)
    layer = nn.Linear(50, 40)
    rng = np.random.default_rng(0)
    codes = rng.choice(4, size=(40, 50), p=[0.7, 0.1, 0.15, 0.05])
    means = np.array([0.0, -0.3, 0.1, 0.4], np.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(means[codes]))
    rate = dz.RateLoss(layer, weight=0.0, bits=2)  # k-means finds the three values beside zero
    assert sorted(rate.centroids[0].tolist()) == pytest.approx([-0.3, 0.1, 0.4])
    assert torch.equal(rate.levels(0)[rate.codes(0)], layer.weight)
    assert rate.bits(layer) == pytest.approx(_entropy_bits(codes.reshape(-1)), rel=1e-9)
    summary = dz.harden_(layer, rate)
    assert summary["weight"]["bits"] == pytest.approx(_entropy_bits(codes.reshape(-1)), rel=1e-6)
    assert summary["weight"]["sparsity"] == pytest.approx((codes == 0).mean())
    assert torch.equal(layer.weight, torch.from_numpy(means[codes]))


def test_the_forward_pass_sees_the_quantized_weights_and_hardening_changes_nothing():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    dz.prune_(model, sparsity=0.5)
    rate = dz.RateLoss(model, weight=1e-2, bits=2)
    before = model[0].weight.detach().clone()
    x = torch.randn(32, 8)
    quantized = rate.quantized(model)(x)
    assert not torch.allclose(quantized, model(x))  # 3 levels beside zero are not the float weights
    assert torch.equal(model[0].weight, before)  # the float weights stay as they were
    assert int((rate.codes(0) == 0).sum()) >= 64  # the pruned half is code 0
    dz.harden_(model, rate)
    assert torch.allclose(model(x), quantized, atol=1e-6)
    assert torch.unique(model[0].weight).numel() <= 4


def test_the_price_of_a_code_moves_weights_to_cheaper_codes():
    """A weight a little nearer a rare centroid than zero (common) goes to zero once λ > 0 is
    large enough; λ = 0 is the nearest level; a huge λ sends everything to the common code."""
    layer = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(10))  # every row and column live; 90 zeros, ten ones
        layer.weight[0, 1] = 0.55
    nearest = dz.RateLoss(layer, weight=0.0, bits=1)
    mu = nearest.centroids[0][0].item()  # the one centroid: the mean of the non-zero weights
    assert 0.55 > mu / 2 and nearest.codes(0)[0, 1] == 1
    s2 = layer.weight.detach()[layer.weight != 0].std(unbiased=False).item() ** 2  # as the loss measures it
    for weight in (0.01, 1.0, 10.0):
        priced = dz.RateLoss(layer, weight=weight, bits=1)
        # costs of w = 0.55: to the centroid (11 of 100 codes), and to zero (89 of 100)
        to_one = (0.55 - mu) ** 2 / s2 + weight * math.log2(100 / 11)
        to_zero = 0.55**2 / s2 + weight * math.log2(100 / 89)
        assert int(priced.codes(0)[0, 1]) == (0 if to_zero < to_one else 1)
    assert int(dz.RateLoss(layer, weight=10.0, bits=1).codes(0)[0, 1]) == 0  # the case is not vacuous
    assert int(dz.RateLoss(layer, weight=1e4, bits=1).codes(0).sum()) == 0


def test_gradients_reach_the_weights_and_the_centroids():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    rate = dz.RateLoss(model, weight=1e-2, bits=3)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    rate(model, (x, y)).backward()
    for p in (model[0].weight, model[2].weight, *rate.centroids):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # λ = 0 is the task loss on the quantized model
    plain = dz.RateLoss(model, weight=0.0, bits=3)
    assert plain(model, (x, y)).item() == pytest.approx(
        nn.functional.cross_entropy(plain.quantized(model)(x), y).item())


def test_training_with_a_rate_weight_gives_a_smaller_file_that_still_learns(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + (x[:, 5] > 1).long()
    data = Dataset(x, y, classes=3, name="toy")
    sizes, accuracies = {}, {}
    for weight in (0.0, 0.3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
        dz.train(model, data, epochs=3, lr=3e-3, seed=0, progress=False)
        dz.prune_(model, sparsity=0.5)  # the rate makes zero cheap where zero is already common
        rate = dz.RateLoss(model, weight=weight, bits=4)
        dz.train(model, data, epochs=6, lr=3e-3, loss_fn=rate, seed=0, progress=False)
        history = dz.History()
        dz.train(model, data, epochs=0.5, lr=1e-4, loss_fn=rate, seed=2, progress=False,
                 callbacks=[dz.Evaluate(data), history])  # the run shows the estimate as it goes
        row = history.rows[-1]
        assert row["rate/estimated_bytes"] == pytest.approx(rate.bits(model) / 8, rel=1e-4)
        assert row["accuracy"] == pytest.approx(dz.evaluate(rate.quantized(model), data), abs=1e-4)
        trained = dz.evaluate(rate.quantized(model), data)
        summary = dz.harden_(model, rate)
        assert dz.evaluate(model, data) == trained  # hardening keeps the codes evaluation measured
        dz.train(model, data, epochs=1, lr=1e-3, seed=1, progress=False)  # centroid fine-tuning
        sizes[weight] = dz.save(model, tmp_path / f"{weight}.dzip")["file_bytes"]
        accuracies[weight] = dz.evaluate(dz.load(tmp_path / f"{weight}.dzip", model=nn.Sequential(
            nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))), data)
        assert set(summary) == {"0.weight", "2.weight"}
    assert sizes[0.3] < 0.8 * sizes[0.0], sizes  # 756 against 1,094 B when written
    assert accuracies[0.3] > 70 and accuracies[0.3] > accuracies[0.0] - 5, accuracies


def test_bad_settings_are_refused():
    layer = nn.Linear(4, 4)
    with pytest.raises(dz.ConfigError, match="weight must be a finite number ≥ 0"):
        dz.RateLoss(layer, weight=-1)
    with pytest.raises(dz.ConfigError, match="bits must be a whole number from 1 to 8"):
        dz.RateLoss(layer, weight=1, bits=12)
    dz.share_weights_(layer, bits=2)
    with pytest.raises(dz.ConfigError, match="already shared"):
        dz.RateLoss(layer, weight=1)


def test_a_training_checkpoint_keeps_the_loss_state(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    rate = dz.RateLoss(model, weight=1e-2, bits=2)
    x, y = torch.randn(64, 6), torch.randint(0, 2, (64,))
    dz.train(model, [(x, y)], epochs=3, loss_fn=rate)
    state = rate.checkpoint_state()
    fresh = dz.RateLoss(model, weight=1e-2, bits=2)
    assert not torch.equal(fresh.centroids[0], rate.centroids[0])  # training moved the codebook
    fresh.load_checkpoint_state(state)
    for a, b in zip([*fresh.parameters(), *fresh.buffers()], [*rate.parameters(), *rate.buffers()]):
        assert torch.equal(a, b)  # codebooks, and the code frequencies the next decisions use
    assert torch.equal(fresh.codes(0), rate.codes(0)) and fresh.bits(model) == rate.bits(model)


def test_a_resumed_loss_takes_the_saved_codebook_sizes_whatever_k_means_finds_now():
    """A resumed run rebuilds the loss from its checkpoint's weights, where k-means may find
    another number of centroids; the saved state decides."""
    torch.manual_seed(3)
    layer = nn.Linear(40, 30)
    dz.prune_(layer, sparsity=0.5)
    rate = dz.RateLoss(layer, weight=0.05, bits=3)
    assert rate.centroids[0].numel() > 3  # (k-means drops the empty cluster between the two signs)
    state = rate.checkpoint_state()
    codes = rate.codes(0).clone()
    with torch.no_grad():  # three values left: k-means now finds three centroids
        kept = layer.weight != 0
        layer.weight[kept] = torch.tensor([-0.1, 0.05, 0.2])[torch.arange(int(kept.sum())) % 3]
    again = dz.RateLoss(layer, weight=0.05, bits=3)
    assert again.centroids[0].numel() == 3
    again.load_checkpoint_state(state)
    assert torch.equal(again.centroids[0], rate.centroids[0]) and torch.equal(again.counts0, rate.counts0)
    assert again.codes(0).shape == codes.shape


def test_the_codebook_gradient_is_the_same_on_two_threads_every_time():
    """Plain indexing's backward adds in an order that changes from run to run on two threads:
    a resumed run would not end with the same bytes."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10))
    dz.prune_(model, sparsity=0.8)
    x, y = torch.randn(64, 256), torch.randint(0, 10, (64,))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            rate = dz.RateLoss(model, weight=0.05, bits=4)
            rate(model, (x, y)).backward()
            grads.append(rate.centroids[0].grad.clone())
            model.zero_grad()
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(g, grads[0]) for g in grads)


def test_a_distillation_task_keeps_its_teacher_out_of_the_loss_state():
    torch.manual_seed(5)
    teacher = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    student = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    dz.prune_(student, sparsity=0.5)
    rate = dz.RateLoss(student, weight=0.05, bits=2, task=dz.SoftTargetLoss(teacher, weight=0.5, temperature=2))
    state = rate.checkpoint_state()
    assert not any("teacher" in k for k in state["rate"]) and set(state) == {"rate", "task"}
    assert {id(p) for p in rate.trainable_parameters() if p.requires_grad} == {id(p) for p in rate.centroids}
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    rate(student, (x, y)).backward()
    assert all(p.grad is None for p in teacher.parameters())
