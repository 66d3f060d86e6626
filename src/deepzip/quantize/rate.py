"""Training for the file: a differentiable estimate of the bits a layer will cost, as a loss.

Each selected weight matrix gets a codebook of K trainable centroids beside a fixed zero, a
trainable probability for each of the K + 1 codes, and a trainable width σ. A weight w is
assigned softly to code k with responsibility

    r_k(w) = softmax_k( log π_k − (w − μ_k)² / 2σ² ),   μ_0 = 0,

and the layer's rate is the expected length of its codes under the code probabilities,

    bits = Σ_w Σ_k r_k(w) · (−log₂ π_k),

which for hard assignments and π equal to their frequencies is n · H(π): the order-0 entropy
that deepzip's coders reach on the code stream, the zeros' positions included (a pruned weight
is code 0). Minimised with the task loss it pulls weights onto few, probable values — most of
them onto zero — and the probabilities onto the assignments (Soft Weight-Sharing, Ullrich et
al. 2017, with the mixture's negative log-likelihood replaced by the code length the file pays).
`harden_` then makes the assignment hard: code-0 weights are pruned, centroids nobody uses are
dropped, and the layer becomes an ordinary shared layer that `save` codes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import require_finite
from ..errors import ConfigError
from ..reparam import is_shared, set_mask_, share_
from ..selection import Filter, Weight, per_layer, select

LN2 = math.log(2.0)


def _cross_entropy(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


class RateLoss(nn.Module):
    """task loss + weight × estimated coded bits of the selected layers (see the module's text).

    Args:
        model: the model whose weights are rated (not changed here).
        weight: λ, per bit; 0 trains for the task alone.
        bits: codebook size per layer: 2^bits − 1 non-zero centroids beside zero; an int, or a
            dict by layer name / kind / "default".
        task: `task(model, batch) -> loss`; default cross-entropy.
        filter_fn: selects layers, as for prune_.
        samples: layers larger than this are rated on a fresh random sample of this many weights
            each call, scaled up (an unbiased estimate; memory stays samples × codes).

    The loss's own parameters (centroids, code logits, log σ) train with the model: pass it as
    `loss_fn` to `dz.train`, which optimizes an nn.Module loss's parameters too.

    Example:
        >>> rate = dz.RateLoss(model, weight=1e-4, bits=4)
        >>> dz.train(model, data, epochs=4, loss_fn=rate)
        >>> rate.bits(model)          # the estimate, in bits
        >>> dz.harden_(model, rate)   # pruned and shared as trained; dz.save codes it
    """

    def __init__(self, model: nn.Module, weight: float, *, bits: int | Mapping[str, int] = 4,
                 task: Callable[[nn.Module, Any], torch.Tensor] | None = None, filter_fn: Filter | None = None,
                 samples: int = 1 << 20) -> None:
        super().__init__()
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not weight >= 0:
            raise ConfigError(f"the rate weight must be a number ≥ 0, not {weight!r}.")
        self.weight = float(weight)
        self.task = task or _cross_entropy
        self.samples = int(samples)
        self.names: list[str] = []
        self._rated: list[Weight] = []  # the model's weights, by the index of their codebook
        self.centroids = nn.ParameterList()
        self.logits = nn.ParameterList()
        self.log_sigma = nn.ParameterList()
        for w in select(model, bits, "the rate bits setting", filter_fn):
            if is_shared(w.module, w.param):
                raise ConfigError(f"{w.name} is already shared; RateLoss rates plain (or pruned) weights.")
            b = per_layer(bits, w)
            if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 8:
                raise ConfigError(f"rate bits must be a whole number from 1 to 8, not {b!r} ({w.name}).")
            value = w.value.detach()
            require_finite(value, w.name, "rate")
            kept = value[value != 0]
            lo, hi = (float(kept.min()), float(kept.max())) if kept.numel() else (-1e-3, 1e-3)
            k = 2**b - 1
            # Centroids spread over the weights' range (the paper's linear init); code 0 starts as
            # probable as the zeros already are, at least a half: rate training prunes from there.
            self.centroids.append(nn.Parameter(torch.linspace(lo, hi, k, dtype=torch.float32, device=value.device)))
            p0 = max(0.5, 1 - kept.numel() / max(value.numel(), 1))
            logits = torch.full((k + 1,), math.log((1 - p0) / k), dtype=torch.float32)
            logits[0] = math.log(p0)
            self.logits.append(nn.Parameter(logits.to(value.device)))
            self.log_sigma.append(nn.Parameter(torch.tensor(math.log(max((hi - lo) / (2 * k), 1e-6)), device=value.device)))
            self.names.append(w.name)
            self._rated.append(w)
        if not self.names:
            raise ConfigError("RateLoss found no weight to rate: select layers with bits= or filter_fn=.")

    def _layer(self, i: int) -> Weight:
        return self._rated[i]

    def responsibilities(self, i: int, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, log π) of layer i for a flat tensor of weights: r is (n, K + 1)."""
        means = torch.cat([self.centroids[i].new_zeros(1), self.centroids[i]])
        log_pi = F.log_softmax(self.logits[i], dim=0)
        sigma2 = torch.exp(2 * self.log_sigma[i])
        scores = log_pi - (values[:, None] - means[None, :]) ** 2 / (2 * sigma2)
        return F.softmax(scores, dim=1), log_pi

    def layer_bits(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The estimate per layer, in bits, differentiable in the weights and the loss's parameters."""
        out = {}
        for i, name in enumerate(self.names):
            values = self._layer(i).value.reshape(-1)
            n = values.numel()
            if n > self.samples:
                values = values[torch.randint(n, (self.samples,), device=values.device)]
            r, log_pi = self.responsibilities(i, values)
            out[name] = (r * -log_pi).sum() / LN2 * (n / values.numel())
        return out

    def bits(self, model: nn.Module) -> torch.Tensor:
        """The estimate for all rated layers, in bits."""
        return sum(self.layer_bits(model).values())

    def checkpoint_state(self) -> dict[str, Any]:
        """What a training checkpoint keeps of the loss (dz.Checkpoint, resume): its codebooks,
        code logits and widths, so a resumed run goes on from the same estimate."""
        return dict(self.state_dict())

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state)

    def forward(self, model: nn.Module, batch) -> torch.Tensor:
        task = self.task(model, batch)
        if self.weight == 0:
            return task
        return task + self.weight * self.bits(model)


@torch.no_grad()
def harden_(model: nn.Module, rate: RateLoss) -> dict[str, dict[str, float]]:
    """Make the rate-trained assignment hard, in place: each weight takes its most likely code;
    code-0 weights are pruned (masked); centroids no weight chose are dropped; each layer becomes
    a shared layer (trainable codebook, fixed codes) that fine-tunes and saves like any other.

    Args:
        model: the model the RateLoss was built on.
        rate: the trained RateLoss.

    Returns {layer: {"sparsity", "centroids", "bits"}}: what training decided per layer, and
    the estimate of its hard codes (n · H of their frequencies).

    Example:
        >>> summary = dz.harden_(model, rate); summary["fc1.weight"]["sparsity"]
        0.962
    """
    summary = {}
    for i, name in enumerate(rate.names):
        w = rate._layer(i)
        original = w.module._parameters.get(w.param)
        values = original.detach().reshape(-1)
        codes = torch.empty(values.numel(), dtype=torch.long)
        for start in range(0, values.numel(), 1 << 20):  # a chunk at a time: r is n × (K + 1)
            r, _ = rate.responsibilities(i, values[start:start + (1 << 20)])
            codes[start:start + (1 << 20)] = r.argmax(dim=1).cpu()
        used = torch.unique(codes[codes > 0])
        counts = torch.bincount(codes, minlength=rate.centroids[i].numel() + 1).double()
        p = counts[counts > 0] / counts.sum()
        summary[name] = {"sparsity": float((codes == 0).double().mean()), "centroids": int(used.numel()),
                         "bits": float(-(p * p.log2()).sum() * counts.sum())}
        if used.numel():  # code 0 is zero in a shared layer: the pruned weights need no mask
            renumber = torch.zeros(rate.centroids[i].numel() + 1, dtype=torch.long)
            renumber[used] = torch.arange(1, used.numel() + 1)
            dtype = torch.uint8 if used.numel() < 256 else torch.int16
            assign = renumber[codes].to(dtype).reshape(original.shape)
            share_(w.module, w.param, rate.centroids[i].detach()[used - 1].cpu().clone(), assign)
        else:  # every weight went to zero: a mask says so
            set_mask_(w.module, w.param, torch.zeros_like(original, dtype=torch.bool))
    return summary

