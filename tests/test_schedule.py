import json

import pytest
import torch

import deepzip as dz
from deepzip.data import load as load_data
from deepzip.pipeline.sensitivity import allocate, plot, scan
from deepzip.prune.schedule import GradualPruning, agp_sparsity


def test_agp_values_follow_the_cubic_ramp():
    kw = dict(initial=0.1, final=0.9, start=100, end=1100)
    assert agp_sparsity(0, **kw) == 0.1 and agp_sparsity(100, **kw) == 0.1
    assert agp_sparsity(600, **kw) == pytest.approx(0.9 - 0.8 * 0.5**3)
    assert agp_sparsity(1100, **kw) == 0.9 and agp_sparsity(5000, **kw) == 0.9
    values = [agp_sparsity(t, **kw) for t in range(100, 1101, 100)]
    increments = [b - a for a, b in zip(values, values[1:])]
    assert all(i > 0 for i in increments) and increments == sorted(increments, reverse=True)


def test_gradual_pruning_during_training_reaches_the_target(tiny_mlp):
    data = load_data("synthetic", train=True, limit=512)
    data = type(data)(data.x[:, :, :8, :8].contiguous(), data.y % 4, 4, "synthetic-8px")
    pruner = GradualPruning(tiny_mlp, {"fc1": 0.9, "fc2": 0.6}, end=0.5, every=4)
    dz.train(tiny_mlp, data, epochs=2, batch_size=32, progress=False, callbacks=[pruner])
    s = dz.sparsity_of(tiny_mlp)
    assert s["fc1"] == pytest.approx(0.9, abs=1e-3) and s["fc2"] == pytest.approx(0.6, abs=1e-3)
    assert s["fc3"] == 0
    steps = [t for t, _ in pruner.history]
    fractions = [f for _, f in pruner.history]
    assert steps[-1] == 16 and fractions[-1] == 1.0  # 32 steps, ramp ends at half
    assert fractions == sorted(fractions) and len(steps) == 4


def test_bad_schedules_are_refused(tiny_mlp):
    with pytest.raises(dz.ConfigError):
        GradualPruning(tiny_mlp, 0.5, start=0.8, end=0.2)
    with pytest.raises(dz.ConfigError):
        GradualPruning(tiny_mlp, 0.5, every=0)


def _fake_scan():
    # fc1 tolerates pruning, fc2 does not; fc2 quantizes down to 3 bits, fc1 needs 5.
    return {"baseline": 90.0, "sparsities": [0.5, 0.9, 0.99], "bit_widths": [2, 3, 5, 8],
            "layers": {"fc1": {"kind": "linear", "weights": 1000, "sparsity": [90.0, 89.8, 80.0], "bits": [80.0, 88.0, 89.9, 90.0]},  # noqa: E501 (a table)
                       "fc2": {"kind": "linear", "weights": 100, "sparsity": [89.0, 70.0, 20.0], "bits": [85.0, 89.8, 90.0, 90.0]}}}  # noqa: E501 (a table)


def test_allocation_meets_a_drop_budget():
    choice = allocate(_fake_scan(), max_drop=0.5)
    assert choice["sparsity"] == {"fc1": 0.9, "fc2": 0.0}
    assert choice["bits"] == {"fc1": 5, "fc2": 3}


def test_allocation_meets_a_size_target_with_the_smallest_drop():
    scan_ = _fake_scan()
    choice = allocate(scan_, target_ratio=20)
    assert choice["estimated_ratio"] >= 20
    for d in (0.2, 1.0, 10.0, 20.0, 70.0):  # a smaller drop budget never reaches the target
        if d < choice["estimated_drop"] - 1e-9:
            assert allocate(scan_, max_drop=d)["estimated_ratio"] < 20
    with pytest.raises(dz.ConfigError, match="reaches"):
        allocate(scan_, target_ratio=10**6)


def _brute_force(scan_, bits_per_index=5.0):
    """Every combination of per-layer sparsities: (summed drop, size in bits, allocation)."""
    import itertools

    base, layers = scan_["baseline"], scan_["layers"]
    bits = {n: allocate(scan_, max_drop=0)["bits"][n] for n in layers}
    grids = [[(0.0, 0.0)] + [(s, max(0.0, base - a)) for s, a in zip(scan_["sparsities"], row["sparsity"])]
             for row in layers.values()]
    for combo in itertools.product(*grids):
        size = sum(r["weights"] * (1 - s) * (bits[n] + (bits_per_index if s > 0 else 0))
                   for (s, _), (n, r) in zip(combo, layers.items()))
        yield sum(d for _, d in combo), size, dict(zip(layers, (s for s, _ in combo)))


