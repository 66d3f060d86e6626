"""Trained quantization: each layer's weights become indices into a small trainable codebook.

`share_weights_` clusters each layer's surviving weights by 1-D k-means and turns the weight
into a shared one (reparam/shared.py: a trainable codebook and fixed codes, 0 = zero), so any
training loop then fine-tunes the centroids, as in the paper.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..checks import check, check_each, require_finite, whole
from ..errors import ConfigError
from ..limits import MAX_SHARE_BITS
from ..reparam import SharedWeight, is_shared, share_, sharing
from ..selection import Filter, Weight, per_layer, select
from .kmeans import INITS, Init, kmeans_1d

# The paper's 8 bits for conv and 5 for fc; matrices it did not study get the safer 8.
PAPER_BITS = {"conv": 8, "linear": 5, "embedding": 8, "attention": 8, "recurrent": 8, "other": 8}
BITS_RULE = f"a whole number from 1 to {MAX_SHARE_BITS}"


@dataclass(frozen=True)
class KMeans:
    """Weight sharing by 1-D k-means on each layer's surviving weights.

    Args:
        bits: codebook size is 2^bits − 1 non-zero values plus zero; an int for all layers or a
            dict keyed by layer name, kind or "default" (None: the paper's 8 for conv, 5 for linear).
        init: "linear" (the paper's best), "density" or "random".
        max_iter: Lloyd iterations at most.
        seed: for init="random".

    Examples:
        >>> share_weights_(model, KMeans(bits={"conv": 8, "linear": 5}))
    """

    bits: int | Mapping[str, int] | None = None
    init: Init = "linear"
    max_iter: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        check(self.init in INITS, "init", " or ".join(map(repr, INITS)), self.init)
        check_each(self.bits, "bits", BITS_RULE, whole(1, MAX_SHARE_BITS))

    @property
    def setting(self) -> int | Mapping[str, int]:
        """The bits setting in force: the given one, or the paper's per kind."""
        return PAPER_BITS if self.bits is None else self.bits


def share_weights_(
    model: nn.Module,
    config: KMeans | None = None,
    *,
    bits: int | Mapping[str, int] | None = None,
    init: Init = "linear",
    filter_fn: Filter | None = None,
    param: str = "weight",
    keep_shared: bool = False,
) -> None:
    """Cluster each compressible layer's surviving weights and make the layer shared, in place.

    Pruned weights (masked, or exactly zero) stay zero and are not clustered. `param="bias"`
    shares the biases instead, each layer's with its own small codebook: once the weights are
    pruned and shared, float16 biases are ~5 % of a LeNet's file, and 4-bit codes halve that.

    Args:
        model: the model, changed in place.
        config: a KMeans config, or give `bits` / `init` instead.
        bits: codebook bits, one int or a dict by layer name / kind / "default".
        init: k-means initialisation.
        filter_fn: `filter_fn(module, name) -> bool` selects layers.
        param: which parameter of each layer to share, "weight" or "bias".
        keep_shared: leave layers that are shared already as they are (their codebooks chosen
            by rate training, say) instead of refusing them.

    Examples:
        >>> dz.share_weights_(model, bits={"conv": 8, "linear": 5})
        >>> dz.train(model, data, epochs=1, lr=1e-4)   # fine-tunes the centroids
    """
    if config is None:
        config = KMeans(bits=bits, init=init)
    elif bits is not None:
        raise ConfigError("pass either a KMeans config or bits=, not both.")
    chosen = select(model, config.setting, "the bits setting", filter_fn)
    if param != "weight":  # the biases of the layers chosen
        chosen = [Weight(w.layer, w.module, param, w.kind) for w in chosen
                  if w.param == "weight" and (param in w.module._parameters or is_shared(w.module, param))]
    # A weight tied between layers (an embedding and an output layer, say) is clustered once, by
    # the first layer that holds it; the others then share its codebook and codes, so the tie
    # survives training and the file stores it once.
    first: dict[int, SharedWeight] = {}
    for w in chosen:
        if is_shared(w.module, w.param):
            if keep_shared:
                continue
            raise ConfigError(f"{w.name} is already shared; strip it first (deepzip.strip_).")
        original = w.module._parameters.get(w.param)
        if original is None:  # a layer without a bias
            continue
        if id(original) in first:
            share_(w.module, w.param, first[id(original)])
            continue
        require_finite(original, w.name, "share")
        keep = original.detach() != 0  # masked weights are exactly zero: the mask says nothing more
        values = original.detach()[keep].cpu().double().numpy()
        b = per_layer(config.setting, w)
        centroids, labels = kmeans_1d(values, 2**b - 1, config.init, config.max_iter, config.seed)
        # The codes in the narrow type they are kept in: a 100 M-weight layer's int64 codes alone were 0.8 GB.
        code = torch.uint8 if centroids.size < 256 else torch.int16
        assign = torch.zeros(original.shape, dtype=code)
        assign[keep.cpu()] = torch.from_numpy((labels + 1).astype(np.int16 if code == torch.int16 else np.uint8))
        first[id(original)] = share_(w.module, w.param, torch.from_numpy(centroids.astype(np.float32)), assign)
        del original, keep, values, labels, assign  # before the next layer: the dense weight can go now


def round_(model: nn.Module, dtype: torch.dtype = torch.float16, names: tuple[str, ...] = ("bias",)) -> None:
    """Round the named small tensors (biases by default) to values `dtype` can hold, in place.

    The model stays float32, but deepzip.save then stores those tensors in half the bytes and
    still bit-exactly: after pruning and sharing, raw biases are a tenth of a LeNet's file.
    A name "<param>_centroids" means the codebook of a shared `<param>`.

    Args:
        model: the model, changed in place.
        dtype: the type whose values to round to.
        names: parameter names ("bias") or codebooks ("weight_centroids", "bias_centroids").

    Examples:
        >>> dz.round_(model, names=("bias", "weight_centroids"))
    """
    with torch.no_grad():
        for module in model.modules():
            for name in names:
                base = name.removesuffix("_centroids")
                sw = sharing(module, base) if name.endswith("_centroids") else None
                t = sw.centroids if sw is not None else module._parameters.get(name)
                if t is not None and t.is_floating_point():
                    t.copy_(t.to(dtype).to(t.dtype))
