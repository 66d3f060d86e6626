"""bench/compression.py's arithmetic: the curve's recipe scaling and the verdict it prints."""
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("dahuffman")  # bench/compression.py imports the stock baseline
pytest.importorskip("matplotlib")
BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))  # for its own `import baseline`
# Loaded under its own name: a plain `import compression` would clash with Python 3.14's stdlib package.
_spec = importlib.util.spec_from_file_location("deepzip_bench_compression", BENCH / "compression.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
at_sparsity, check, new_model = bench.at_sparsity, bench.check, bench.new_model

from deepzip.pipeline.recipe import from_dict  # noqa: E402
from deepzip.selection import weights  # noqa: E402


def _overall(recipe, model):
    layers = [(w.layer, w.value.numel()) for w in weights(model)]
    return sum(recipe.prune.sparsity.get(n, 0) * k for n, k in layers) / sum(k for _, k in layers)


def test_the_curve_hits_its_target_and_keeps_live_rows_as_dense():
    base = from_dict({"model": "lenet300", "prune": {"units": {"fc1": 0.6}, "sparsity": {"fc1": 0.95, "fc2": 0.9},
                                                     "schedule": "agp"}})
    model = new_model("lenet300")
    for target in (0.8, 0.9, 0.97):
        r = at_sparsity(base, model, target)
        assert _overall(r, model) == pytest.approx(target, abs=1e-5)
        s = r.prune.sparsity["fc1"]
        units = (r.prune.units or {}).get("fc1", 0.0)
        if units:  # kept weights per live row as in the recipe: (1 − s)/(1 − u) = 0.05/0.4
            assert (1 - s) / (1 - units) == pytest.approx(0.05 / 0.4, rel=1e-4)
        else:  # so many weights kept that every row is needed: a full-height layer is as dense or denser
            assert 1 - s >= 0.05 / 0.4
        assert "fc2" not in (r.prune.units or {})  # layers the recipe leaves whole stay whole


def _row(run, target, size, accuracy):
    return {"run": run, "target": target, "ratio": 1e6 / size, "file_bytes": size, "accuracy": accuracy}


def test_the_verdict_needs_a_smaller_and_at_least_as_accurate_file_for_every_stock_point():
    rows = [_row("best", None, 100, 89.3), _row("best", None, 110, 89.1),  # two seeds: mean 89.2
            _row("best", 0.9, 300, 89.6), _row("stock", 0.9, 400, 89.6), _row("stock", 0.95, 200, 89.4)]
    verdict = check(rows, dense_accuracy=89.5)
    assert verdict["best_accuracy"] == 89.2 and verdict["best_accuracy_min"] == 89.1
    assert verdict["best_at_iso_accuracy"]  # 89.2 ≥ 89.5 − 0.3
    assert verdict["unbeaten_stock_targets"] == [0.95]  # only 89.6 at 300 B or 89.3 at 100 B: neither both
    rows[-1]["accuracy"] = 89.3
    assert check(rows, dense_accuracy=89.5)["stock_points_beaten"] == 2
    assert not check(rows, dense_accuracy=89.6)["best_at_iso_accuracy"]


def test_the_rate_rows_are_judged_on_every_seed_and_count_against_stock():
    rows = [_row("best", None, 100, 89.3), _row("rate", None, 80, 89.4), _row("rate", None, 70, 89.1),
            _row("stock", 0.9, 90, 89.3)]
    verdict = check(rows, dense_accuracy=89.5)
    assert verdict["rate_seeds"] == 2 and verdict["rate_accuracy_min"] == 89.1
    assert not verdict["rate_at_iso_accuracy_every_seed"]  # the mean (89.25) would pass; one seed does not
    assert verdict["unbeaten_stock_targets"] == []  # the rate run at 80 B and 89.4 beats stock's 90 B at 89.3
    rows[2]["accuracy"] = 89.2
    assert check(rows, dense_accuracy=89.5)["rate_at_iso_accuracy_every_seed"]
