"""The recipe's rate stage and the λ sweep: sparsity and codebooks decided by training, into a file."""
import json
from pathlib import Path

import pytest
import torch

import deepzip as dz
from deepzip.errors import ConfigError
from deepzip.pipeline import from_dict, parse_weights, run_recipe, sweep
from deepzip.pipeline.recipe import load_recipe

QUIET = {"progress": False, "log": lambda *a: None}


def _recipe(weight, **changes):
    return from_dict({
        "model": "lenet300", "dataset": "synthetic", "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 1, "lr": 2e-3},
        "prune": {"units": {"fc1": 0.5}, "sparsity": {"fc1": 0.8, "fc2": 0.5}, "steps": 1,
                  "retrain": {"epochs": 0.25, "lr": 1e-3}},
        "rate": {"weight": weight, "bits": {"fc1": 3, "fc2": 3}, "train": {"epochs": 2, "lr": 5e-3}},
        "share": {"bits": 2, "finetune": {"epochs": 0.25, "lr": 1e-4}, "half_codebooks": True},
        **changes,
    })


def test_the_rate_stage_decides_sparsity_and_codebooks_and_the_file_keeps_them(tmp_path):
    report = run_recipe(_recipe(0.1), tmp_path, limit=1024, **QUIET)
    model = dz.load(tmp_path / "model.dzip")
    # fc1 and fc2 carry rate's codebooks (≤ 7 values beside zero), fc3 the share stage's k-means (≤ 3)
    assert torch.unique(model.fc1.weight).numel() <= 8 and torch.unique(model.fc2.weight).numel() <= 8
    assert torch.unique(model.fc3.weight).numel() <= 4
    dead = (model.fc1.weight == 0).all(dim=1)
    assert int(dead.sum()) >= 150  # the units pruned before rate training stay pruned
    rate = report["rate"]
    assert set(rate) == {"fc1.weight", "fc2.weight"}
    for name, layer in rate.items():
        values = model.get_parameter(name)
        assert layer["sparsity"] == pytest.approx(float((values == 0).double().mean()), abs=1e-9)
        assert layer["centroids"] == torch.unique(values[values != 0]).numel()
        assert 0 < layer["estimate_bytes"] and 0 < layer["file_bytes"]
    assert report["accuracy"]["from_file"] == report["accuracy"]["quantized"]
    assert {"rated", "hardened"} <= set(report["accuracy"])
    md = (tmp_path / "report.md").read_text()
    assert "Rate training (estimate against the file)" in md and f"{rate['fc1.weight']['estimate_bytes']:,} B" in md
    assert report["accuracy"]["rated"] == report["accuracy"]["hardened"]  # hardening changed no prediction
    assert dz.inspect(tmp_path / "model.dzip")["meta"]["recipe"]["rate"]["weight"] == 0.1


def test_a_larger_rate_weight_gives_a_smaller_file(tmp_path):
    sizes = {w: run_recipe(_recipe(w), tmp_path / str(w), limit=1024, **QUIET)["file_bytes"] for w in (0.0, 0.3)}
    assert sizes[0.3] < 0.8 * sizes[0.0], sizes


def test_a_sweep_runs_every_weight_from_one_dense_model_and_picks_the_smallest_file_in_reach(tmp_path):
    result = sweep(_recipe(0.0), [0.0, 0.3], tmp_path, max_drop=100.0, limit=1024, **QUIET)
    points = result["points"]
    assert [p["weight"] for p in points] == [0.0, 0.3]
    # the second run started from the first's dense model: it trained none and wrote none
    assert not (tmp_path / "rate-0.3" / "dense.safetensors").exists()
    history = json.loads((tmp_path / "rate-0.3" / "history.json").read_text())
    assert history and not any(row["stage"] == "dense" for row in history)
    assert points[0]["dense"] == points[1]["dense"]
    report = json.loads((tmp_path / "rate-0.3" / "report.json").read_text())
    assert report["recipe"]["rate"]["weight"] == 0.3
    smallest = min(points, key=lambda p: p["bytes"])
    assert result["chosen"] == smallest["dir"]
    assert (tmp_path / "model.dzip").read_bytes() == (Path(result["chosen"]) / "model.dzip").read_bytes()
    assert json.loads((tmp_path / "sweep.json").read_text())["chosen"] == smallest["dir"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_sweep_that_cannot_hold_the_accuracy_says_so_and_keeps_its_runs(tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("deepzip.pipeline.search")  # the sweep accepts as the search does
    judged = []

    def worse(self, path):  # every file 5 points under its dense model
        judged.append(path)
        return {"drop": 5.0, "se": 0.1, "accepted": False}

    monkeypatch.setattr(module.Judge, "__call__", worse)
    with pytest.raises(dz.TrainingError, match="within 0.5 of the dense"):
        sweep(_recipe(0.0), [0.3], tmp_path, max_drop=0.5, limit=512, **QUIET)
    assert judged == [tmp_path / "rate-0.3" / "model.dzip"]
    assert (tmp_path / "rate-0.3" / "model.dzip").exists() and not (tmp_path / "model.dzip").exists()
    assert json.loads((tmp_path / "sweep.json").read_text())["chosen"] is None


def test_bad_sweeps_and_rate_settings_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="needs a recipe with a rate stage"):
        sweep(from_dict({"model": "lenet300"}), [1e-6], tmp_path)
    for text in ("a,b", "-1", "1e-6,1e-6", "", "nan"):
        with pytest.raises(ConfigError, match="--rate-weights"):
            parse_weights(text)
    assert parse_weights("1e-6, 3e-6") == [1e-6, 3e-6]
    with pytest.raises(ConfigError, match="twice"):  # both would be rate-0.123456
        parse_weights("0.1234561,0.1234562")
    with pytest.raises(ConfigError, match="rate.bits.fc1 must be a whole number from 1 to 8"):
        _recipe(1e-4, rate={"bits": {"fc1": 9}})
    with pytest.raises(ConfigError, match="rate.weight must be"):
        _recipe(1e-4, rate={"weight": -1.0})
    with pytest.raises(ConfigError, match="rate.bits names 'fc9'"):
        run_recipe(_recipe(1e-4, rate={"bits": {"fc9": 3}}), tmp_path / "x", limit=256, **QUIET)


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    """YAML 1.1 reads `1e-5` as a string; a recipe means the number."""
    path = tmp_path / "r.yaml"
    path.write_text("model: lenet300\nrate: {weight: 1e-5, bits: 3}\ndense: {lr: 2e-3}\n")
    r = load_recipe(path)
    assert r.rate.weight == 1e-5 and r.dense.lr == 2e-3
    path.write_text("model: lenet300\ndense: {lr: fast}\n")
    with pytest.raises(ConfigError, match="dense.lr must be float"):
        load_recipe(path)


def test_a_weight_that_collapses_the_model_is_a_failed_point_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module("deepzip.pipeline.sweep")
    real = module.run_recipe

    def collapsing(recipe, out, **kw):
        if recipe.rate.weight > 0.5:
            raise dz.TrainingError("rate training: test accuracy fell to 10.0 %")
        return real(recipe, out, **kw)

    monkeypatch.setattr(module, "run_recipe", collapsing)
    result = sweep(_recipe(0.0), [5.0, 0.0], tmp_path, max_drop=100.0, limit=512, **QUIET)
    failed, done = result["points"]
    assert failed["weight"] == 5.0 and "10.0 %" in failed["failed"]
    assert done["weight"] == 0.0 and result["chosen"] == done["dir"]
    assert (tmp_path / "model.dzip").read_bytes() == (tmp_path / "rate-0" / "model.dzip").read_bytes()
