"""The built-in stages of `compress`, one small class each; a recipe maps onto them one to one,
and its added stages (pipeline.stage) run between them.

Each stage has a `name` and `run(run, resume)`: `run` is the RunContext (the model, data, accuracies,
and `fit`, which trains with checkpoints after every epoch); `resume` is None for a fresh start,
or what the checkpoint this stage was interrupted in holds ({"state": …, "train": …}). A stage
that is resumed skips what it had already done before its first epoch (pruning, sharing: those
are in the restored model's masks and codebooks) and continues its training where it stopped.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..prune import GradualPruning, prune_, prune_dead_inputs_, prune_units_, ramp, scaled, sparsity_of
from ..quantize import RateLoss, harden_, round_, share_weights_
from ..structured import costs, prune_channels_, trace
from ..train import save_checkpoint
from ..train.distributed import barrier
from .recipe import ChannelStage, PruneStage, RateStage, Recipe, ShareStage
from .stage import StageResult, name_of

if TYPE_CHECKING:
    from .context import RunContext as Run

Resume = dict[str, Any] | None


class BuiltIn:
    """What a stage declares about itself, in one place: `name` (its seconds and checkpoints),
    `field` (the recipe field that configures it), `moment` (the weights.json snapshot taken
    after it), `score` (the validation score it reports last) and `seed` (the offset of its
    trainings' data-order seeds from the recipe's: round r of a stage that trains in rounds adds
    r). The offsets are the ones every published figure of this project was measured with
    (pruning's retrain is round 1; iterative round 1 and an AGP run share it, harmlessly: they
    never both run), so that every figure still reproduces bit for bit."""

    name: str
    field: str
    moment: str
    score: str
    seed: int

    def __init__(self, config: Any = None) -> None:
        self.config = config

    @classmethod
    def wanted(cls, recipe: Recipe) -> bool:
        return getattr(recipe, cls.field) is not None

    @classmethod
    def seed_of(cls, recipe: Recipe, round_: int = 0) -> int:
        return recipe.seed + cls.seed + round_


class Dense(BuiltIn):
    """Train the dense model (or load it with --from); it is written to DIR/dense.safetensors."""

    name, field, moment, score, seed = "dense", "dense", "dense", "dense", 0

    def run(self, run: Run, resume: Resume) -> None:
        recipe, d = run.recipe, run.recipe.distill
        if run.from_checkpoint is not None:
            run.load_dense(run.model)
        else:
            if d is not None and d.teacher:  # a student, taught by the teacher the recipe names
                loss = run.student_loss()
                try:
                    run.fit(recipe.dense, self.seed_of(recipe), "student", resume=resume, loss_fn=loss)
                finally:
                    loss.remove()
            else:
                run.fit(recipe.dense, self.seed_of(recipe), "dense", resume=resume)
            # A student's checkpoint too: later runs (--from, sweeps, benches) start from it.
            if run.main:  # it records the validation split it never trained on
                save_checkpoint(run.model, run.out / "dense.safetensors", meta={"validation": run.splits.info.get("val")})
            barrier()  # the teacher of later stages is read back from it, on every rank
        run.acc["dense"] = run.score(run.model)
        run.log(f"dense    {run.metric.name} {run.show(run.acc['dense'])}")


class Channels(BuiltIn):
    """Channel surgery in rounds: remove (along the cubic ramp to the target), then retrain."""

    name, field, moment, score, seed = "channels", "channels", "slim", "channels", 200

    @property
    def c(self) -> ChannelStage:
        return self.config

    def run(self, run: Run, resume: Resume) -> None:
        c = self.c
        first = resume["state"]["round"] if resume else 1
        for step in range(first, c.iterations + 1):
            if not (resume and step == first):
                changed = self.cut(run, step)
                run.log(f"channels {step}/{c.iterations}: {len(changed)} layers narrowed, "
                        f"{sum(a for a, _ in changed.values()):,} → {sum(b for _, b in changed.values()):,} channels")
            run.fit(c.retrain, self.seed_of(run.recipe, step), f"channels {step}/{c.iterations}",
                    resume=resume if step == first else None, state={"round": step}, **run.kd)
        run.acc["channels"] = run.score(run.model)
        params = sum(p.numel() for p in run.model.parameters())
        run.log(f"channels {run.metric.name} {run.show(run.acc['channels'])}  {params:,} parameters")

    def cut(self, run: Run, step: int) -> dict[str, tuple[int, int]]:
        """Round `step`: remove what takes the model from the ramp's value at step − 1 to its value at step."""
        c, x = self.c, run.example(2)
        before, now = ramp(1.0, step - 1, c.iterations), ramp(1.0, step, c.iterations)
        common = dict(example_inputs=x, importance=c.importance, data=run.train_set, ignore=c.ignore)
        if c.select == "knapsack":
            what, keep = next(iter(c.budget.items()))
            with torch.random.fork_rng(devices=[]):  # a measurement: torch's random stream must not notice
                full = costs(trace(run.fresh_model(), x), what)[1]
            current = costs(trace(run.model, x), what)[1]
            target = (1 - (1 - keep) * now) * full  # of the original model, kept after this round
            return prune_channels_(run.model, select="knapsack", budget={what: min(1.0, target / current)}, **common)

        def fraction(a: float) -> float:  # of the channels left, to reach a·ramp(step) of the original removed
            return 1 - (1 - a * now) / (1 - a * before)

        amount = ({k: fraction(v) for k, v in c.amount.items()} if isinstance(c.amount, dict) else fraction(c.amount))
        return prune_channels_(run.model, amount, select=c.select, round_to=c.round_to, **common)