@pytest.mark.parametrize("budget", [0.0, 0.15, 0.2, 1.0, 5.0, 20.0, 100.0])
def test_the_drop_budget_allocation_is_the_smallest_file_within_it(budget):
    scan_ = _fake_scan()
    scan_["layers"]["fc3"] = {"kind": "linear", "weights": 400, "sparsity": [89.9, 89.7, 88.0], "bits": [90.0] * 4}
    choice = allocate(scan_, max_drop=budget)
    feasible = [(size, drop) for drop, size, _ in _brute_force(scan_) if drop <= budget + 1e-9]
    best = min(size for size, _ in feasible)
    dense = 32 * sum(r["weights"] for r in scan_["layers"].values())
    assert choice["estimated_ratio"] == pytest.approx(dense / best)
    assert choice["estimated_drop"] <= budget + 1e-9
    if budget >= 0.3:  # fc3 at 90 % costs 0.3 points and shrinks the file: never the all-zero allocation
        assert any(v > 0 for v in choice["sparsity"].values())


def test_verify_measures_what_the_allocation_gives(tmp_path, tiny_mlp):
    from deepzip.pipeline.sensitivity import verify

    x = torch.randn(64, 1, 8, 8)
    y = tiny_mlp(x).argmax(1)
    accuracy = lambda m: 100.0 * (m(x).argmax(1) == y).float().mean().item()  # noqa: E731
    measured = verify(tiny_mlp, {"sparsity": {"fc1": 0.9, "fc2": 0.5, "fc3": 0.0}, "bits": {"fc1": 4, "fc2": 4, "fc3": 8}},
                      accuracy, tmp_path / "v.dzip")
    assert measured["file_bytes"] == (tmp_path / "v.dzip").stat().st_size
    assert measured["ratio"] > 5 and 0 <= measured["drop"] <= 100
    assert dz.sparsity_of(tiny_mlp)["total"] == 0  # the model itself is left as it was


def test_scan_shape_restores_the_model_and_plots(tmp_path, tiny_mlp):
    x = torch.randn(64, 1, 8, 8)
    y = tiny_mlp(x).argmax(1)
    before = {k: v.clone() for k, v in tiny_mlp.state_dict().items()}
    accuracy = lambda m: 100.0 * (m(x).argmax(1) == y).float().mean().item()  # noqa: E731
    result = scan(tiny_mlp, accuracy, sparsities=(0.5, 0.99), bits=(2, 6), progress=False)
    assert result["baseline"] == 100.0
    assert list(result["layers"]) == ["fc1", "fc2", "fc3"]
    for row in result["layers"].values():
        assert len(row["sparsity"]) == 2 and len(row["bits"]) == 2
        assert row["sparsity"][1] <= 100.0
    assert result["layers"]["fc1"]["weights"] == 64 * 300
    for k, v in tiny_mlp.state_dict().items():
        assert torch.equal(v, before[k])
    json.dumps(result)
    plot(result, str(tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 10_000


def test_gradual_pruning_with_one_global_threshold(tiny_mlp):
    data = load_data("synthetic", train=True, limit=256)
    data = type(data)(data.x[:, :, :8, :8].contiguous(), data.y % 4, 4, "synthetic-8px")
    pruner = GradualPruning(tiny_mlp, 0.8, end=0.5, every=2, scope="global")
    dz.train(tiny_mlp, data, epochs=1, batch_size=32, progress=False, callbacks=[pruner])
    layers = (tiny_mlp.fc1, tiny_mlp.fc2, tiny_mlp.fc3)
    zeros = sum(int((m.weight == 0).sum()) for m in layers)
    assert zeros == round(0.8 * sum(m.weight.numel() for m in layers))
    per_layer = [float((m.weight == 0).float().mean()) for m in layers]
    assert max(per_layer) - min(per_layer) > 0.05  # one threshold, so layers end at different sparsities
