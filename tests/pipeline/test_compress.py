import pytest
import torch

import deepzip as dz
from deepzip.pipeline import run_recipe
from deepzip.pipeline.recipe import from_dict


def test_agp_recipe_with_half_biases(tmp_path):
    r = from_dict({
        "model": "lenet300", "dataset": "synthetic", "coder": "ans", "index_bits": "auto",
        "dense": {"epochs": 1, "lr": 2e-3},
        "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8}, "schedule": "agp", "steps": 2, "every": 5,
                  "retrain": {"epochs": 0.5, "lr": 1e-3}},
        "share": {"bits": {"fc1": 3, "linear": 4}, "finetune": {"epochs": 0.25, "lr": 1e-4}, "half_biases": True,
                  "half_codebooks": True},
    })
    report = run_recipe(r, tmp_path, limit=1024, progress=False, log=lambda *a: None)
    model = dz.load(tmp_path / "model.dzip")
    assert (model.fc1.weight == 0).float().mean() == pytest.approx(0.9, abs=1e-3)
    assert (model.fc2.weight == 0).float().mean() == pytest.approx(0.8, abs=1e-3)
    assert torch.unique(model.fc1.weight).numel() <= 2**3
    assert torch.equal(model.fc1.bias.half().float(), model.fc1.bias)
    assert torch.equal(model.fc2.weight.half().float(), model.fc2.weight)  # float16 centroids
    from deepzip.dzip import DzipReader
    with DzipReader(tmp_path / "model.dzip") as r:
        assert {e["name"]: e.get("stored") for e in r.header["tensors"]}["fc2.weight"] == "float16"
    entries = {e["layer"]: e for e in dz.inspect(tmp_path / "model.dzip")["layers"]}
    assert entries["fc1.bias"]["bytes"] == 2 * 300
    assert report["accuracy"]["from_file"] == report["accuracy"]["quantized"]


def test_units_and_distillation_recipe(tmp_path):
    r = from_dict({
        "model": "lenet300", "dataset": "synthetic", "coder": "auto", "index_bits": "auto",
        "dense": {"epochs": 1, "lr": 2e-3},
        "prune": {"units": {"fc1": 0.5}, "sparsity": {"fc1": 0.9, "fc2": 0.8}, "schedule": "agp", "steps": 2,
                  "every": 5, "retrain": {"epochs": 0.5, "lr": 1e-3}},
        "share": {"bits": 4, "finetune": {"epochs": 0.25, "lr": 1e-4}, "half_biases": True,
                  "bias_bits": {"fc1": 3, "fc3": 2}},
        "distill": {"weight": 0.5, "temperature": 3},
    })
    report = run_recipe(r, tmp_path, limit=1024, progress=False, log=lambda *a: None)
    model = dz.load(tmp_path / "model.dzip")
    dead = (model.fc1.weight == 0).all(dim=1)
    assert int(dead.sum()) == 150 and torch.all(model.fc1.bias[dead] == 0)
    assert torch.all(model.fc2.weight[:, dead] == 0)  # the columns the removed units fed went too
    # fc1's and fc3's biases are shared (the removed units' stay zero), fc2's only rounded to float16
    assert torch.unique(model.fc1.bias[~dead]).numel() <= 7 and torch.unique(model.fc3.bias).numel() <= 3
    assert torch.unique(model.fc2.bias).numel() > 7 and torch.equal(model.fc2.bias.half().float(), model.fc2.bias)
    layers = {e["layer"]: e for e in dz.inspect(tmp_path / "model.dzip")["layers"]}
    assert layers["fc1.bias"]["bytes"] < 150 * 2 / 2  # 3-bit codes and a 7-entry codebook: under half of float16
    assert (model.fc1.weight == 0).float().mean() == pytest.approx(0.9, abs=1e-3)
    assert report["accuracy"]["from_file"] == report["accuracy"]["quantized"]
    meta = dz.inspect(tmp_path / "model.dzip")["meta"]
    # what differs from distill's defaults
    assert meta["recipe"]["distill"] == {"temperature": 3} and "seed" not in meta["recipe"]


def test_a_stage_that_leaves_the_model_at_chance_stops_the_run_and_writes_no_file(tmp_path):
    r = from_dict({"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 1, "lr": 1e-3},
                   "prune": {"sparsity": 0.9999, "steps": 1, "retrain": {"epochs": 0.1, "lr": 1e-3}}})
    with pytest.raises(dz.TrainingError, match=r"prune 1/1: validation accuracy fell to .* most frequent class .* lower"):
        run_recipe(r, tmp_path, limit=512, progress=False, log=lambda *a: None)
    assert not (tmp_path / "model.dzip").exists() and not (tmp_path / "report.json").exists()


def test_a_diverging_dense_stage_stops_the_run(tmp_path):
    r = from_dict({"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 1, "lr": 1000.0,
                                                                          "optimizer": "sgd"}})
    with pytest.raises(dz.TrainingError, match="dense: the loss became|dense: test accuracy fell"):
        run_recipe(r, tmp_path, limit=512, progress=False, log=lambda *a: None)
    assert not (tmp_path / "model.dzip").exists()
