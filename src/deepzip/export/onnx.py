"""ONNX export of a decoded model: the dense weights of a .dzip (slim after channel surgery) in a
graph any ONNX runtime runs. The sparsity and the codebooks are not in it: ONNX has no operator
that reads them, so the exported file is as large as the decoded model (the .dzip stays the
small artefact to ship; the ONNX file is what an inference engine takes).

torch's TorchScript-based exporter is used (onnx is the only extra package it needs; the newer
dynamo exporter would need onnxscript too).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..dzip import load
from ..errors import ConfigError
from ..files import atomic_path
from ..reparam import strip_
from ..runtime.timing import call_times_ms

OPSET = 17


def export_onnx(model: nn.Module | str | os.PathLike, path: str | os.PathLike, example_inputs: Any, *,
                opset: int = OPSET, dynamic_batch: bool = True) -> Path:
    """Write `model` (a module, or a .dzip to load) as an ONNX file, atomically.

    Args:
        model: an nn.Module (deepzip masks and shared weights are made plain in a copy) or the
            path of a .dzip (loaded with its registry architecture).
        path: the .onnx file to write.
        example_inputs: a batch of inputs (or a tuple of them) to trace the graph with.
        opset: the ONNX opset version.
        dynamic_batch: leave the batch dimension free.

    Examples:
        >>> dz.export_onnx("model.dzip", "model.onnx", torch.randn(1, 1, 28, 28))
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it; say so plainly when it is missing)
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install onnx (and onnxruntime to run it).") from None
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    else:
        import copy

        model = copy.deepcopy(model)
        strip_(model)
    model = model.eval().cpu()
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    names = [f"input{i}" if len(inputs) > 1 else "input" for i in range(len(inputs))]
    axes = {n: {0: "batch"} for n in [*names, "output"]} if dynamic_batch else None
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notices are not the user's business
        try:
            torch.onnx.export(model, inputs, str(tmp), input_names=names, output_names=["output"],
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        except Exception as e:  # the exporter raises many kinds; one sentence for all
            raise ConfigError(f"torch cannot export this model to ONNX ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]}).") from None
    return Path(path)


def onnx_runner(model: nn.Module | str | os.PathLike, example_inputs: torch.Tensor, threads: int | None = None
                ) -> Callable[[torch.Tensor], Any]:
    """`run(x) -> outputs`: the model exported to a temporary ONNX file and opened in an
    onnxruntime CPU session. A serving engine spends less per layer than PyTorch's eager dispatch
    (about 5× less on a quarter-width ResNet-18 at batch 1), so the time a slim model saves in
    arithmetic shows there where eager mode hides it in overhead.

    Args:
        model: an nn.Module or the path of a .dzip.
        example_inputs: a batch to export with (any batch size runs afterwards).
        threads: intra-op threads (default: torch's, so the two runtimes are timed alike).

    Examples:
        >>> run = onnx_runner("model.dzip", torch.randn(1, 1, 32, 32)); run(torch.randn(8, 1, 32, 32))[0].shape
        (8, 10)
    """
    import tempfile

    try:
        import onnxruntime as ort
    except ImportError:
        raise ConfigError("running in onnxruntime needs it installed: pip install onnxruntime.") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", example_inputs[:1])
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x.detach().cpu().numpy()})


def onnx_latencies_ms(model: nn.Module | str | os.PathLike, x: torch.Tensor, reps: int,
                      threads: int | None = None) -> list[float]:
    """Wall times of `reps` onnxruntime calls on `x` in milliseconds, after warm-up (onnx_runner).

    Args:
        model: an nn.Module or the path of a .dzip.
        x: one batch of inputs.
        reps: timed calls.
        threads: intra-op threads (default: torch's).

    Examples:
        >>> min(onnx_latencies_ms("model.dzip", torch.randn(1, 1, 32, 32), reps=200))
    """
    run = onnx_runner(model, x, threads)
    return call_times_ms(lambda: run(x), reps)
