"""The commands that train: compress, distill, sensitivity."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError
from . import _run, app


@app.command()
def compress(
    model: Optional[str] = typer.Option(None, help="registry name of the model [default: lenet300, or the recipe's]"),
    model_py: Optional[str] = typer.Option(None, help="your own model: FILE.py:NAME or package.module:NAME (a class "
                                           "or a function returning an nn.Module)"),
    model_arg: list[str] = typer.Option([], help="an argument of --model-py's NAME, key=value (repeatable)"),
    hf: Optional[Path] = typer.Option(None, help="a Hugging Face model directory (config.json + safetensors), read "
                                      "offline"),
    data: Optional[str] = typer.Option(None, help="data set name [default: fashion-mnist, or the recipe's]"),
    out: Path = typer.Option(Path("out"), help="output directory for model.dzip and the reports"),
    from_: Optional[Path] = typer.Option(None, "--from", help="start from these dense weights (safetensors, or a "
                                         "PyTorch state dict .pt/.pth/.bin, read with weights_only)"),
    seed: Optional[int] = typer.Option(None, help="random seed [default: the recipe's]"),
    recipe: Optional[str] = typer.Option(None, help="YAML recipe, or a shipped recipe's name (deepzip recipes lists "
                                         "them) [default: deepzip's recipe for the model]"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    coder: Optional[str] = typer.Option(None, help="huffman, ans, context or auto [default: the recipe's]"),
    limit: Optional[int] = typer.Option(None, help="use only the first N samples of each split (quick runs)"),
    val_split: float = typer.Option(0.1, help="fraction of the training data held out as the validation split every "
                                    "choice is made on (a data set with its own validation split uses that)"),
    metric: Optional[str] = typer.Option(None, help="top1, perplexity (a causal language model; drops are then % "
                                         "rises) or cosine (an encoder, against its float self: 1 − mean cosine) "
                                         "[default: top1; with --no-retrain, by the model]"),
    retrain: bool = typer.Option(True, "--retrain/--no-retrain", help="--no-retrain: a pretrained model in minutes, "
                                 "no training (calibrate, round each layer against its inputs, entropy code)"),
    calib_text: list[Path] = typer.Option([], help="with --no-retrain --hf: text files, cut into disjoint calibration, "
                                          "validation and test samples (repeatable)"),
    bits: Optional[float] = typer.Option(None, help="with --no-retrain, instead of --max-drop: a size, in mean coded "
                                         "bits per weight"),
    code_bits: Optional[int] = typer.Option(None, help="with --no-retrain: at most 2^B − 1 levels a tensor, so that "
                                            "a GPU holds each weight's code in B bits (2 to 8; runtime 'codebook')"),
    device: str = typer.Option("auto", help="auto (a CUDA GPU if PyTorch sees one), cpu, cuda or cuda:N"),
    resume: bool = typer.Option(False, help="continue an interrupted run from OUT/checkpoints (same recipe and data)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
    rate_weights: Optional[str] = typer.Option(None, help="with a recipe that has a rate stage: one run per rate "
                                               "weight (comma-separated, like 0.03,0.1) into OUT/rate-<λ>"),
    max_drop: Optional[float] = typer.Option(None, help="the target: the smallest file whose validation score is at "
                                             "most this far below dense (points; % for perplexity): a search over "
                                             "per-layer budgets, or with --rate-weights the pick among λ"),
    max_candidates: int = typer.Option(8, help="with --max-drop: the most candidate runs of the search"),
    confidence: float = typer.Option(0.84, help="with --max-drop: accept a file when its validation drop plus z "
                                     "standard errors of it is within the drop (z of this confidence: 1 at 0.84; "
                                     "0.5 = the drop alone)"),
) -> None:
    """Train (or load), prune, share weights, encode to OUT/model.dzip, reload it and evaluate.

    Any model: a registry name (--model), your own module (--model-py FILE.py:NAME --from
    weights.pt), or a Hugging Face directory (--hf DIR). With --max-drop X: the smallest file
    within X of the dense model on the validation split (each candidate kept in OUT/candidates);
    the test split is read once, for that file.

    After a crash or a kill, the same command with --resume continues from OUT/checkpoints.

    With --rate-weights, one run per weight of the recipe's rate stage, all from one dense model;
    OUT/report.html compares them (accuracy against ratio) and OUT/sweep.json lists them.

    OUT/report.html shows the run; OUT/history.json has a row per epoch.

    Watch the curves live with `tensorboard --logdir OUT/tb`.
    """
    from ..data.splits import check_fraction
    from ..pipeline import compress as run
    from ..pipeline import parse_weights
    from .post_training import post_training

    def go():
        check_fraction(val_split)
        if sum(x is not None for x in (model, model_py, hf)) > 1:
            raise ConfigError("give one of --model, --model-py and --hf.")
        if model_arg and model_py is None:
            raise ConfigError("--model-arg gives arguments to --model-py's class; pass --model-py too.")
        if hf is not None and from_ is not None:
            raise ConfigError("--hf reads the weights from its directory; drop --from.")
        net = _user_model(model_py, model_arg, hf, from_, seed if seed is not None else _recipe_seed(recipe))
        if not retrain:
            _no_retrain(net if net is not None else model, recipe, rate_weights, max_drop, bits, code_bits)
            return post_training(net if net is not None else _registry(model, from_), hf=hf, data=data,
                                 data_dir=data_dir, calib_text=calib_text, metric=metric, max_drop=max_drop, bits=bits,
                                 code_bits=code_bits, out=out, limit=limit, val_split=val_split, seed=seed or 0,
                                 resume=resume, quiet=quiet, echo=typer.echo)
        if calib_text or bits is not None or code_bits is not None:
            raise ConfigError("--calib-text, --bits and --code-bits are for --no-retrain (post-training compression).")
        weights = parse_weights(rate_weights) if rate_weights is not None else None
        given = net if net is not None else (model or (None if recipe else "lenet300"))
        if given is None:  # a recipe names its model
            from ..pipeline import find_recipe, load_recipe

            given = load_recipe(find_recipe(recipe)).model
        result = run(given, data, recipe=recipe, max_drop=max_drop, rate_weights=weights, out=out, val_split=val_split,
                     metric=metric or "top1", trained=net is None or hf is not None or from_ is not None,
                     from_checkpoint=from_ if net is None else None, data_dir=data_dir, limit=limit, seed=seed,
                     coder=coder, max_candidates=max_candidates, confidence=confidence, resume=resume, device=device,
                     progress=not quiet,
                     log=typer.echo)
        if not result.report:  # a rank other than 0 of a torchrun job: rank 0 reports
            return
        if result.search is None:
            from ..report import report_markdown

            typer.echo(report_markdown(result.report))
        line = (f"wrote {result.path} ({result.file_bytes:,} bytes, {result.ratio:.1f}× smaller than "
                f"{result.dense_bytes:,} dense bytes; validation drop {result.validation['drop']:.2f}")
        if result.test:
            line += f", test drop {result.test['drop']:.2f}"
        typer.echo(line + ")")

    _run(go)


@app.command()
def recipes() -> None:
    """List the recipes deepzip ships, a line each (use one with --recipe NAME)."""
    from ..pipeline import shipped_recipes

    def go():
        rows = shipped_recipes()
        width = max(len(name) for name, _ in rows)
        for name, summary in rows:
            typer.echo(f"{name:<{width}}  {summary}")

    _run(go)


def _no_retrain(source: Any, recipe: str | None, rate_weights: str | None, max_drop: float | None,
                bits: float | None, code_bits: int | None) -> None:
    """What --no-retrain cannot be combined with, in one sentence, before any model is read."""
    from ..quantize import PostTraining

    PostTraining(code_bits=code_bits)
    if recipe or rate_weights:
        raise ConfigError("--no-retrain runs no recipe (it trains nothing); drop --recipe and --rate-weights.")
    if source is None:
        raise ConfigError("--no-retrain needs a trained model: --hf DIR, --model-py with --from, or --model with --from.")
    if (max_drop is None) == (bits is None):
        raise ConfigError("--no-retrain needs one target: --max-drop (a fidelity) or --bits (a size).")


def _registry(name: str, weights: Path | None):
    """A registry model with trained weights (--from); a fresh one would have nothing to keep."""
    from .. import models
    from ..train.checkpoint import load_weights

    if weights is None:
        raise ConfigError(f"--no-retrain compresses a trained {name}: give its weights with --from.")
    net = models.create(name)
    load_weights(net, weights)
    return net


def _recipe_seed(recipe: str | None) -> int:
    from ..pipeline import find_recipe, load_recipe

    return load_recipe(find_recipe(recipe)).seed if recipe else 0


def _user_model(model_py: str | None, model_arg: list[str], hf: Path | None, weights: Path | None, seed: int):
    """The user's module from --model-py (with --from's weights loaded) or --hf, or None. Built
    under `seed`, so a model trained from its initialisation gives the same bytes every time."""
    if hf is not None:
        from ..models.hf import load_hf_dir

        return load_hf_dir(hf)
    if model_py is None:
        return None
    import torch

    from ..models.sources import python_model
    from ..train.checkpoint import load_weights

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = python_model(model_py, _key_values(model_arg, "--model-arg"))
    if weights is not None:
        load_weights(net, weights)
    return net


def _key_values(items: list[str], what: str, sep: str = "=") -> dict[str, Any]:
    import yaml

    from ..errors import ConfigError

    out = {}
    for item in items:
        key, found, value = item.partition(sep)
        if not found or not key:
            raise ConfigError(f"{what} takes key{sep}value, not {item!r}.")
        try:
            out[key] = yaml.safe_load(value) if sep == "=" else value
        except yaml.YAMLError:
            raise ConfigError(f"{what} {item!r}: the value is not a number, string, boolean or [list].") from None
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
    from ..pipeline import run_recipe as run
    from ..pipeline import student_recipe

    def go():
        try:
            lambdas = [float(w) for w in weights.split(",")]
        except ValueError:
            lambdas = []
        if len(lambdas) != 3:
            raise ConfigError(f"--weights takes three numbers λ1,λ2,λ3, not {weights!r}.")
        r = student_recipe(student, teacher, recipe=recipe, model_args=_key_values(student_arg, "--student-arg"),
                           hints=_key_values(hint, "--hint", ":"), weights=lambdas, temperature=temperature,
                           alpha=alpha, adversary=adversary, epochs=epochs, lr=lr, dataset=data, image_size=image_size)
        report = run(r, out, data_dir=data_dir, limit=limit, resume=resume, device=device, progress=not quiet,
                     log=typer.echo)
        if report:
            typer.echo(f"wrote {out / 'model.dzip'} ({report['file_bytes']:,} bytes; student "
                       f"{report['accuracy']['from_file']:.2f}% from the file)")

    _run(go)



@app.command()
def sensitivity(
    model: str = typer.Option("lenet300", help="registry name of the model"),
    model_py: Optional[str] = typer.Option(None, help="your own model instead: FILE.py:NAME or package.module:NAME"),
    model_arg: list[str] = typer.Option([], help="an argument of --model-py's NAME, key=value (repeatable)"),
    hf: Optional[Path] = typer.Option(None, help="a Hugging Face model directory instead (its own weights)"),
    data: str = typer.Option("fashion-mnist", help="data set name (npz with --data-dir for token ids)"),
    from_: Optional[Path] = typer.Option(None, "--from", help="dense weights to analyse (safetensors, or a state "
                                         "dict); needed but with --hf"),
    metric: str = typer.Option("top1", help="top1, or perplexity for a causal language model (drops in % rises)"),
    out: Path = typer.Option(Path("out/sensitivity"), help="output directory"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    samples: int = typer.Option(5000, help="training samples the probes are scored on (the test set stays unseen)"),
    max_drop: Optional[float] = typer.Option(None, help="allocate: the smallest file whose summed per-layer drops stay "
                                             "within this many points"),
    target_ratio: Optional[float] = typer.Option(None, help="allocate: the most accurate allocation that reaches this ratio"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Prune each layer alone over a grid, and share its weights over a grid of bits; write the
    curves (JSON, plot) and, with --max-drop or --target-ratio, a recipe with per-layer budgets,
    checked by applying it (without retraining) and measuring the file and the score.

    Any model: a registry name (--model), your own module (--model-py FILE.py:NAME --from
    weights), or a Hugging Face directory (--hf DIR, with --data npz --data-dir for its tokens)."""
    from ..errors import ConfigError
    from ..pipeline.sensitivity import analyse

    def go():
        if model_py is not None and hf is not None:
            raise ConfigError("give one of --model-py and --hf.")
        if from_ is None and hf is None:
            raise ConfigError("--from names the dense weights to analyse (only --hf brings its own).")
        if hf is not None and from_ is not None:
            raise ConfigError("--hf reads the weights from its directory; drop --from.")
        net = _user_model(model_py, model_arg, hf, from_, 0)  # --model-py's with --from's weights loaded
        done = analyse(net or model, data, from_ if net is None else None, out, data_dir=data_dir, samples=samples,
                       max_drop=max_drop, target_ratio=target_ratio, device=device, progress=not quiet, metric=metric)
        result, choice, measured = done["scan"], done.get("choice"), done.get("measured")
        typer.echo(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'} (baseline {metric} "
                   f"{result['baseline']:.4g})")
        if choice is not None:
            typer.echo(f"allocated: sparsity {choice['sparsity']}, bits {choice['bits']}")
            typer.echo(f"estimated {choice['estimated_ratio']:.1f}× at a drop of {choice['estimated_drop']:.2f} (summed "
                       f"per-layer drops, before retraining); measured by applying it without retraining: "
                       f"{measured['ratio']:.1f}× at a drop of {measured['drop']:.2f}")
            source = f"--hf {hf}" if hf else f"--model-py {model_py} --from {from_}" if model_py else f"--from {from_}"
            typer.echo(f"wrote {out / 'recipe.yaml'}: deepzip compress --recipe {out / 'recipe.yaml'} {source}")

    _run(go)

