"""Checkpoints as safetensors: weights, masks, codebooks, and optionally a training state.

No pickle: tensors go in the safetensors body, everything else (the structure record, the
architecture, optimizer hyper-parameters, counters, a caller's metadata) in its JSON metadata,
with nested tensors (optimizer moments, random generator states) replaced by references into
the body. Written atomically, so a kill leaves the previous checkpoint or the new one, whole.

A checkpoint of a plain model holds exactly its state_dict's names, so files written by earlier
versions (and by `safetensors.torch.save_file(model.state_dict())`) load too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .. import models
from ..errors import ConfigError, ModelMismatchError
from ..files import atomic_path
from ..reparam import capture, restore_

_TENSOR = "__tensor__"


def _split(value: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    """A JSON skeleton of `value` with each tensor moved into `tensors` under a dotted key."""
    if isinstance(value, torch.Tensor):
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {_TENSOR: key}
    if isinstance(value, dict):
        return {"__dict__": [[_split(k, f"{key}.k{i}", tensors), _split(v, f"{key}.{i}", tensors)]
                             for i, (k, v) in enumerate(value.items())]}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__":
                [_split(v, f"{key}.{i}", tensors) for i, v in enumerate(value)]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(f"cannot checkpoint a {type(value).__name__} (at {key}).")


def _join(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if "__dict__" in skeleton:
            return {_join(k, tensors): _join(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            return [_join(v, tensors) for v in skeleton["__list__"]]
        return tuple(_join(v, tensors) for v in skeleton["__tuple__"])
    return skeleton


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, train: dict[str, Any] | None = None,
                    meta: dict[str, Any] | None = None) -> None:
    """Atomically write `model` (with its masks, codebooks and ties) and, optionally, a training state.

    Args:
        model: the model; deepzip structure on it is recorded, not stripped.
        path: the .safetensors file to write.
        train: a TrainState.state_dict(), to resume training exactly.
        meta: JSON-able facts of the caller's (a run's stage, accuracies so far).

    Examples:
        >>> save_checkpoint(model, "dense.safetensors")
    """
    record, tensors = capture(model)
    metadata = {"deepzip_structure": json.dumps(record)}
    arch = models.arch_of(model)
    if arch:
        metadata["deepzip_arch"] = json.dumps(arch)
    extra: dict[str, torch.Tensor] = {}
    if train is not None:
        metadata["deepzip_train"] = json.dumps(_split(train, "train", extra))
    if meta is not None:
        metadata["deepzip_meta"] = json.dumps(meta)
    with atomic_path(path) as tmp:
        save_file({**tensors, **{f"__{k}": v for k, v in extra.items()}}, tmp, metadata=metadata)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model tensors, {"structure", "arch", "train", "meta"}) of a checkpoint, nothing built yet."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Checkpoint not found: {path}.")
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        info = {key: json.loads(raw[f"deepzip_{key}"]) if f"deepzip_{key}" in raw else None
                for key in ("structure", "arch", "train", "meta")}
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a readable safetensors checkpoint: {e}.") from None
    extra = {k[2:]: tensors.pop(k) for k in [k for k in tensors if k.startswith("__")]}
    if info["train"] is not None:
        try:
            info["train"] = _join(info["train"], extra)
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path} has a corrupt training state.") from None
    return tensors, info


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Fill `model` (same architecture) from a checkpoint, masks and codebooks included.

    Args:
        model: a module of the checkpoint's architecture, in any state (deepzip structure on it
            is replaced by the checkpoint's).
        path: a .safetensors checkpoint (from save_checkpoint, or a plain state_dict's).

    Returns {"arch", "train", "meta"}: what else the checkpoint holds.

    Examples:
        >>> model = dz.create_model("lenet300"); load_checkpoint(model, "out/lenet300/dense.safetensors")
    """
    tensors, info = read_checkpoint(path)
    record = info["structure"] or {}
    try:
        restore_(model, record, tensors)
    except ModelMismatchError as e:
        raise ModelMismatchError(f"{Path(path).name}: {e}") from None
    return {k: info[k] for k in ("arch", "train", "meta")}


_PICKLED = (".pt", ".pth", ".bin", ".ckpt")


def load_weights(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Fill `model` from trained weights: a deepzip checkpoint or any safetensors file of its
    state_dict, or a PyTorch state dict (.pt, .pth, .bin), read with `weights_only=True` so that
    nothing in it is executed (a dict under "state_dict" or "model" is looked into).

    Raises ModelMismatchError naming the names and shapes that differ, before anything changes.

    Args:
        model: the module the weights are for.
        path: the file.

    Examples:
        >>> load_weights(MyNet(), "trained.pt")
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}.")
    if path.suffix not in _PICKLED:
        return load_checkpoint(model, path)
    import pickle

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise ConfigError(f"{path} cannot be read as a state dict with weights_only=True ({str(e).splitlines()[0]}); "
                          f"save model.state_dict() with torch.save, or as safetensors.") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                         for k, v in state.items()):
        raise ConfigError(f"{path} is not a state dict (a mapping of names to tensors); save model.state_dict().")
    try:
        restore_(model, {}, {k: v.detach() for k, v in state.items()})
    except ModelMismatchError as e:
        raise ModelMismatchError(f"{path.name}: {e}") from None
    return {"arch": None, "train": None, "meta": None}


def weights_digest(model: nn.Module) -> str:
    """sha256 (hex) over a model's tensors by name, masks and codebooks included: what identifies
    the weights a run starts from, and what shows that every rank of a torchrun job holds the same.

    Examples:
        >>> weights_digest(model)[:16]
        '3f1c…'
    """
    import hashlib

    _, tensors = capture(model)
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode())
        digest.update(tensors[name].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
