"""Web export: a .dzip as a static page that decodes it with WebAssembly and classifies in the browser.

`export_web("model.dzip", "out/web")` writes a directory any static server can serve (nothing
is fetched from elsewhere):

    index.html, page.js, page.css   the page: file size against the dense model's, decode time,
                                    the tensors, predictions on a strip of test images, a canvas
    dzip.js, dzip.wasm              libdzip + dzrt compiled to WebAssembly (libdzip/wasm) and its ES module
    model.dzip                      the file itself, decoded in the tab
    model.dzrt                      the op list that export --c compiles into model.c, as bytes (oplist.py)
    samples.f32, page.json          the strip's inputs (float32, C order), labels, class names

The network is traced and planned exactly as for export --c (cgraph.py, cplan.py): a model the
C runtime cannot express is refused with the same one sentence, and nothing is written. Run it
with `python -m http.server -d out/web` (browsers do not run modules from file:// pages).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..dzip._tables import DTYPE_SIZES
from ..errors import ConfigError, DataError
from ..files import replace_dir
from . import cgraph, cplan, ctree, oplist
from .c import input_shape_of

MARKER = ".deepzip-web-export"
CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"],
    "cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
    "mnist": [str(i) for i in range(10)],
    "digits": [str(i) for i in range(10)],
}


@dataclass
class WebExport:
    """What export_web wrote (bytes)."""
    path: Path
    file_bytes: int
    dense_bytes: int
    wasm_bytes: int
    js_bytes: int
    samples: int
    n_ops: int
    arena_bytes: int

    def summary(self) -> str:
        """One line for the command line.

        Example:
            >>> print(export_web("model.dzip", "out/web").summary())
            model.dzip 19,598 bytes (dense 1,066,440), dzip.wasm 69,069 + dzip.js 13,729, 20 samples, arena 48,320
        """
        return (f"model.dzip {self.file_bytes:,} bytes (dense {self.dense_bytes:,}), dzip.wasm {self.wasm_bytes:,} + "
                f"dzip.js {self.js_bytes:,}, {self.samples} samples, arena {self.arena_bytes:,}")


def wasm_module() -> Path:
    """libdzip/wasm/build/dzip.wasm, built first (`make -C libdzip/wasm`, with clang's wasm32
    target) so that the page always gets the module of the sources beside it.

    Example:
        >>> wasm_module().stat().st_size
        69069
    """
    wasm = ctree.buildable() / "wasm"
    target = wasm / "build" / "dzip.wasm"
    proc = subprocess.run(["make", "-C", str(wasm), "-s", "-j2"], capture_output=True, text=True)
    if proc.returncode != 0 or not target.exists():
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["make failed"]
        raise ConfigError(f"export --web needs {target}, which does not build here ({last[0]}); install clang, lld, "
                          f"wasi-libc and libclang-rt-14-dev-wasm32.")
    return target


def _samples(path: Path, header: dict, shape: tuple[int, ...], count: int) -> tuple[np.ndarray | None, Any, str]:
    """The first `count` test images of the data set the file records (meta.dataset), resized
    to the input, with labels and where they came from; (None, None, why not) when unavailable."""
    from ..data import load as load_data

    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    name = meta.get("dataset")
    if not isinstance(name, str):
        return None, None, f"{path.name} records no data set"
    size = shape[1] if len(shape) == 3 and shape[1] == shape[2] else None
    try:
        test = load_data(name, train=False, limit=count, size=size)
    except (ConfigError, DataError, OSError, ImportError) as e:
        return None, None, f"the {name} test split is not available here ({str(e).splitlines()[0][:120]})"
    if tuple(test.x.shape[1:]) != tuple(shape):
        return None, None, f"the {name} images are {tuple(test.x.shape[1:])}, not the model's {tuple(shape)}"
    return test.x.numpy(), test.y.numpy(), f"the first {len(test.x)} images of the {name} test split"


def export_web(path: str | os.PathLike, out: str | os.PathLike, *, model: nn.Module | None = None,
               input_shape: tuple[int, ...] | None = None, samples: Any = None, labels: Any = None,
               count: int = 20, classes: list[str] | None = None) -> WebExport:
    """Write a static page that decodes the .dzip at `path` in the browser and classifies with
    it, atomically (a directory built aside and renamed into place; nothing is written when the
    model cannot be expressed by the runtime).

    Args:
        path: the .dzip (copied; its registry architecture is traced, as for export --c).
        out: the directory to write (new, empty, or an earlier web export, which is replaced).
        model: for a file of your own module: an instance to fill (as deepzip.load's `model`).
        input_shape: one sample's shape (default: what the file records).
        samples: inputs (N × input shape, normalised as the model expects) for the page's strip
            (default: the first `count` test images of the data set the file records, when that
            data set is available here; else the page has only its canvas).
        labels: the samples' true classes (N integers), shown against the predictions.
        count: how many test images to ship when `samples` is not given.
        classes: a name per output (default: the data set's, else the output's index).

    Example:
        >>> from deepzip.export import export_web
        >>> print(export_web("out/lenet300/model.dzip", "out/web").summary())
        >>> # then: python -m http.server -d out/web, and open http://127.0.0.1:8000/
    """
    from ..dzip import DzipReader, load

    path, out = Path(path), Path(out)
    shape = tuple(input_shape) if input_shape else input_shape_of(path)
    if shape is None:
        raise ConfigError(f"{path.name} records no input shape; pass input_shape (--input-shape), e.g. 1,28,28.")
    try:
        graph = cgraph.trace(load(path, model=model), shape)
        plan = cplan.plan(graph, path)
    except ConfigError as e:   # the planner's sentences name export --c, whose runtime this page runs
        raise ConfigError(str(e).replace("export --c", "export --web")) from None
    data = path.read_bytes()
    with DzipReader(path) as r:
        header = r.header
    outputs = graph.numel[graph.output]
    x, y, source = _shipped(path, header, shape, count, samples, labels, graph.numel[graph.input])
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    names = _class_names(classes, meta, outputs)
    image = len(shape) == 3 and shape[0] in (1, 3)
    ink = _ink(shape, x) if image else None
    wasm = wasm_module()
    info = {"file": "model.dzip", "ops": "model.dzrt", "name": path.name, "file_bytes": len(data),
            "input_shape": list(shape), "outputs": outputs, "image": image, "ink": ink,
            "classes": names or [str(i) for i in range(outputs)], "dataset": meta.get("dataset"),
            "accuracy": meta.get("accuracy"), "arch": (header.get("arch") or {}).get("name")
            if isinstance(header.get("arch"), dict) else None,
            "samples": None if x is None else {"file": "samples.f32", "count": len(x), "labels": y, "source": source},
            "no_samples": None if x is not None else source}
    out.parent.mkdir(parents=True, exist_ok=True)
    js = ctree.sources() / "wasm" / "dzip.js"  # the page and its module, beside it
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for f in ("index.html", "page.js", "page.css"):
            shutil.copy2(js.parent / "page" / f, tmp / f)
        shutil.copy2(js, tmp / "dzip.js")
        shutil.copy2(wasm, tmp / "dzip.wasm")
        (tmp / "model.dzip").write_bytes(data)
        (tmp / "model.dzrt").write_bytes(oplist.op_list_bytes(plan, data))
        if x is not None:
            (tmp / "samples.f32").write_bytes(x.astype("<f4").tobytes())
        (tmp / "page.json").write_text(json.dumps(info, indent=1) + "\n")
        (tmp / MARKER).write_text(f"{path.resolve()}\n")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out, MARKER, "--web")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dense = sum(int(np.prod(e["shape"], dtype=np.int64)) * DTYPE_SIZES.get(e["dtype"], 4) for e in header["tensors"])
    return WebExport(out, len(data), dense, wasm.stat().st_size, js.stat().st_size,
                     0 if x is None else len(x), len(plan.records), plan.arena_bytes)


def _shipped(path: Path, header: dict[str, Any], shape: tuple[int, ...], count: int, samples: Any, labels: Any,
             numel: int) -> tuple[np.ndarray | None, list[int] | None, str]:
    """The page's sample strip: the samples given, or the recorded data set's first test images;
    N × numel float32, their labels, and where they came from (or why there are none)."""
    if samples is None:
        x, y, source = _samples(path, header, shape, count)
        y = y if labels is None else labels
    else:
        x, y, source = np.asarray(samples, np.float32), labels, "the samples given to the export"
    if x is not None:
        x = np.ascontiguousarray(x, np.float32).reshape(-1, numel)
        if not np.isfinite(x).all() or not len(x):
            raise ConfigError("the samples to ship are empty or hold NaN or infinite values.")
    if y is not None:
        y = [int(v) for v in np.asarray(y).reshape(-1)]
        if x is None or len(y) != len(x):
            raise ConfigError(f"{len(y)} labels were given for {0 if x is None else len(x)} samples.")
    return x, y, source


def _class_names(classes: list[str] | None, meta: dict[str, Any], outputs: int) -> list[str] | None:
    if classes is not None and len(classes) != outputs:
        raise ConfigError(f"{len(classes)} class names were given for a model of {outputs} outputs.")
    names = classes or CLASS_NAMES.get(meta.get("dataset"))
    return None if names is not None and len(names) != outputs else names  # a data set's, for another model


def _ink(shape: tuple[int, ...], x: np.ndarray | None) -> dict[str, list[float]]:
    """The canvas maps ink (0 = background, 1 = full stroke) onto the range the samples span per
    channel: for a normalised image set, exactly (0 - mean) / std to (1 - mean) / std."""
    if x is None:
        return {"lo": [0.0] * shape[0], "hi": [1.0] * shape[0]}
    per = x.reshape(len(x), shape[0], -1)
    return {"lo": per.min((0, 2)).tolist(), "hi": per.max((0, 2)).tolist()}
