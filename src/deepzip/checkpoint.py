"""Dense checkpoints as safetensors: no pickle, and the architecture record travels with them."""
from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from . import models
from .errors import ConfigError, ModelMismatchError
from .files import atomic_path


def save_checkpoint(model: nn.Module, path: str | os.PathLike) -> None:
    """Atomically write the model's plain state (deepzip structure must be stripped first)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    arch = models.arch_of(model)
    with atomic_path(path) as tmp:
        save_file(state, tmp, metadata={"deepzip_arch": json.dumps(arch)} if arch else None)


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Checkpoint not found: {path}.")
    try:
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"{path} is not a readable safetensors checkpoint: {e}.") from None
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelMismatchError(
            f"{path} does not fit this model: missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
    return model
