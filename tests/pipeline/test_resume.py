"""A compress run killed with SIGKILL and resumed ends exactly where an uninterrupted one does."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import deepzip as dz
from deepzip.pipeline import from_dict, load_recipe, run_recipe
from deepzip.train import read_checkpoint

# Small enough to run in seconds, with epochs long enough (~0.2 s) to be killed inside.
RECIPE = """
model: lenet300
dataset: synthetic
coder: auto
index_bits: auto
dense: {epochs: 3, lr: 0.002}
prune: {sparsity: {fc1: 0.9, fc2: 0.8, fc3: 0.5}, units: {fc1: 0.3}, steps: 2, retrain: {epochs: 2, lr: 0.001}}
share: {bits: 4, finetune: {epochs: 3, lr: 0.0001}, half_codebooks: true}
distill: {weight: 0.5, temperature: 3}
"""
STAGES = {"dense": 0, "prune": 1, "share": 2}


def _command(recipe, out, resume=False):
    return [sys.executable, "-m", "deepzip", "compress", "--recipe", str(recipe), "--out", str(out), "--quiet",
            *(["--resume"] if resume else [])]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _where(out):
    """(stage index, inside the stage?) of the last checkpoint, or None while there is none."""
    path = out / "checkpoints" / "last.safetensors"
    if not path.exists():
        return None
    _, info = read_checkpoint(path)
    return info["meta"]["stage"], "step" in (info["train"] or {})


def _kill_inside(recipe, out, stage, resume, stages=STAGES):
    """Start compress, SIGKILL it as soon as it has checkpointed an epoch of `stage` (so it dies
    in that stage's next epoch), and return where its last checkpoint stands."""
    child = subprocess.Popen(_command(recipe, out, resume), env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    return kill_when(child, out, (stages[stage], True))


def kill_when(child, out, where):
    """SIGKILL `child` as soon as its run's last checkpoint is at `where` ((stage index, inside
    it?)); returns where the checkpoint stands after the kill."""
    seen = None
    try:
        while child.poll() is None:
            path = out / "checkpoints" / "last.safetensors"
            stamp = path.stat().st_mtime_ns if path.exists() else None
            if stamp is not None and stamp != seen:
                seen = stamp
                if _where(out) == where:
                    child.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.002)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL, f"the run ended before it could be killed at {where}: " \
                                                f"{child.stderr.read().decode()[-500:]}"
    return _where(out)


def test_killed_three_times_and_resumed_it_ends_with_the_same_bytes(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    # The uninterrupted run in this process (one thread, as the children): it saves a start-up.
    run_recipe(load_recipe(recipe), whole, progress=False, log=lambda *a: None)

    for stage in ("dense", "prune", "share"):
        stopped = _kill_inside(recipe, broken, stage, resume=stage != "dense")
        assert stopped[0] == STAGES[stage]  # the kill landed in that stage, after one of its epochs
        assert not (broken / "model.dzip").exists()
    subprocess.run(_command(recipe, broken, resume=True), env=_env(), check=True, stdout=subprocess.DEVNULL)

    assert (broken / "model.dzip").read_bytes() == (whole / "model.dzip").read_bytes()
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, broken))
    assert a["accuracy"] == b["accuracy"]
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (whole, broken))
    assert [(r["stage"], r["epoch"], r["loss"], r["accuracy"]) for r in ha] == \
           [(r["stage"], r["epoch"], r["loss"], r["accuracy"]) for r in hb]

    # TensorBoard shows one curve per scalar: what the killed runs wrote past each resume point is purged.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(broken / "tb"))
    events.Reload()
    assert {"train/loss", "train/lr", "val/accuracy", "model/sparsity"} <= set(events.Tags()["scalars"])
    steps = [e.step for e in events.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and len(steps) == len(ha)
    assert [round(e.value, 4) for e in events.Scalars("val/accuracy")] == [round(r["accuracy"], 4) for r in ha]


RATE_RECIPE = """
model: lenet300
dataset: synthetic
coder: auto
dense: {epochs: 2, lr: 0.002}
prune: {sparsity: {fc1: 0.5}, steps: 1, retrain: {epochs: 1, lr: 0.001}}
rate: {weight: 0.1, bits: {fc1: 3, linear: 2}, train: {epochs: 3, lr: 0.001}}
share: {finetune: {epochs: 1, lr: 0.0001}}
"""


def test_a_run_killed_inside_rate_training_resumes_to_the_same_bytes(tmp_path):
    """The rate stage's own state (centroids, spreads, code frequencies) comes back from the
    checkpoint with the model's, so the resumed run hardens to the same codes."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RATE_RECIPE)
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    run_recipe(load_recipe(recipe), whole, progress=False, log=lambda *a: None)
    stopped = _kill_inside(recipe, broken, "rate", resume=False, stages={"rate": 2})
    assert stopped == (2, True)
    subprocess.run(_command(recipe, broken, resume=True), env=_env(), check=True, stdout=subprocess.DEVNULL)
    assert (broken / "model.dzip").read_bytes() == (whole / "model.dzip").read_bytes()
    a, b = (json.loads((d / "report.json").read_text()) for d in (whole, broken))
    assert a["accuracy"] == b["accuracy"] and a["rate"] == b["rate"]


def _tiny(**changes):
    r = {"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 1}, "prune": {"sparsity": 0.5, "steps": 1,
         "retrain": {"epochs": 0.5}}, "share": {"bits": 3, "finetune": {"epochs": 0.25}}}
    return from_dict({**r, **changes})


def test_a_directory_of_another_run_is_refused_and_the_same_run_starts_over(tmp_path):
    quiet = dict(limit=512, progress=False, log=lambda *a: None)
    first = run_recipe(_tiny(), tmp_path, **quiet)
    with pytest.raises(dz.RunStateError, match="another run"):
        run_recipe(_tiny(seed=1), tmp_path, **quiet)
    with pytest.raises(dz.RunStateError, match="another run"):
        run_recipe(_tiny(seed=1), tmp_path, resume=True, **quiet)
    assert run_recipe(_tiny(), tmp_path, **quiet)["file_bytes"] == first["file_bytes"]  # over again, same bytes
    again = run_recipe(_tiny(), tmp_path, resume=True, **quiet)  # a finished run resumes to its end at once
    assert again["accuracy"] == first["accuracy"] and again["file_bytes"] == first["file_bytes"]


def test_checkpoints_need_no_pickle_and_hold_the_structure(tmp_path):
    run_recipe(_tiny(), tmp_path, limit=512, progress=False, log=lambda *a: None)
    tensors, info = read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")
    assert info["structure"]["shared"] == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert {"fc1.weight_centroids", "fc1.weight_assign", "fc1.bias"} <= set(tensors)
    model = dz.create_model("lenet300", in_channels=1, image_size=28, classes=10)
    dz.load_checkpoint(model, tmp_path / "checkpoints" / "last.safetensors")
    assert dz.reparam.is_shared(model.fc1)
    back = dz.load(tmp_path / "model.dzip")
    import torch
    assert torch.equal(back.fc2.weight, model.fc2.weight)


def test_a_channel_pruned_run_resumes_from_a_slim_checkpoint(tmp_path, monkeypatch):
    from deepzip.train import callbacks

    r = from_dict({"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 2, "lr": 2e-3},
                   "channels": {"amount": 0.5, "iterations": 2, "importance": "l2", "retrain": {"epochs": 2}},
                   "prune": {"sparsity": 0.8, "steps": 1, "retrain": {"epochs": 1}},
                   "share": {"bits": 5, "finetune": {"epochs": 1}}})
    quiet = dict(limit=512, progress=False, log=lambda *a: None)
    whole = run_recipe(r, tmp_path / "whole", **quiet)
    real = callbacks.Checkpoint.on_epoch_end

    class Killed(Exception):
        pass

    def die_in_round_two(self, state):
        real(self, state)
        if state.desc == "channels 2/2":
            raise Killed

    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", die_in_round_two)
    with pytest.raises(Killed):
        run_recipe(r, tmp_path / "broken", **quiet)
    monkeypatch.setattr(callbacks.Checkpoint, "on_epoch_end", real)
    tensors, info = read_checkpoint(tmp_path / "broken" / "checkpoints" / "last.safetensors")
    assert info["structure"]["widths"]["fc1"]["out_features"] < 300  # the checkpoint is of the slim model
    resumed = run_recipe(r, tmp_path / "broken", resume=True, **quiet)
    assert resumed["accuracy"] == whole["accuracy"]
    assert (tmp_path / "broken" / "model.dzip").read_bytes() == (tmp_path / "whole" / "model.dzip").read_bytes()
    assert resumed["dense_bytes"] == 4 * 266_610  # the ratio is against the full-width model



def test_rounded_channel_rounds_keep_multiples_in_every_round(tmp_path):
    r = from_dict({"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 1, "lr": 2e-3},
                   "channels": {"amount": 0.7, "iterations": 3, "round_to": 8, "retrain": {"epochs": 1}},
                   "prune": None, "share": None})
    run_recipe(r, tmp_path, limit=256, progress=False, log=lambda *a: None)
    history = json.loads((tmp_path / "history.json").read_text())
    widths = [h["widths"] for h in history if "widths" in h]
    assert all(w["fc1"] % 8 == 0 and w["fc2"] % 8 == 0 for w in widths)
    # each round rounds against the width it finds, so the end may keep more than 30 %, never less
    assert 88 <= widths[-1]["fc1"] < 300 and 24 <= widths[-1]["fc2"] < 100