class Prune(BuiltIn):
    """Unit pruning (optional), then magnitude pruning by the recipe's schedule, with retraining."""

    name, field, moment, score, seed = "prune", "prune", "pruned", "pruned", 0

    @property
    def p(self) -> PruneStage:
        return self.config

    @classmethod
    def wanted(cls, recipe: Recipe) -> bool:
        p = recipe.prune
        return p is not None and (p.sparsity is not None or p.quality is not None or p.units is not None)

    def run(self, run: Run, resume: Resume) -> None:
        p, model = self.p, run.model
        budget = p.steps * p.retrain.epochs
        if p.units is not None and resume is None:
            removed = prune_units_(model, p.units)
            prune_dead_inputs_(model, run.train_set)
            run.log(f"units    removed {', '.join(f'{k} {v}' for k, v in removed.items())}")
        if p.sparsity is None and p.quality is None:
            run.fit(p.retrain, self.seed_of(run.recipe, 1), "retrain", epochs=budget, resume=resume, **run.kd)
        elif p.schedule == "agp":
            pruner = GradualPruning(model, p.sparsity, end=p.ramp_end, every=p.every, scope=p.scope)
            run.fit(p.retrain, self.seed_of(run.recipe, 1), "gradual pruning", epochs=budget, callbacks=[pruner],
                    resume=resume, **run.kd)
        elif p.schedule == "direct":
            if resume is None:
                prune_(model, p.pruning())
            run.fit(p.retrain, self.seed_of(run.recipe, 1), "direct pruning", epochs=budget, resume=resume, **run.kd)
        else:
            first = resume["state"]["round"] if resume else 1
            for step in range(first, p.steps + 1):
                if not (resume and step == first):
                    prune_(model, p.pruning(scaled(p.sparsity, ramp(1.0, step, p.steps)))
                           if p.sparsity is not None else p.pruning())
                run.fit(p.retrain, self.seed_of(run.recipe, step), f"prune {step}/{p.steps}",
                        resume=resume if step == first else None, state={"round": step}, **run.kd)
        run.acc["pruned"] = run.score(model)
        run.log(f"pruned   {run.metric.name} {run.show(run.acc['pruned'])}  sparsity "
                f"{100 * sparsity_of(model)['total']:.1f}%")


