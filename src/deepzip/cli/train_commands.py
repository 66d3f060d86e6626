"""The commands that train: compress, distill, sensitivity."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError
from . import _run, app


@app.command()
def compress(
    model: Optional[str] = typer.Option(None, help="registry name of the model [default: lenet300, or the recipe's]"),
    data: Optional[str] = typer.Option(None, help="data set name [default: fashion-mnist, or the recipe's]"),
    out: Path = typer.Option(Path("out"), help="output directory for model.dzip and the reports"),
    from_: Optional[Path] = typer.Option(None, "--from", help="start from this dense safetensors checkpoint"),
    seed: Optional[int] = typer.Option(None, help="random seed [default: the recipe's]"),
    recipe: Optional[Path] = typer.Option(None, help="YAML recipe [default: deepzip's recipe for the model]"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    coder: Optional[str] = typer.Option(None, help="huffman, ans, context or auto [default: the recipe's]"),
    limit: Optional[int] = typer.Option(None, help="use only the first N samples of each split (quick runs)"),
    device: str = typer.Option("auto", help="auto (a CUDA GPU if PyTorch sees one), cpu, cuda or cuda:N"),
    resume: bool = typer.Option(False, help="continue an interrupted run from OUT/checkpoints (same recipe and data)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    rate_weights: Optional[str] = typer.Option(None, help="with a recipe that has a rate stage: one run per rate "
                                               "weight (comma-separated, like 0.03,0.1) into OUT/rate-<λ>"),
    max_drop: Optional[float] = typer.Option(None, help="with --rate-weights: copy the smallest file at most this "
                                             "many points below the dense accuracy to OUT/model.dzip"),
) -> None:
    """Train (or load), prune, share weights, encode to OUT/model.dzip, reload it and evaluate.

    After a crash or a kill, the same command with --resume continues from OUT/checkpoints.

    With --rate-weights, one run per weight of the recipe's rate stage, all from one dense model;
    OUT/report.html compares them (accuracy against ratio) and OUT/sweep.json lists them.

    OUT/report.html shows the run; OUT/history.json has a row per epoch.

    Watch the curves live with `tensorboard --logdir OUT/tb`.
    """
    from ..pipeline import compress as run, from_dict, load_recipe, parse_weights, sweep

    def go():
        given = {"model": model, "dataset": data, "seed": seed, "coder": coder}
        r = load_recipe(recipe, **given) if recipe else from_dict({}, **given)
        if max_drop is not None and rate_weights is None:
            raise ConfigError("--max-drop picks among the runs of --rate-weights; give both.")
        if rate_weights is not None:
            result = sweep(r, parse_weights(rate_weights), out, max_drop=max_drop, data_dir=data_dir,
                           from_checkpoint=from_, limit=limit, resume=resume, device=device, progress=not quiet,
                           log=typer.echo)
            if result.get("chosen"):
                typer.echo(f"wrote {out / 'model.dzip'} (a copy of {result['chosen']}/model.dzip)")
            return
        report = run(r, out, data_dir=data_dir, from_checkpoint=from_, limit=limit, resume=resume, device=device,
                     progress=not quiet, log=typer.echo)
        if not report:  # a rank other than 0 of a torchrun job: rank 0 reports
            return
        typer.echo((out / "report.md").read_text())
        typer.echo(f"wrote {out / 'model.dzip'} ({report['file_bytes']:,} bytes, {report['ratio']:.1f}× smaller "
                   f"than {report['dense_bytes']:,} dense bytes)")

    _run(go)



def _key_values(items: list[str], what: str, sep: str = "=") -> dict[str, Any]:
    import yaml

    from ..errors import ConfigError

    out = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise ConfigError(f"{what} takes key{sep}value, not {item!r}.")
        out[key] = yaml.safe_load(value) if sep == "=" else value
    return out



@app.command()
def distill(
    teacher: Path = typer.Option(..., help="the teacher: a .dzip, or a safetensors checkpoint that records its architecture"),
    student: str = typer.Option(..., help="registry name of the student model"),
    student_arg: list[str] = typer.Option([], help="a size knob of the student, e.g. width=0.5 (repeatable)"),
    hint: list[str] = typer.Option([], help="student_layer:teacher_layer feature pair (repeatable)"),
    weights: str = typer.Option("1,0,0", help="λ1,λ2,λ3: backbone (soft targets + labels), hints, adversarial"),
    temperature: float = typer.Option(4.0, help="softening temperature of the soft targets"),
    alpha: float = typer.Option(0.5, help="the soft targets' share of the backbone term"),
    adversary: str = typer.Option("logits", help="what the discriminator compares: logits, or a hinted student layer"),
    epochs: float = typer.Option(10, help="epochs of the student's training"),
    lr: float = typer.Option(1e-3, help="learning rate"),
    data: str = typer.Option("fashion-mnist", help="data set name"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    image_size: Optional[int] = typer.Option(None, help="resize the images (32 for CIFAR-style networks)"),
    recipe: Optional[Path] = typer.Option(None, help="a recipe for what follows (prune, share…); default: nothing"),
    out: Path = typer.Option(Path("out/student"), help="output directory"),
    limit: Optional[int] = typer.Option(None, help="use only the first N samples of each split"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    resume: bool = typer.Option(False, help="continue an interrupted run"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train a smaller student from a teacher (soft targets, hint regressors, an adversarial
    loss), then, with --recipe, prune, share and code it into OUT/model.dzip."""
    from ..errors import ConfigError
    from ..pipeline import compress as run, from_dict, load_recipe

    def go():
        try:
            lambdas = [float(w) for w in weights.split(",")]
        except ValueError:
            lambdas = []
        if len(lambdas) != 3:
            raise ConfigError(f"--weights takes three numbers λ1,λ2,λ3, not {weights!r}.")
        changes = {"model": student, "model_args": _key_values(student_arg, "--student-arg"), "dataset": data,
                   "image_size": image_size, "dense": {"epochs": epochs, "lr": lr},
                   "distill": {"teacher": str(teacher), "hints": _key_values(hint, "--hint", ":"),
                               "weights": lambdas, "temperature": temperature, "alpha": alpha,
                               "adversary": adversary}}
        if recipe:  # later stages learn from the teacher's soft targets as the recipe's distill.weight says
            r = load_recipe(recipe, model=student)
            base = r.to_dict()
            base["distill"] = {**(base["distill"] or {}), **changes.pop("distill")}
            r = from_dict({**base, **{k: v for k, v in changes.items() if k not in ("dense",)},
                           "dense": {**base["dense"], **changes["dense"]}})
        else:
            changes["distill"]["weight"] = 0.0
            r = from_dict({**changes, "prune": None, "share": None})
        report = run(r, out, data_dir=data_dir, limit=limit, resume=resume, device=device, progress=not quiet,
                     log=typer.echo)
        if report:
            typer.echo(f"wrote {out / 'model.dzip'} ({report['file_bytes']:,} bytes; student "
                       f"{report['accuracy']['from_file']:.2f}% from the file)")

    _run(go)



