"""deepzip compress under torchrun (two CPU processes, gloo): one model on every rank, one file."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import deepzip as dz
from deepzip.pipeline import load_recipe, run_recipe
from deepzip.train import read_checkpoint

RECIPE = """
model: lenet300
dataset: synthetic
dense: {epochs: 3, lr: 0.002}
prune: {sparsity: {fc1: 0.9, fc2: 0.8, fc3: 0.5}, units: {fc1: 0.3}, steps: 2, retrain: {epochs: 2, lr: 0.001}}
share: {bits: 4, finetune: {epochs: 2, lr: 0.0001}}
"""
TORCHRUN = Path(sys.executable).parent / "torchrun"


def _torchrun(recipe, out, digests, resume=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "DEEPZIP_RANK_DIGESTS": str(digests)}
    return subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "deepzip", "compress",
                             "--recipe", str(recipe), "--out", str(out), "--quiet", "--device", "cpu",
                             *(["--resume"] if resume else [])],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _children(pid):
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this python")
def test_two_ranks_hold_one_model_write_one_file_and_resume_after_a_rank_is_killed(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    digests = tmp_path / "digests"
    digests.mkdir()
    job = _torchrun(recipe, tmp_path / "ddp", digests)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0, output[-2000:]
    ranks = sorted(p.name for p in digests.iterdir())
    assert ranks == ["rank0.txt", "rank1.txt"]
    assert (digests / "rank0.txt").read_text() == (digests / "rank1.txt").read_text()  # bit-identical models
    assert output.count("wrote ") == 1 and sorted(p.name for p in (tmp_path / "ddp").glob("*.dzip")) == ["model.dzip"]
    ddp = json.loads((tmp_path / "ddp" / "report.json").read_text())
    single = run_recipe(load_recipe(recipe), tmp_path / "single", progress=False, log=lambda *a: None)
    assert abs(ddp["accuracy"]["from_file"] - single["accuracy"]["from_file"]) <= 3.0  # same global batches
    assert dz.evaluate(dz.load(tmp_path / "ddp" / "model.dzip"), dz.data.load("synthetic", train=False)) == \
        pytest.approx(ddp["accuracy"]["from_file"])

    # Kill one rank inside pruning: torchrun ends the job; the same command with --resume finishes it.
    job = _torchrun(recipe, tmp_path / "killed", digests)
    checkpoint = tmp_path / "killed" / "checkpoints" / "last.safetensors"
    deadline = time.time() + 240
    while time.time() < deadline and job.poll() is None:
        if checkpoint.exists():
            try:
                meta = read_checkpoint(checkpoint)[1]["meta"]
            except dz.ConfigError:
                meta = {}
            if meta.get("stage") == 1:
                ranks = [c for p in _children(job.pid) for c in [p, *_children(p)]]
                workers = [p for p in ranks if "deepzip" in Path(f"/proc/{p}/cmdline").read_text(errors="ignore")]
                os.kill(workers[-1], signal.SIGKILL)
                break
        time.sleep(0.05)
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0 and not (tmp_path / "killed" / "model.dzip").exists(), output[-2000:]
    job = _torchrun(recipe, tmp_path / "killed", digests, resume=True)
    output, _ = job.communicate(timeout=300)
    assert job.returncode == 0 and "resuming at stage 2" in output, output[-2000:]
    assert (tmp_path / "killed" / "model.dzip").read_bytes() == (tmp_path / "ddp" / "model.dzip").read_bytes()
