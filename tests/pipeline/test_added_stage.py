"""A stage defined here, outside the package, runs inside a Recipe through dz.compress like a
built-in one: it is timed, reported, recorded in the file's recipe, checkpointed after every epoch
of its training, and a run SIGKILLed inside it resumes to the same bytes.

The children run `main` of this very module (tests/pipeline is put on their path)."""
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_resume import _env, kill_when

import deepzip as dz
from deepzip import DeepzipError
from deepzip.pipeline import Recipe, ShareStage, StageResult, TrainStage, from_dict, stage


@dataclass(frozen=True)
class ColumnWeighted:
    """A pruning criterion of this test's own: |w| times the norm of the weight's input column."""

    name: str = "column-weighted"

    def scores(self, weight) -> torch.Tensor:
        w = weight.value.detach()
        return w.abs() * w.norm(dim=0, keepdim=True) if w.dim() == 2 else w.abs()


@stage("own_prune")
@dataclass(frozen=True)
class OwnPrune:
    """Prune by ColumnWeighted, retrain, and report the validation score before and after."""

    sparsity: float = 0.7
    retrain: TrainStage = TrainStage(epochs=3, lr=1e-3)

    def run(self, ctx, resume):
        # What the stage measured before its first epoch travels in its checkpoints' state.
        before = resume["state"]["before"] if resume else ctx.score(ctx.model)
        if resume is None:
            dz.prune_(ctx.model, sparsity=self.sparsity, criterion=ColumnWeighted())
        ctx.fit(self.retrain, ctx.recipe.seed + 7, "own pruning", resume=resume, state={"before": before})
        density = sum(int(m.sum()) for n, m in ctx.model.named_buffers() if n.endswith("weight_mask"))
        return StageResult(scores={"before": before, "after": ctx.score(ctx.model)}, notes={"kept": density})


def recipe() -> Recipe:
    return Recipe.of([TrainStage(epochs=2, lr=2e-3), OwnPrune(), ShareStage(bits=4, finetune=TrainStage(epochs=1))],
                     model="lenet300", dataset="synthetic", coder="auto")


def main(out: str, resume: bool) -> None:
    dz.compress("lenet300", "synthetic", recipe=recipe(), out=out, resume=resume, progress=False,
                log=lambda *a: None)


def _child(out: Path, resume: bool) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_added_stage as t; " \
           f"t.main({str(out)!r}, {resume})"
    return subprocess.Popen([sys.executable, "-c", code], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_an_added_stage_runs_reports_and_resumes_to_the_same_bytes(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    result = dz.compress("lenet300", "synthetic", recipe=recipe(), out=whole, progress=False, log=lambda *a: None)

    stages = result.report["stages"]
    assert [s["name"] for s in stages] == ["own_prune"] and stages[0]["seconds"] > 0
    assert set(stages[0]["scores"]) == {"before", "after"}
    kept = stages[0]["notes"]["kept"]
    assert kept == pytest.approx(0.3 * (784 * 300 + 300 * 100 + 100 * 10), abs=3)  # 70 % pruned, every layer
    assert result.report["scores"]["own_prune.after"] == stages[0]["scores"]["after"]
    assert [h["stage"] for h in json.loads((whole / "history.json").read_text())].count("own pruning") == 3
    recorded = dz.inspect(result.path)["meta"]["recipe"]["added"]
    assert recorded == [{"stage": "own_prune", "after": "dense", "sparsity": 0.7,
                         "retrain": {"epochs": 3, "lr": 1e-3, "optimizer": "adam", "momentum": 0.9,
                                     "weight_decay": 0.0, "batch_size": 128}}]

    assert kill_when(_child(broken, False), broken, (1, True)) == (1, True)  # killed inside own_prune, after one of its epochs
    assert not (broken / "model.dzip").exists()
    resumed = _child(broken, True)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-800:]
    assert (broken / "model.dzip").read_bytes() == result.path.read_bytes()
    report = json.loads((broken / "report.json").read_text())
    assert report["scores"] == result.report["scores"]
    assert [s["scores"] for s in report["stages"]] == [s["scores"] for s in stages]


def test_a_recipe_with_an_added_stage_round_trips_through_yaml_keys():
    r = recipe()
    assert r.prune is None and r.share.bits == 4 and r.added == ((("dense", OwnPrune()),))
    again = from_dict(r.to_dict())
    assert again == r
    changed = from_dict({**r.to_dict(), "added": [{"stage": "own_prune", "after": "share", "sparsity": 0.5}]})
    assert changed.added == (("share", OwnPrune(sparsity=0.5)),)


@pytest.mark.parametrize("added, message", [
    ([{"stage": "nope"}], "added[0].stage 'nope' is not a registered stage"),
    ([{"stage": "own_prune", "sparsty": 0.5}], "unknown key added[0].sparsty"),
    ([{"stage": "own_prune", "after": "later"}], "added[0] must be (one of dense, channels"),
    ("own_prune", "added must be a list"),
])
def test_a_bad_added_stage_is_one_sentence_with_its_path(added, message):
    with pytest.raises(DeepzipError, match=message.replace("(", r"\(").replace("[", r"\[")):
        from_dict({"model": "lenet300", "added": added})


def test_stages_out_of_order_or_unregistered_are_refused():
    @dataclass(frozen=True)
    class Loose:
        def run(self, ctx, resume):
            return None

    with pytest.raises(DeepzipError, match="Loose is not a registered stage"):
        Recipe.of([Loose()])
    with pytest.raises(DeepzipError, match="out of place"):
        Recipe.of([ShareStage(), TrainStage()])
    with pytest.raises(DeepzipError, match="is taken"):
        stage("share")(Loose)
    with pytest.raises(DeepzipError, match="must be a frozen dataclass"):
        stage("loose")(type("Plain", (), {"run": lambda self, ctx, resume: None}))