@app.command()
def sensitivity(
    model: str = typer.Option("lenet300", help="registry name of the model"),
    data: str = typer.Option("fashion-mnist", help="data set name"),
    from_: Path = typer.Option(..., "--from", help="dense safetensors checkpoint to analyse"),
    out: Path = typer.Option(Path("out/sensitivity"), help="output directory"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    samples: int = typer.Option(5000, help="training samples the probes are scored on (the test set stays unseen)"),
    max_drop: Optional[float] = typer.Option(None, help="allocate: the smallest file whose summed per-layer drops stay within this many points"),
    target_ratio: Optional[float] = typer.Option(None, help="allocate: the most accurate allocation that reaches this ratio"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Prune each layer alone over a grid, and share its weights over a grid of bits; write the
    curves (JSON, plot) and, with --max-drop or --target-ratio, a recipe with per-layer budgets,
    checked by applying it (without retraining) and measuring the file and the accuracy."""
    from .. import data as datasets
    from .. import models
    from ..files import write_text
    from ..pipeline import from_dict, save_recipe
    from ..pipeline.sensitivity import allocate, plot, scan, verify
    from ..train import evaluate as accuracy, load_checkpoint, resolve_device

    def go():
        where = resolve_device(device)
        probe = datasets.load(data, data_dir, train=True, limit=samples)
        net = models.create(model, in_channels=probe.x.shape[1], image_size=probe.x.shape[2], classes=probe.classes)
        load_checkpoint(net, from_)
        net.to(where)
        result = scan(net, lambda m: accuracy(m, probe), progress=not quiet)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "sensitivity.json", json.dumps(result, indent=2))
        plot(result, str(out / "sensitivity.png"))
        typer.echo(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'} (baseline {result['baseline']:.2f}%)")
        if max_drop is not None or target_ratio is not None:
            choice = allocate(result, max_drop=max_drop, target_ratio=target_ratio)
            measured = verify(net, choice, lambda m: accuracy(m, probe), out / "verify.dzip")
            recipe = from_dict({"prune": {"sparsity": choice["sparsity"]}, "share": {"bits": choice["bits"]}},
                               model=model, dataset=data)
            save_recipe(recipe, out / "recipe.yaml")
            typer.echo(f"allocated: sparsity {choice['sparsity']}, bits {choice['bits']}")
            typer.echo(f"estimated {choice['estimated_ratio']:.1f}× at {choice['estimated_drop']:.2f} points below "
                       f"{result['baseline']:.2f}% (summed per-layer drops, before retraining); measured by applying "
                       f"it without retraining: {measured['ratio']:.1f}× at {measured['drop']:.2f} points below")
            typer.echo(f"wrote {out / 'recipe.yaml'}: deepzip compress --recipe {out / 'recipe.yaml'} --from {from_}")

    _run(go)

