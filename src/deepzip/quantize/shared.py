"""Trained quantization: each layer's weights become indices into a small trainable codebook.

A shared layer holds, instead of its `weight` Parameter:
  weight_centroids  Parameter, float32, shape (K,), K ≤ 2^bits − 1: the shared non-zero values
  weight_assign     buffer, uint8 (K < 256) or int16, the weight's shape: 0 = pruned (exactly 0),
                    k ≥ 1 = centroid k − 1
and `module.weight` is recomputed from them before every forward (as torch.nn.utils.prune does).
Code 0 is reserved for zero so that pruning, weight sharing and the file's filler entries all use
one representation, and a layer never has more than 2^bits distinct values, zero included.

Because the weight is `table[assign]` with `table = [0, c_1, …, c_K]`, autograd gives exactly the
paper's centroid gradient: the sum of the gradients of the weights assigned to each centroid.
Assignments never change, and zeros cannot move.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers import Filter, check_keys, compressible, per_layer
from ..prune.masks import get_mask, remove_mask_
from .kmeans import INITS, Init, kmeans_1d

PAPER_BITS = {"conv": 8, "linear": 5, "embedding": 8}
MAX_BITS = 12


@dataclass(frozen=True)
class KMeans:
    """Weight sharing by 1-D k-means on each layer's surviving weights.

    bits: codebook size is 2^bits − 1 non-zero values plus zero; an int for all layers or a dict
          keyed by layer name, kind or "default" (None: the paper's 8 for conv, 5 for linear).
    init: "linear" (the paper's best), "density" or "random".
    """

    bits: int | Mapping[str, int] | None = None
    init: Init = "linear"
    max_iter: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ConfigError(f"k-means init must be one of {', '.join(INITS)}, not {self.init!r}.")
        bits = self.bits.values() if isinstance(self.bits, Mapping) else [self.bits]
        for b in bits:
            if b is not None and (not isinstance(b, int) or not 1 <= b <= MAX_BITS):
                raise ConfigError(f"bits must be a whole number from 1 to {MAX_BITS}, not {b!r}.")

    def bits_for(self, name: str, kind: str) -> int | None:
        return per_layer(PAPER_BITS if self.bits is None else self.bits, name, kind, "bits")


def shared_names(module: nn.Module) -> list[str]:
    return list(getattr(module, "_dz_shared", ()))


def is_shared(module: nn.Module, name: str = "weight") -> bool:
    return name in shared_names(module)


def shared_weight(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """The dense weight a shared layer computes, or None if `name` is not shared."""
    if not is_shared(module, name):
        return None
    centroids = getattr(module, f"{name}_centroids")
    table = torch.cat([centroids.new_zeros(1), centroids])
    return table[getattr(module, f"{name}_assign").long()]


def _refresh(module: nn.Module, args: Any) -> None:
    for name in shared_names(module):
        setattr(module, name, shared_weight(module, name))


def share_(module: nn.Module, name: str, centroids: torch.Tensor, assign: torch.Tensor) -> None:
    """Make `module.<name>` shared with the given codebook (K,) and codes (0 = zero, k = centroid k−1)."""
    if is_shared(module, name):
        raise ConfigError(f"{name} of this {type(module).__name__} is already shared; strip it first.")
    original = getattr(module, name)
    if assign.shape != original.shape:
        raise ValueError(f"codes of shape {tuple(assign.shape)} do not fit {name} of shape {tuple(original.shape)}")
    remove_mask_(module, name)
    dtype = torch.uint8 if centroids.numel() < 256 else torch.int16
    del module._parameters[name]
    if not isinstance(centroids, nn.Parameter):  # a Parameter is passed to tie this layer to another's
        centroids = nn.Parameter(centroids.to(original.device, torch.float32))
    module.register_parameter(f"{name}_centroids", centroids)
    module.register_buffer(f"{name}_assign", assign.to(original.device, dtype))
    if not shared_names(module):
        module._dz_shared_hook = module.register_forward_pre_hook(_refresh)
    module._dz_shared = [*shared_names(module), name]
    setattr(module, name, shared_weight(module, name))


def unshare_(module: nn.Module, name: str = "weight") -> None:
    """Turn a shared weight back into a plain Parameter holding the same values."""
    if not is_shared(module, name):
        return
    value = shared_weight(module, name).detach().clone()
    module._dz_shared.remove(name)
    del module._parameters[f"{name}_centroids"]
    del module._buffers[f"{name}_assign"]
    delattr(module, name)
    module.register_parameter(name, nn.Parameter(value))
    if not module._dz_shared:
        module._dz_shared_hook.remove()
        del module._dz_shared, module._dz_shared_hook


def share_weights_(
    model: nn.Module,
    config: KMeans | None = None,
    *,
    bits: int | Mapping[str, int] | None = None,
    init: Init = "linear",
    filter_fn: Filter | None = None,
    param: str = "weight",
) -> None:
    """Cluster each compressible layer's surviving weights and make the layer shared, in place.

    Pruned weights (masked, or exactly zero) stay zero and are not clustered. `param="bias"`
    shares the biases instead, each layer's with its own small codebook: once the weights are
    pruned and shared, float16 biases are ~5 % of a LeNet's file, and 4-bit codes halve that.
    """
    if config is None:
        config = KMeans(bits=bits, init=init)
    elif bits is not None:
        raise ConfigError("pass either a KMeans config or bits=, not both.")
    check_keys(config.bits, model, "the bits setting")
    # A weight tied between layers (an embedding and an output layer, say) is clustered once, by
    # the first layer that holds it; the others then share its codebook and codes, so the tie
    # survives training and the file stores it once.
    first: dict[int, nn.Module] = {}
    for name, module, kind in compressible(model, filter_fn):
        b = config.bits_for(name, kind)
        if b is None:
            continue
        if is_shared(module, param):
            raise ConfigError(f"{param} of {name} is already shared; strip it first (deepzip.strip_).")
        original = module._parameters.get(param)
        if original is None:  # a layer without a bias
            continue
        tied = first.get(id(original))
        if tied is not None:
            share_(module, param, getattr(tied, f"{param}_centroids"), getattr(tied, f"{param}_assign"))
            continue
        first[id(original)] = module
        weight = original.detach()
        mask = get_mask(module, param)
        keep = (weight != 0) if mask is None else (mask & (weight != 0))
        values = weight[keep].cpu().double().numpy()
        centroids, labels = kmeans_1d(values, 2**b - 1, config.init, config.max_iter, config.seed)
        assign = torch.zeros(weight.shape, dtype=torch.int64)
        assign[keep.cpu()] = torch.from_numpy(labels.astype(np.int64)) + 1
        share_(module, param, torch.from_numpy(centroids.astype(np.float32)), assign)


def strip_(model: nn.Module) -> None:
    """Remove all deepzip structure (masks, sharing), keeping the weights' current values."""
    from ..prune.masks import masked_names

    for module in model.modules():
        for name in shared_names(module):
            unshare_(module, name)
        for name in masked_names(module):
            remove_mask_(module, name)


def round_(model: nn.Module, dtype: torch.dtype = torch.float16, names: tuple[str, ...] = ("bias",)) -> None:
    """Round the named small tensors (biases by default) to values `dtype` can hold, in place.

    The model stays float32, but deepzip.save then stores those tensors in half the bytes and
    still bit-exactly: after pruning and sharing, raw biases are a tenth of a LeNet's file.
    """
    with torch.no_grad():
        for module in model.modules():
            for name in names:
                t = module._parameters.get(name)
                if t is not None and t.is_floating_point():
                    t.copy_(t.to(dtype).to(t.dtype))
