"""The CUDA paths: training, every stage, resume, the runtimes and the benchmark on a GPU.

CI has no GPU, so these are skipped there; they run wherever PyTorch sees one (a session lent
a GPU runs `pytest tests/test_cuda.py` there). What they pin down: a run on the GPU writes a
file the CPU reads back to the accuracy the run reported, a GPU run killed mid-stage resumes to
the same bytes, and the sparse runtimes give the dense model's outputs on the GPU.
"""
import json

import pytest
import torch
from typer.testing import CliRunner

import deepzip as dz
from deepzip.cli import app
from deepzip.data import load as load_data
from deepzip.pipeline import run_recipe
from deepzip.pipeline.recipe import from_dict
from deepzip.train import read_checkpoint

GPU = "cuda"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
QUIET = dict(progress=False, log=lambda *a: None)

STAGES = {  # every stage that trains, spread over two runs (a rate stage and channel surgery do not mix here)
    "channels": {"model": "lenet5", "dataset": "synthetic", "coder": "auto", "index_bits": "auto",
                 "dense": {"epochs": 3, "lr": 2e-3},
                 "channels": {"amount": 0.25, "iterations": 1, "importance": "taylor", "retrain": {"epochs": 0.5}},
                 "prune": {"units": {"fc1": 0.3}, "sparsity": {"conv2": 0.7, "fc1": 0.9, "fc2": 0.6}, "schedule": "agp",
                           "steps": 2, "every": 5, "retrain": {"epochs": 0.5, "lr": 1e-3}},
                 "share": {"bits": 4, "finetune": {"epochs": 0.25, "lr": 1e-4}, "half_codebooks": True},
                 "distill": {"weight": 0.5, "temperature": 3}},
    "rate": {"model": "lenet300", "dataset": "synthetic", "coder": "auto", "dense": {"epochs": 1, "lr": 2e-3},
             "prune": {"sparsity": {"fc1": 0.5}, "steps": 1, "retrain": {"epochs": 0.5, "lr": 1e-3}},
             "rate": {"weight": 0.1, "bits": {"fc1": 3, "linear": 2}, "train": {"epochs": 1, "lr": 1e-3}},
             "share": {"finetune": {"epochs": 0.5, "lr": 1e-4}}},
}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_run_on_the_gpu_writes_a_file_the_cpu_reads_to_the_reported_accuracy(tmp_path, name):
    report = run_recipe(from_dict(STAGES[name]), tmp_path, limit=1024, device=GPU, **QUIET)
    model = dz.load(tmp_path / "model.dzip")  # on the CPU
    assert next(model.parameters()).device.type == "cpu"
    test = load_data("synthetic", train=False)
    # The GPU's sums differ from the CPU's in the last bits: one test sample of 512 may flip.
    assert dz.evaluate(model, test) == pytest.approx(report["accuracy"]["from_file"], abs=100 / 512 + 1e-9)
    assert report["accuracy"]["from_file"] > 50  # it learned: 10 classes, chance is 10 %
    assert report["file_bytes"] == (tmp_path / "model.dzip").stat().st_size
    kept = {e["layer"]: e for e in dz.inspect(tmp_path / "model.dzip")["layers"]}
    assert all(e["bytes"] > 0 for e in kept.values())


def test_a_gpu_run_killed_inside_a_stage_resumes_to_the_same_bytes(tmp_path, monkeypatch):
    from deepzip.train import callbacks

    recipe = from_dict({**STAGES["rate"], "distill": {"weight": 0.5, "temperature": 3}})
    whole = run_recipe(recipe, tmp_path / "whole", limit=1024, device=GPU, **QUIET)
    real = callbacks.Checkpoint.on_epoch_end

    class Killed(Exception):
        pass

    def die_in_the_rate_stage(self, state):
        real(self, state)
        if state.desc.startswith("rate"):
            raise Killed

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", die_in_the_rate_stage)
    with pytest.raises(Killed):
        run_recipe(recipe, tmp_path / "broken", limit=1024, device=GPU, **QUIET)
    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", real)
    _, info = read_checkpoint(tmp_path / "broken" / "checkpoints" / "last.safetensors")
    assert info["meta"]["stage"] == 2 and "step" in (info["train"] or {})  # killed inside the rate stage
    resumed = run_recipe(recipe, tmp_path / "broken", limit=1024, device=GPU, resume=True, **QUIET)
    assert resumed["accuracy"] == whole["accuracy"]
    assert (tmp_path / "broken" / "model.dzip").read_bytes() == (tmp_path / "whole" / "model.dzip").read_bytes()


@pytest.mark.parametrize("runtime", ["sparse", "csr", "codebook"])
def test_the_sparse_runtimes_on_the_gpu_give_the_dense_model_s_outputs(tmp_path, runtime):
    model = dz.create_model("lenet5")
    dz.prune_(model, sparsity={"conv1": 0.4, "conv2": 0.92, "fc1": 0.96, "fc2": 0.8})
    dz.share_weights_(model)
    dz.save(model, tmp_path / "m.dzip")
    dense = dz.load(tmp_path / "m.dzip").to(GPU)
    fast = dz.load(tmp_path / "m.dzip", runtime=runtime).to(GPU)
    digits = load_data("digits", train=False)  # real handwriting, shipped with scikit-learn
    x = torch.nn.functional.interpolate(digits.x, size=(28, 28), mode="bilinear", align_corners=False).to(GPU)
    with torch.no_grad():
        a, b = fast(x), dense(x)
    assert a.device.type == torch.device(GPU).type
    # The dense convolutions run in TF32 on a GPU (PyTorch's default for cuDNN), the sparse
    # products in float32: measured on an H100, 1.1e-5 apart on outputs of 0.064.
    assert (a - b).abs().max() <= 2e-3 * b.abs().max()
    assert (a.argmax(1) == b.argmax(1)).float().mean() >= 0.995  # a near-tie may flip in the last bits


def test_the_benchmark_command_times_every_runtime_on_the_gpu(tmp_path):
    model = dz.create_model("lenet300")
    dz.prune_(model, sparsity={"fc1": 0.95, "fc2": 0.9, "fc3": 0.7})
    dz.share_weights_(model)
    dz.save(model, tmp_path / "m.dzip")
    result = CliRunner().invoke(app, ["benchmark", str(tmp_path / "m.dzip"), "--device", GPU, "--reps", "5",
                                      "--input-shape", "1,28,28", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.output.strip().splitlines()[-1])
    assert row["device"] == GPU
    for name in ("dense", "sparse", "csr", "codebook"):
        assert 0 < row[f"b1_{name}_min_ms"] <= row[f"b1_{name}_ms"]
        assert 0 < row[f"b64_{name}_min_ms"] <= row[f"b64_{name}_ms"]
