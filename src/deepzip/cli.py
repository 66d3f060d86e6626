"""The `deepzip` command: parses arguments, calls the API, prints. No logic of its own."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import typer

from .errors import ConfigError, DeepzipError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress trained PyTorch networks into small .dzip files (Deep Compression and beyond).")


def _fail(e: Exception) -> None:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2)


def _run(fn):
    """Bad input of any kind ends in one line on stderr and exit status 2, never a traceback
    (DEEPZIP_DEBUG=1 shows the traceback of an unexpected error)."""
    try:
        return fn()
    except (DeepzipError, OSError, typer.BadParameter) as e:
        _fail(e)
    except Exception as e:  # a bug or an input no check anticipated: still one line, and say which
        if os.environ.get("DEEPZIP_DEBUG"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e}")


def _version(value: bool) -> None:
    if value:
        from ._version import __version__

        typer.echo(f"deepzip {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Compress trained PyTorch networks into small .dzip files (Deep Compression and beyond).

    Errors are one line; set DEEPZIP_DEBUG=1 to see the traceback of an unexpected one.
    """


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
    from .pipeline import compress as run, from_dict, load_recipe, parse_weights, sweep

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

    from .errors import ConfigError

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
    from .errors import ConfigError
    from .pipeline import compress as run, from_dict, load_recipe

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


