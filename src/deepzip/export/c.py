"""C export: a .dzip as C sources that run it on a microcontroller from its codes.

`export_c("model.dzip", "out/c")` traces the decoded model with torch.fx (cgraph.py), plans the
runtime's memory (cplan.py) and writes a directory that builds on its own:

    model.c, model.h     the .dzip as const bytes (flash), the op list, dz_predict()
    main.c               a desktop program: float32 inputs in (file or stdin), logits out
    cortex-m/            startup code and linker script for QEMU's mps2-an386 (Cortex-M4F)
    dzip/                libdzip (the reader) and dzrt (the runtime), C99 sources
    Makefile             `make` for the desktop, `make m4` for a Cortex-M4, `make qemu` to run it

The runtime decodes each weight tensor once at init and computes from the packed codes; a
compressed layer never becomes a dense matrix (libdzip/runtime/README.md).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from ..errors import ConfigError
from ..files import replace_dir
from . import cgraph, cplan, csource, ctree

MARKER = ".deepzip-c-export"
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]


@dataclass
class CExport:
    """What export_c wrote and what it will cost on a device (bytes)."""
    path: Path
    file_bytes: int
    ops_bytes: int
    packed_bytes: int
    activation_bytes: int
    init_bytes: int
    arena_bytes: int
    n_ops: int
    code_bytes: int | None = None      # runtime + libdzip text on a Cortex-M4 (-O2), when arm-none-eabi-gcc is here
    layers: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        """Two lines for the command line: RAM and flash.

        Examples:
            >>> print(export_c("model.dzip", "out/c").summary())
            RAM: arena 37,960 bytes = packed weights 22,392 + max(activations 14,976, init 15,568), plus the stack
            flash: 56,586 bytes = file 10,589 + op list 632 + code 45,365 (Cortex-M4, -O2)
        """
        code = f" + code {self.code_bytes:,} (Cortex-M4, -O2)" if self.code_bytes is not None else ""
        flash = self.file_bytes + self.ops_bytes + (self.code_bytes or 0)
        return (f"RAM: arena {self.arena_bytes:,} bytes = packed weights {self.packed_bytes:,} + max(activations "
                f"{self.activation_bytes:,}, init {self.init_bytes:,}), plus the stack\n"
                f"flash: {flash:,} bytes = file {self.file_bytes:,} + op list {self.ops_bytes:,}{code}")


def input_shape_of(path: Path) -> tuple[int, ...] | None:
    """One sample's shape as the file records it (the pipeline's meta.input, else the registry
    architecture's in_channels × image_size²), or None.

    Args:
        path: a .dzip.

    Examples:
        >>> input_shape_of(Path("out/lenet300/model.dzip"))
        (1, 28, 28)
    """
    from ..dzip import DzipReader

    with DzipReader(path) as r:
        header = r.header
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    shape = (meta.get("input") or {}).get("shape") if isinstance(meta.get("input"), dict) else None
    if isinstance(shape, list) and shape and all(isinstance(d, int) and 0 < d <= 1 << 16 for d in shape):
        return tuple(shape)
    arch = header.get("arch") if isinstance(header.get("arch"), dict) else {}
    kw = arch.get("kwargs") if isinstance(arch.get("kwargs"), dict) else {}
    if "image_size" not in kw:
        return None
    return int(kw.get("in_channels", 1)), int(kw["image_size"]), int(kw["image_size"])


def _copy_sources(out: Path) -> None:
    tree = ctree.sources()
    runtime = tree / "runtime"
    for src, dst in [(tree / "include", out / "dzip" / "include"), (tree / "src", out / "dzip" / "src"),
                     (runtime / "include", out / "dzip" / "runtime" / "include"),
                     (runtime / "src", out / "dzip" / "runtime" / "src"),
                     (runtime / "template" / "cortex-m", out / "cortex-m")]:
        dst.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.iterdir()):
            if f.suffix in (".c", ".h", ".ld"):
                shutil.copy2(f, dst / f.name)
    for name in ("main.c", "Makefile"):
        shutil.copy2(runtime / "template" / name, out / name)


def code_bytes(directory: Path) -> int | None:
    """text + data of the runtime and libdzip compiled for a Cortex-M4 at -O2 (the op list and
    the file excluded; unused functions included, as no image is linked), or None without
    arm-none-eabi-gcc.

    Args:
        directory: an export's directory (its dzip/ sources are compiled).

    Examples:
        >>> code_bytes(Path("out/c"))
        45365
    """
    gcc, size = shutil.which("arm-none-eabi-gcc"), shutil.which("arm-none-eabi-size")
    if not gcc or not size:
        return None
    sources = sorted((directory / "dzip" / "src").glob("*.c")) + sorted((directory / "dzip" / "runtime" / "src").glob("*.c"))
    include = ["-I", str(directory / "dzip" / "include"), "-I", str(directory / "dzip" / "runtime" / "include")]
    with tempfile.TemporaryDirectory() as tmp:
        objs = [str(Path(tmp) / f"{i}-{s.stem}.o") for i, s in enumerate(sources)]
        procs = [subprocess.Popen([gcc, "-std=c99", "-O2", *M4_FLAGS, "-ffunction-sections", *include, "-c", str(s), "-o", o],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s, o in zip(sources, objs)]
        if any([p.wait() != 0 for p in procs]):  # a list: wait for every one before the directory goes
            return None
        proc = subprocess.run([size, "-t", *objs], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    total = proc.stdout.strip().splitlines()[-1].split()
    return int(total[0]) + int(total[1])


def export_c(path: str | os.PathLike, out: str | os.PathLike, *, model: nn.Module | None = None,
             input_shape: tuple[int, ...] | None = None, samples: Any = None, measure_code: bool = True) -> CExport:
    """Write the C sources that run the .dzip at `path` on a device, atomically (a directory
    built aside and renamed into place; nothing is written when the model cannot be expressed).

    Args:
        path: the .dzip (embedded as bytes; its registry architecture is traced).
        out: the directory to write (new, empty, or an earlier C export, which is replaced).
        model: for a file of your own module: an instance to fill (as deepzip.load's `model`).
        input_shape: one sample's shape (default: what the file records).
        samples: inputs (N × input shape) to embed in samples.h for the device build (default:
            one input of zeros).
        measure_code: compile the runtime for a Cortex-M4 to report its code size (when
            arm-none-eabi-gcc is installed).

    Examples:
        >>> from deepzip.export import export_c
        >>> info = export_c("model.dzip", "out/c"); print(info.summary())
        >>> # then: make -C out/c && ./out/c/model inputs.f32 > logits.f32
    """
    from ..dzip import load

    path = Path(path)
    out = Path(out)
    shape = tuple(input_shape) if input_shape else input_shape_of(path)
    if shape is None:
        raise ConfigError(f"{path.name} records no input shape; pass input_shape (--input-shape), e.g. 1,28,28.")
    net = load(path, model=model)
    graph = cgraph.trace(net, shape)
    plan = cplan.plan(graph, path)
    data = path.read_bytes()
    info = {"file_name": path.name, "file_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        _copy_sources(tmp)
        (tmp / "model.h").write_text(csource.model_h(plan, graph, info))
        (tmp / "model.c").write_text(csource.model_c(plan, graph, data, info))
        # Without samples, one zero input, so that `make m4 qemu` runs out of the box.
        x = np.zeros((1, graph.numel[graph.input]), np.float32) if samples is None else \
            np.asarray(samples, np.float32).reshape(-1, graph.numel[graph.input])
        if not np.isfinite(x).all() or not len(x):
            raise ConfigError("the samples to embed are empty or hold NaN or infinite values.")
        (tmp / "samples.h").write_text(csource.samples_h(x, placeholder=samples is None))
        (tmp / MARKER).write_text(f"{path.resolve()}\n")
        code = code_bytes(tmp) if measure_code else None
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out, MARKER, "--c")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    layers = [{"name": p.name, "form": ["none", "dense", "shared", "sparse"][p.form], "kept": p.kept, "book": p.book,
               "entry_bytes": p.entry_bytes, "bytes": p.bytes} for p in plan.layers]
    return CExport(out, len(data), plan.ops_bytes, plan.packed_bytes, plan.activation_bytes, plan.init_bytes,
                   plan.arena_bytes, len(plan.records), code, layers)