class Rate(BuiltIn):
    """Rate-aware training (deepzip.RateLoss), then the hard assignment (deepzip.harden_)."""

    name, field, moment, score, seed = "rate", "rate", "rated", "hardened", 300

    @property
    def r(self) -> RateStage:
        return self.config

    def run(self, run: Run, resume: Resume) -> None:
        r, model = self.r, run.model
        task = run.kd.get("loss_fn")  # rate on top of distillation, when the recipe distills
        loss = RateLoss(model, r.weight, bits=r.bits, task=task)
        run.fit(r.train, self.seed_of(run.recipe), "rate training", loss_fn=loss, resume=resume)
        run.acc["rated"] = run.score(loss.quantized(model))
        hard = harden_(model, loss)
        run.rate = {name: {**layer, "bits": round(layer["bits"], 1)} for name, layer in hard.items()}
        run.acc["hardened"] = run.score(model)
        run.log(f"rated    {run.metric.name} {run.show(run.acc['rated'])} → {run.show(run.acc['hardened'])} with hard "
                f"codes; "
                + ", ".join(f"{k} {100 * v['sparsity']:.1f}% pruned, {v['centroids']} centroids"
                            for k, v in hard.items()))


class Share(BuiltIn):
    """Weight sharing (k-means per layer), centroid fine-tuning, then optional float16 rounding."""

    name, field, moment, score, seed = "share", "share", "shared", "quantized", 100

    @property
    def s(self) -> ShareStage:
        return self.config

    def run(self, run: Run, resume: Resume) -> None:
        s, model = self.s, run.model
        if resume is None:
            # Layers the rate stage shared keep the codebooks training chose.
            share_weights_(model, s.kmeans(), keep_shared=True)
            if s.bias_bits is not None:
                share_weights_(model, s.kmeans(bias=True), param="bias")
            run.acc["shared"] = run.score(model)
        run.fit(s.finetune, self.seed_of(run.recipe), "fine-tune centroids", resume=resume, **run.kd)
        # After training, which would move them off float16 values again.
        halves = ("bias",) * s.half_biases + ("weight_centroids", "bias_centroids") * s.half_codebooks
        if halves:
            round_(model, names=halves)
        run.acc["quantized"] = run.score(model)
        run.log(f"quantized {run.metric.name} {run.show(run.acc['quantized'])} (before centroid fine-tuning "
                f"{run.show(run.acc['shared'])})")


class Added:
    """A stage from outside the package (pipeline.stage), run as the built-in ones are: its result
    joins the run's scores (as NAME.KEY) and report.json's "stages"."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.name = self.moment = name_of(config)

    def run(self, run: Run, resume: Resume) -> StageResult:
        result = self.config.run(run, resume)
        if result is None:
            result = StageResult()
        if not isinstance(result, StageResult):
            raise TypeError(f"stage {self.name!r} returned a {type(result).__name__}, not a StageResult (or None).")
        run.acc.update({f"{self.name}.{k}": float(v) for k, v in result.scores.items()})
        run.log(f"{self.name:<8} " + ("  ".join(f"{k} {run.show(float(v))}" for k, v in result.scores.items())
                                      or "done"))
        return result


STAGES: tuple[type[BuiltIn], ...] = (Dense, Channels, Prune, Rate, Share)  # the order a run takes them in


def stages_of(recipe: Recipe) -> list[BuiltIn | Added]:
    """The stages a recipe runs, in order: the built-in ones it turns on, each followed by the
    stages added after it (saving the file is the run's own last step)."""
    out: list[BuiltIn | Added] = []
    for cls in STAGES:
        if cls.wanted(recipe):
            out.append(cls(getattr(recipe, cls.field)))
        out += [Added(config) for after, config in recipe.added if after == cls.field]
    return out
