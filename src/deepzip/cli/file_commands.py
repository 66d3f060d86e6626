"""The commands that read a finished .dzip: inspect, evaluate, benchmark, report, export,
decompress, recode."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from . import _run, app


@app.command(name="inspect")
def inspect_cmd(file: Path, as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Show what a .dzip holds: architecture, sizes, and the per-layer table."""
    from ..report import inspect, inspect_text

    def go():
        info = inspect(file)
        typer.echo(json.dumps(info, indent=2) if as_json else inspect_text(info, str(file)))

    _run(go)



def _load(file: Path, model_py: str | None, runtime: str = "dense"):
    """The file's model: its registry architecture, or the user's module named by --model-py."""
    from ..dzip import load
    from ..models import from_spec

    return load(file, model=from_spec(model_py) if model_py else None, runtime=runtime)


def _input_shape(text: str | None, file: Path) -> tuple[int, ...] | None:
    """One sample's shape from --input-shape, else from the architecture the file records."""
    from ..errors import ConfigError
    from ..report import inspect

    if text:
        try:
            shape = tuple(int(d) for d in text.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ConfigError(f"--input-shape must be positive whole numbers separated by commas, like 1,28,28; "
                              f"not {text!r}.")
        return shape
    info = inspect(file)
    recorded = (info["meta"].get("input") or {}).get("shape") if isinstance(info["meta"], dict) else None
    if isinstance(recorded, list) and recorded and all(isinstance(d, int) and 0 < d <= 1 << 16 for d in recorded):
        return tuple(recorded)  # what the pipeline fed the model, recorded when it saved the file
    kw = (info["arch"] or {}).get("kwargs", {}) if isinstance(info["arch"], dict) else {}
    if "image_size" not in kw:
        return None
    return kw.get("in_channels", 1), kw["image_size"], kw["image_size"]



def _input_dtype(file: Path) -> str:
    """The dtype of the inputs the file's model was fed when it was saved ("float32", "int64" for token ids)."""
    from ..report import inspect

    meta = inspect(file)["meta"]
    recorded = (meta.get("input") or {}).get("dtype") if isinstance(meta, dict) else None
    return recorded if isinstance(recorded, str) else "float32"


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
    from .. import data as datasets
    from ..errors import ConfigError
    from ..train import evaluate as accuracy
    from ..train import resolve_device

    def go():
        where = resolve_device(device)
        model = _load(file, model_py, runtime).to(where)
        test = datasets.load(data, data_dir, train=False, limit=limit, size=image_size)
        shape = _input_shape(None, file)
        if shape is not None and test.x.dim() == 4 and tuple(test.x.shape[1:]) != shape:
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
    from ..errors import ConfigError
    from ..runtime.timing import compare
    from ..train import resolve_device

    def go():
        where = resolve_device(device)
        if reps < 1:
            raise ConfigError(f"--reps must be at least 1, not {reps}.")
        shape = _input_shape(input_shape, file)
        if shape is None:
            raise ConfigError(f"{file.name} records no input shape; pass --input-shape, e.g. 1,28,28.")
        runtimes = ("dense", "sparse", "csr", "codebook")
        models = {name: _load(file, model_py, name) for name in runtimes}
        row = compare(models, shape, device=str(where), reps=reps, tokens=_input_dtype(file).startswith("int"))
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
    from ..report import write_report

    def go():
        target = out or (dirs[0] / "report.html" if len(dirs) == 1 else Path("report.html"))
        write_report(dirs, target)
        typer.echo(f"wrote {target}")

    _run(go)



@app.command()
def export(
    file: Path,
    onnx: Optional[Path] = typer.Option(None, "--onnx", help="the ONNX file to write"),
    c: Optional[Path] = typer.Option(None, "--c", help="a directory of C sources to write: the file in flash, "
                                     "its op list, dz_predict(), a desktop main.c and a Makefile (also Cortex-M4)"),
    web: Optional[Path] = typer.Option(None, "--web", help="a directory holding a static page that decodes the file "
                                       "with WebAssembly and classifies in the browser (serve it: python -m http.server -d DIR)"),
    input_shape: str = typer.Option(None, help="one sample's shape, e.g. 1,28,28 [default: from the recorded architecture]"),
    model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: module:Class or file.py:Class"),
) -> None:
    """Export the decoded model to ONNX (dense weights, slim after channel surgery), to C
    sources that run it on a microcontroller from its codes (--c), or to a web page that runs it
    in the browser from its codes (--web)."""
    import torch

    from ..errors import ConfigError
    from ..export import export_c, export_onnx, export_web
    from ..models import from_spec

    def go():
        if sum(v is not None for v in (onnx, c, web)) != 1:
            raise ConfigError("give one of --onnx FILE.onnx, --c DIR and --web DIR.")
        shape = _input_shape(input_shape, file)
        if shape is None:
            raise ConfigError(f"{file.name} records no input shape; pass --input-shape, e.g. 1,28,28.")
        if c is not None:
            info = export_c(file, c, model=from_spec(model_py) if model_py else None, input_shape=shape)
            typer.echo(f"wrote {c} ({info.n_ops} ops): make -C {c} builds ./model, make -C {c} m4 a Cortex-M4 image")
            typer.echo(info.summary())
            return
        if web is not None:
            info = export_web(file, web, model=from_spec(model_py) if model_py else None, input_shape=shape)
            typer.echo(f"wrote {web}: {info.summary()}")
            typer.echo(f"serve it with: python -m http.server -d {web} (browsers run no modules from file:// pages)")
            return
        export_onnx(_load(file, model_py), onnx, torch.randn(1, *shape))
        typer.echo(f"wrote {onnx}")

    _run(go)



@app.command()
def decompress(file: Path, out: Optional[Path] = typer.Option(None, help="dense safetensors file to write"),
               hf: Optional[Path] = typer.Option(None, help="a Hugging Face model directory to write (for a file of "
                                                 "a Hugging Face model): from_pretrained(DIR) loads it"),
               model_py: Optional[str] = typer.Option(None, help="for a file saved from your own module: "
                                                      "module:Class or file.py:Class")) -> None:
    """Decode any .dzip into a dense safetensors checkpoint (no architecture needed), or a Hugging
    Face model's file into a directory that transformers loads."""
    from safetensors.torch import save_file

    from ..dzip import read_tensors
    from ..errors import ConfigError
    from ..files import atomic_path
    from ..report import inspect
    from ..train import save_checkpoint

    def go():
        if (out is None) == (hf is None):
            raise ConfigError("give one of --out FILE.safetensors and --hf DIR.")
        if hf is not None:
            from ..models.hf import save_hf_dir

            save_hf_dir(_load(file, model_py), hf)
            typer.echo(f"wrote {hf} (from_pretrained({str(hf)!r}) loads it)")
            return
        if inspect(file)["arch"] and (model_py or "name" in inspect(file)["arch"]):
            save_checkpoint(_load(file, model_py), out)  # records the architecture, so --from can use it
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
    from ..dzip.recode import recode as recode_file
    from ..models import from_spec

    def go():
        before = file.stat().st_size
        header = recode_file(file, out, model=from_spec(model_py) if model_py else None, coder=coder)
        size = header["file_bytes"]
        typer.echo(f"wrote {out}: {size:,} bytes ({before:,} before, {100 * (size / before - 1):+.1f} %), same weights")

    _run(go)

