"""The `deepzip` command: parses arguments, calls the API, prints. No logic of its own."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from .errors import DeepzipError

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
    coder: Optional[str] = typer.Option(None, help="huffman, ans or auto [default: the recipe's]"),
    limit: Optional[int] = typer.Option(None, help="use only the first N samples of each split (quick runs)"),
    resume: bool = typer.Option(False, help="continue an interrupted run from OUT/checkpoints (same recipe and data)"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train (or load), prune, share weights, encode to OUT/model.dzip, reload it and evaluate.

    Every epoch and stage leaves a checkpoint in OUT/checkpoints; after a crash or a kill, the
    same command with --resume continues and ends with the same file. OUT/history.json has a row
    per epoch (loss, test accuracy, learning rate, sparsity, seconds); to watch the curves live,
    run `tensorboard --logdir OUT/tb` and open the address it prints.
    """
    from .pipeline import compress as run, from_dict, load_recipe

    def go():
        given = {"model": model, "dataset": data, "seed": seed, "coder": coder}
        r = load_recipe(recipe, **given) if recipe else from_dict({}, **given)
        report = run(r, out, data_dir=data_dir, from_checkpoint=from_, limit=limit, resume=resume,
                     progress=not quiet, log=typer.echo)
        typer.echo((out / "report.md").read_text())
        typer.echo(f"wrote {out / 'model.dzip'} ({report['file_bytes']:,} bytes, {report['ratio']:.1f}× smaller "
                   f"than {report['dense_bytes']:,} dense bytes)")

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
        if info["uncompressed"]:
            typer.echo(f"not compressed (stored as they were): {', '.join(info['uncompressed'])}")

    _run(go)


@app.command()
def evaluate(
    file: Path,
    data: str = typer.Option(..., help="data set name"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    limit: Optional[int] = typer.Option(None, help="use only the first N test samples"),
    runtime: str = typer.Option("dense", help="dense (decoded weights) or sparse (CSR, never densified)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Load a .dzip and report its top-1 accuracy on the test split."""
    from . import data as datasets
    from .dzip import load
    from .train import evaluate as accuracy

    def go():
        model = load(file, runtime=runtime)
        test = datasets.load(data, data_dir, train=False, limit=limit)
        acc = accuracy(model, test)
        if as_json:
            typer.echo(json.dumps({"file": str(file), "dataset": data, "runtime": runtime, "accuracy": acc,
                                   "samples": len(test)}))
        else:
            typer.echo(f"{file}: {acc:.2f}% top-1 on {len(test):,} {data} test samples ({runtime} runtime)")

    _run(go)


@app.command()
def sensitivity(
    model: str = typer.Option("lenet300", help="registry name of the model"),
    data: str = typer.Option("fashion-mnist", help="data set name"),
    from_: Path = typer.Option(..., "--from", help="dense safetensors checkpoint to analyse"),
    out: Path = typer.Option(Path("out/sensitivity"), help="output directory"),
    data_dir: Optional[Path] = typer.Option(None, help="where the data set's files are"),
    samples: int = typer.Option(5000, help="training samples the probes are scored on (the test set stays unseen)"),
    max_drop: Optional[float] = typer.Option(None, help="allocate: tolerated drop per layer, in points"),
    target_ratio: Optional[float] = typer.Option(None, help="allocate: smallest drop that reaches this ratio"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Prune each layer alone over a grid, and share its weights over a grid of bits; write the
    curves (JSON, plot) and, with --max-drop or --target-ratio, a recipe with per-layer budgets."""
    from . import data as datasets
    from . import models
    from .files import write_text
    from .pipeline import default_recipe, save_recipe
    from .pipeline.sensitivity import allocate, plot, scan
    from .train import evaluate as accuracy, load_checkpoint

    def go():
        probe = datasets.load(data, data_dir, train=True, limit=samples)
        net = models.create(model, in_channels=probe.x.shape[1], image_size=probe.x.shape[2], classes=probe.classes)
        load_checkpoint(net, from_)
        result = scan(net, lambda m: accuracy(m, probe), progress=not quiet)
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "sensitivity.json", json.dumps(result, indent=2))
        plot(result, str(out / "sensitivity.png"))
        typer.echo(f"wrote {out / 'sensitivity.json'} and {out / 'sensitivity.png'} (baseline {result['baseline']:.2f}%)")
        if max_drop is not None or target_ratio is not None:
            choice = allocate(result, max_drop=max_drop, target_ratio=target_ratio)
            base = default_recipe(model)
            recipe = base.replace(dataset=data, prune=base.prune and type(base.prune)(
                **{**base.prune.__dict__, "sparsity": choice["sparsity"], "quality": None}),
                share=base.share and type(base.share)(**{**base.share.__dict__, "bits": choice["bits"]}))
            save_recipe(recipe, out / "recipe.yaml")
            typer.echo(f"allocated for a drop ≤ {choice['max_drop']:.2f} points per layer "
                       f"(estimated {choice['estimated_ratio']:.0f}×): sparsity {choice['sparsity']}, bits {choice['bits']}")
            typer.echo(f"wrote {out / 'recipe.yaml'}: deepzip compress --recipe {out / 'recipe.yaml'} --from {from_}")

    _run(go)


@app.command()
def benchmark(
    file: Path,
    input_shape: str = typer.Option(None, help="one sample's shape, e.g. 1,28,28 [default: from the recorded architecture]"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    reps: int = typer.Option(100, help="timed repetitions at batch 1 (a quarter of that at batch 64)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Dense vs sparse runtime: latency at batch 1 and 64, throughput, resident weight memory."""
    from .dzip import load
    from .report import inspect
    from .runtime.timing import compare

    def go():
        if input_shape:
            shape = tuple(int(d) for d in input_shape.split(","))
        else:
            kw = (inspect(file)["arch"] or {}).get("kwargs", {})
            if "image_size" not in kw:
                raise typer.BadParameter("the file records no input shape; pass --input-shape C,H,W")
            shape = (kw.get("in_channels", 1), kw["image_size"], kw["image_size"])
        row = compare(load(file), load(file, runtime="sparse"), shape, device=device, reps=reps)
        if as_json:
            typer.echo(json.dumps(row))
            return
        typer.echo(f"{file} on {device}, input {shape}")
        typer.echo(f"weights in memory: dense {row['dense_weight_bytes']:,} B, sparse {row['sparse_weight_bytes']:,} B "
                   f"({100 * row['sparse_weight_fraction']:.1f}%)")
        for b in (1, 64):
            typer.echo(f"batch {b:>2}: dense {row[f'b{b}_dense_ms']:.3f} ms, sparse {row[f'b{b}_sparse_ms']:.3f} ms "
                       f"({row[f'b{b}_speedup']:.2f}×), sparse {row[f'b{b}_sparse_samples_per_s']:,.0f} samples/s")

    _run(go)


@app.command()
def decompress(file: Path, out: Path = typer.Option(..., help="dense safetensors file to write")) -> None:
    """Decode a .dzip into a dense safetensors checkpoint."""
    from .dzip import load
    from .train import save_checkpoint

    def go():
        save_checkpoint(load(file), out)
        typer.echo(f"wrote {out}")

    _run(go)


def main() -> None:
    """The console entry point (`deepzip`, `python -m deepzip`)."""
    app(prog_name="deepzip")
