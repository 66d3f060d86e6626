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
    """Weights sitting on the centroids, σ tiny and π the codes' frequencies: the estimate is
    n · H(codes), what an order-0 coder spends on the code stream, zeros included."""
    torch.manual_seed(0)
    layer = nn.Linear(50, 40)
    rate = dz.RateLoss(layer, weight=1.0, bits=2)  # 3 centroids beside zero
    rng = np.random.default_rng(0)
    codes = rng.choice(4, size=(40, 50), p=[0.7, 0.1, 0.15, 0.05])
    means = np.array([0.0, -0.3, 0.1, 0.4], np.float32)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(means[codes]))
        rate.centroids[0].copy_(torch.from_numpy(means[1:]))
        freq = np.bincount(codes.reshape(-1), minlength=4) / codes.size
        rate.logits[0].copy_(torch.from_numpy(np.log(freq).astype(np.float32)))
        rate.log_sigma[0].fill_(math.log(1e-3))
    assert rate.bits(layer).item() == pytest.approx(_entropy_bits(codes.reshape(-1)), rel=1e-4)
    # and it is what harden_ reports for the hard codes
    summary = dz.harden_(layer, rate)
    assert summary["weight"]["bits"] == pytest.approx(_entropy_bits(codes.reshape(-1)), rel=1e-6)
    assert summary["weight"]["sparsity"] == pytest.approx((codes == 0).mean())


def test_gradients_reach_the_weights_the_centroids_and_the_code_probabilities():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    rate = dz.RateLoss(model, weight=1e-2, bits=3)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    rate(model, (x, y)).backward()
    for p in (model[0].weight, model[2].weight, *rate.centroids, *rate.logits, *rate.log_sigma):
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # λ = 0 is the task loss alone
    plain = dz.RateLoss(model, weight=0.0, bits=3)
    assert plain(model, (x, y)).item() == pytest.approx(nn.functional.cross_entropy(model(x), y).item())


def test_training_with_a_rate_weight_gives_a_smaller_file_that_still_learns(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 20, generator=g)
    y = (x[:, :5].sum(1) > 0).long() + (x[:, 5] > 1).long()
    data = Dataset(x, y, classes=3, name="toy")
    sizes, accuracies = {}, {}
    for weight in (0.0, 3e-3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
        rate = dz.RateLoss(model, weight=weight, bits=4)
        dz.train(model, data, epochs=6, lr=3e-3, loss_fn=rate, seed=0)
        summary = dz.harden_(model, rate)
        dz.train(model, data, epochs=1, lr=1e-3, seed=1)  # centroid fine-tuning, as after share_weights_
        sizes[weight] = dz.save(model, tmp_path / f"{weight}.dzip")["file_bytes"]
        accuracies[weight] = dz.evaluate(dz.load(tmp_path / f"{weight}.dzip", model=nn.Sequential(
            nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))), data)
        assert set(summary) == {"0.weight", "2.weight"}
    assert sizes[3e-3] < 0.8 * sizes[0.0], sizes  # 1,030 against 1,411 B when written
    assert accuracies[3e-3] > 70 and accuracies[3e-3] > accuracies[0.0] - 10, accuracies


def test_bad_settings_are_refused():
    layer = nn.Linear(4, 4)
    with pytest.raises(dz.ConfigError, match="rate weight"):
        dz.RateLoss(layer, weight=-1)
    with pytest.raises(dz.ConfigError, match="rate bits"):
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
    assert not torch.equal(fresh.logits[0], rate.logits[0])  # training moved the code probabilities
    fresh.load_checkpoint_state(state)
    for a, b in zip(fresh.parameters(), rate.parameters()):
        assert torch.equal(a, b)
    assert fresh.bits(model).item() == pytest.approx(rate.bits(model).item())