@app.command(name="inspect")
def inspect_cmd(file: Path, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show what a .dzip holds: architecture, sizes, and the per-layer table."""
    from .report import inspect, layers_markdown

    def go():
        info = inspect(file)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        arch = str(info["arch"].get("name")) if info["arch"] else "(custom module)"
        typer.echo(f"{file}: {arch}, {info['parameters']:,} parameters, {info['file_bytes']:,} bytes on disk, "
                   f"{info['ratio']:.1f}× smaller than {info['dense_bytes']:,} dense bytes")
        acc = info["meta"].get("accuracy")
        if isinstance(acc, dict) and all(isinstance(v, (int, float)) for v in acc.values()):
            typer.echo("accuracy when saved: " + ", ".join(f"{k} {v:.2f}%" for k, v in acc.items()))
        typer.echo(layers_markdown(info["layers"]))
        typer.echo("bytes: " + " + ".join(f"{v:,} {k}" for k, v in info["bytes"].items() if v or k != "unused")
                   + f" = {info['file_bytes']:,} (metadata — versions, accuracy, recipe — is {info['meta_bytes']:,} "
                   f"of the header's bytes; save(metadata=…) chooses it)")
        if info["uncompressed"]:
            typer.echo(f"not compressed (stored as they were): {', '.join(info['uncompressed'])}")
        if info["widths"]:
            typer.echo(f"channel surgery: {info['original_parameters']:,} → {info['parameters']:,} parameters")
            typer.echo("| layer | " + " | ".join(["width", "original", "kept"]) + " |\n|---|---|---:|---:|")
            for name, change in info["widths"].items():
                for attr, (was, now) in change.items():
                    typer.echo(f"| {name} | {attr} | {was if was is not None else '?'} | {now} |")

    _run(go)


def _load(file: Path, model_py: str | None, runtime: str = "dense"):
    """The file's model: its registry architecture, or the user's module named by --model-py."""
    from .dzip import load
    from .models import from_spec

    return load(file, model=from_spec(model_py) if model_py else None, runtime=runtime)


def _input_shape(text: str | None, file: Path) -> tuple[int, ...] | None:
    """One sample's shape from --input-shape, else from the architecture the file records."""
    from .errors import ConfigError
    from .report import inspect

    if text:
        try:
            shape = tuple(int(d) for d in text.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ConfigError(f"--input-shape must be positive whole numbers separated by commas, like 1,28,28; "
                              f"not {text!r}.")
        return shape
    kw = (inspect(file)["arch"] or {}).get("kwargs", {})
    if "image_size" not in kw:
        return None
    return kw.get("in_channels", 1), kw["image_size"], kw["image_size"]


@app.command()
def evaluate(
    file: Path,
    data: str = typer.Option(..., help="data set name"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    limit: Optional[int] = typer.Option(None, help="use only the first N test samples"),
    image_size: Optional[int] = typer.Option(None, help="resize the images to this size first"),
    runtime: str = typer.Option("dense", help="dense (decoded weights) or sparse (CSR, never densified)"),
    model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: module:Class or file.py:Class"),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Load a .dzip and report its top-1 accuracy on the test split."""
    from . import data as datasets
    from .errors import ConfigError
    from .train import evaluate as accuracy, resolve_device

    def go():
        where = resolve_device(device)
        model = _load(file, model_py, runtime).to(where)
        test = datasets.load(data, data_dir, train=False, limit=limit, size=image_size)
        shape = _input_shape(None, file)
        if shape is not None and tuple(test.x.shape[1:]) != shape:
            raise ConfigError(f"{file.name} takes {'×'.join(map(str, shape))} inputs but the {data} test images are "
                              f"{'×'.join(map(str, test.x.shape[1:]))}; pass --image-size {shape[-1]} to resize them "
                              f"(or evaluate on the data set it was trained on).")
        try:
            acc = accuracy(model, test)
        except RuntimeError as e:
            raise ConfigError(f"{file.name} cannot run on {data} inputs of shape "
                              f"{'×'.join(map(str, test.x.shape[1:]))}: {str(e).splitlines()[0]}.") from None
        if as_json:
            typer.echo(json.dumps({"file": str(file), "dataset": data, "runtime": runtime, "accuracy": acc,
                                   "samples": len(test), "device": str(where)}))
        else:
            typer.echo(f"{file}: {acc:.2f}% top-1 on {len(test):,} {data} test samples ({runtime} runtime, {where})")

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
    from . import data as datasets
    from . import models
    from .files import write_text
    from .pipeline import from_dict, save_recipe
    from .pipeline.sensitivity import allocate, plot, scan, verify
    from .train import evaluate as accuracy, load_checkpoint, resolve_device

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


@app.command()
def benchmark(
    file: Path,
    input_shape: str = typer.Option(None, help="one sample's shape, e.g. 1,28,28 [default: from the recorded architecture]"),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N"),
    reps: int = typer.Option(100, help="timed repetitions at batch 1 (a quarter of that at batch 64)"),
    model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: module:Class or file.py:Class"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Dense vs the sparse runtimes (the measured choice per layer, torch CSR, deepzip's codebook
    kernels): latency at batch 1 and 64 (median, min), resident weight memory."""
    from .errors import ConfigError
    from .runtime.timing import compare
    from .train import resolve_device

    def go():
        where = resolve_device(device)
        if reps < 1:
            raise ConfigError(f"--reps must be at least 1, not {reps}.")
        shape = _input_shape(input_shape, file)
        if shape is None:
            raise ConfigError(f"{file.name} records no input shape; pass --input-shape, e.g. 1,28,28.")
        runtimes = ("dense", "sparse", "csr", "codebook")
        models = {name: _load(file, model_py, name) for name in runtimes}
        row = compare(models, shape, device=str(where), reps=reps)
        if as_json:
            typer.echo(json.dumps({**row, "choice": models["sparse"].deepzip_runtime}))
            return
        typer.echo(f"{file} on {where} ({row['threads']} threads), input {shape}; the sparse runtime's choice: "
                   + ", ".join(f"{k} {v.split(' ')[0]}" for k, v in models["sparse"].deepzip_runtime.items()
                               if k.endswith("weight")))
        typer.echo("| runtime | weights in memory | batch 1 median (min) | batch 64 median (min) |")
        typer.echo("|---|---:|---:|---:|")
        for name in runtimes:
            cells = [f"{row[f'b{b}_{name}_ms']:.3f} ms ({row[f'b{b}_{name}_min_ms']:.3f}) {row[f'b{b}_{name}_speedup']:.2f}×"
                     for b in (1, 64)]
            typer.echo(f"| {name} | {row[f'{name}_weight_bytes']:,} B | {cells[0]} | {cells[1]} |")

    _run(go)


@app.command()
def report(
    dirs: list[Path] = typer.Argument(..., help="--out directories of deepzip compress runs"),
    out: Optional[Path] = typer.Option(None, help="HTML file to write [default: DIR/report.html for one run, "
                                                  "report.html for several]"),
) -> None:
    """Rebuild a run's report.html, or compare several runs on one page (accuracy against ratio,
    then each run's sections). Self-contained: images inline, nothing fetched, no script."""
    from .report import write_report

    def go():
        target = out or (dirs[0] / "report.html" if len(dirs) == 1 else Path("report.html"))
        write_report(dirs, target)
        typer.echo(f"wrote {target}")

    _run(go)


@app.command()
def export(
    file: Path,
    onnx: Path = typer.Option(..., "--onnx", help="the ONNX file to write"),
    input_shape: str = typer.Option(None, help="one sample's shape, e.g. 1,28,28 [default: from the recorded architecture]"),
    model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: module:Class or file.py:Class"),
) -> None:
    """Export the decoded model (dense weights, slim after channel surgery) to ONNX."""
    import torch

    from .errors import ConfigError
    from .export import export_onnx

    def go():
        shape = _input_shape(input_shape, file)
        if shape is None:
            raise ConfigError(f"{file.name} records no input shape; pass --input-shape, e.g. 1,28,28.")
        export_onnx(_load(file, model_py), onnx, torch.randn(1, *shape))
        typer.echo(f"wrote {onnx}")

    _run(go)


@app.command()
def decompress(file: Path, out: Path = typer.Option(..., help="dense safetensors file to write")) -> None:
    """Decode any .dzip into a dense safetensors checkpoint (no architecture needed)."""
    from safetensors.torch import save_file

    from .dzip import load, read_tensors
    from .files import atomic_path
    from .report import inspect
    from .train import save_checkpoint

    def go():
        if inspect(file)["arch"]:
            save_checkpoint(load(file), out)  # records the architecture, so --from can use it
        else:
            tensors = read_tensors(file)
            with atomic_path(out) as tmp:
                save_file(tensors, tmp)
        typer.echo(f"wrote {out}")

    _run(go)


@app.command()
def recode(
    file: Path,
    out: Path = typer.Option(..., help="the .dzip to write (may be FILE itself: the write is atomic)"),
    coder: str = typer.Option("auto", help="huffman, ans, context or auto (per layer and stream, the smallest)"),
    model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: module:Class or file.py:Class"),
) -> None:
    """Write a .dzip again with another coder, losslessly (an older file becomes the current, leaner version)."""
    from .dzip.recode import recode as recode_file
    from .models import from_spec

    def go():
        before = file.stat().st_size
        header = recode_file(file, out, model=from_spec(model_py) if model_py else None, coder=coder)
        size = header["file_bytes"]
        typer.echo(f"wrote {out}: {size:,} bytes ({before:,} before, {100 * (size / before - 1):+.1f} %), same weights")

    _run(go)


def main() -> None:
    """The console entry point (`deepzip`, `python -m deepzip`)."""
    app(prog_name="deepzip")
