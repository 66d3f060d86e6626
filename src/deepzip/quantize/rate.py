"""Training for the file: quantization-aware training whose quantizer pays for bits.

Each selected weight matrix gets a codebook of up to K = 2^bits − 1 trainable centroids beside a
fixed zero, initialised by k-means on its non-zero weights (as `share_weights_` would). Every
training step each weight takes the code that minimises

    (w − μ_k)² / s² + λ · (−log₂ π_k),

the squared error in units of the layer's initial weight spread s plus λ times the code's cost
in the stream, π being the frequencies of the codes the step before in the layer's live block
(the rows and columns with any weight left: the file stores only those) (an entropy-constrained
quantizer, Chou, Lookabaugh & Gray 1989; in training, Wiedemann et al. 2018). The task loss is
computed on the model with those quantized weights, so it sees exactly what the file will hold;
the gradient reaches the float weights straight through the rounding, and the centroids
through the codes that use them (Deep Compression's centroid fine-tuning). Zero is the most
probable code after pruning, so its region widens with λ: weights the task does not hold
against it fall to zero; a centroid that loses its weights grows expensive and empties; the
task pushes back the weights it needs. Sparsity and codebook sizes are outcomes of training.
λ = 0 is plain nearest-level quantization-aware training. `harden_` fixes the codes the last
evaluation measured. The estimate of a layer's bits is n · H(π) of the live block's codes, the
order-0 entropy of the code stream, zeros included (how closely the file follows it:
docs/results.md); over the whole matrix, dead rows included, the estimate would overstate the
file by the rows no weight is left in.

Why not a penalty on the loss: a first version added λ · (soft estimate of the bits) to the
task loss. With σ of the soft assignment trainable, the rate rewarded a σ wide enough to call
every weight zero, which the task never saw (a toy model at 100 % fell to 10 % when hardened);
with σ fixed and the forward pass quantized, its gradient acts only at cluster boundaries and
shrank a toy file by 3 %. The quantizer's own decision is where the rate belongs.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..checks import check, check_each, number, require_finite, whole
from ..errors import ConfigError
from ..limits import MAX_RATE_BITS
from ..protocols import CheckpointedLoss, OwnParameters, cross_entropy
from ..reparam import is_shared, lookup, set_mask_, share_
from ..selection import Filter, Weight, per_layer, select
from .kmeans import kmeans_1d

COSTS = 1 << 22  # cost-matrix entries per piece when assigning codes: weights × (K + 1), 16 MB


def _live_counts(codes: torch.Tensor, k: int) -> torch.Tensor:
    """How often each of k codes occurs in the live block: the rows (output units) and columns
    (inputs) with a code other than 0. The file stores only that block (its live layout), so
    the zeros of removed units cost nothing and do not make zero look cheaper than it is."""
    rows = codes.reshape(codes.shape[0], -1) if codes.dim() > 1 else codes.reshape(1, -1)
    live = (rows != 0).any(dim=1)[:, None] & (rows != 0).any(dim=0)[None, :]
    return torch.bincount(rows[live], minlength=k)


class _Quantized(nn.Module):
    """`model`, called with some of its weights replaced (torch.func.functional_call): what the
    task loss runs, so a distillation loss's hooks on the model's layers still fire."""

    def __init__(self, model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.inner, self.weights = model, weights

    def forward(self, *args, **kwargs):
        return functional_call(self.inner, self.weights, args, kwargs)


def check_rate(weight: Any, bits: Any) -> None:
    """The rate term's settings: a finite weight λ ≥ 0, and codebook bits from 1 to 8 (one value
    or per layer). RateLoss and the recipe's rate stage both ask this.

    Examples:
        >>> check_rate(0.05, {"fc1": 3})
    """
    check(number(0)(weight), "weight", "a finite number ≥ 0", weight)
    check_each(bits, "bits", f"a whole number from 1 to {MAX_RATE_BITS}", whole(1, MAX_RATE_BITS))


class RateLoss(nn.Module):
    """Task loss on the model quantized by an entropy-constrained quantizer (see the module's text).

    Args:
        model: the model whose weights are rated; its float weights stay as they are (the
            quantized ones exist only inside each forward pass, and in `harden_`).
        weight: λ, what one bit of code length costs in units of squared error (divided by
            the layer's squared weight spread); 0 is plain quantization-aware training. Sweep it: 0.01 to 0.3 covers the
            LeNets from no change to most weights gone.
        bits: codebook size per layer: up to 2^bits − 1 non-zero centroids beside zero; an int,
            or a dict by layer name / kind / "default".
        task: `task(model, batch) -> loss`; default cross-entropy.
        filter_fn: selects layers, as for prune_.

    The centroids train with the model: pass the loss as `loss_fn` to `dz.train`, which
    optimizes an nn.Module loss's parameters too. Prune first: the rate makes zero cheap where
    zero is already the common code.

    Examples:
        >>> dz.prune_(model, sparsity=0.9)
        >>> rate = dz.RateLoss(model, weight=0.03, bits=3)
        >>> dz.train(model, data, epochs=4, loss_fn=rate)
        >>> rate.bits(model)          # n · H of the codes, in bits
        >>> dz.harden_(model, rate)   # pruned and shared as trained; dz.save codes it
    """

    def __init__(self, model: nn.Module, weight: float, *, bits: int | Mapping[str, int] = 4,
                 task: Callable[[nn.Module, Any], torch.Tensor] | None = None,
                 filter_fn: Filter | None = None) -> None:
        super().__init__()
        check_rate(weight, bits)
        self.weight = float(weight)
        # Not a submodule: a distillation loss's teacher must not land in this loss's state, and
        # what of the task trains or is checkpointed is the task's own say (trainable_parameters).
        object.__setattr__(self, "task", task or cross_entropy)
        self.names: list[str] = []
        self._rated: list[Weight] = []  # the model's weights, by the index of their codebook
        self.centroids = nn.ParameterList()
        for i, w in enumerate(select(model, bits, "the rate bits setting", filter_fn)):
            if is_shared(w.module, w.param):
                raise ConfigError(f"{w.name} is already shared; RateLoss rates plain (or pruned) weights.")
            b = per_layer(bits, w)
            value = w.value.detach()
            require_finite(value, w.name, "rate")
            kept = value[value != 0].cpu().double().numpy()
            centroids, _ = kmeans_1d(kept, 2**b - 1, "linear")
            if centroids.size == 0:  # an all-zero layer: one centroid, which nothing will use
                centroids = np.array([1e-3])
            self.centroids.append(nn.Parameter(torch.from_numpy(centroids.astype(np.float32)).to(value.device)))
            spread = float(kept.std()) if kept.size > 1 else 0.0
            self.register_buffer(f"spread{i}", torch.tensor(spread if spread > 0 else 1e-3, device=value.device))
            self.names.append(w.name)
            self._rated.append(w)
            # The frequencies the first step's decisions use: those of plain nearest-level codes.
            self.register_buffer(f"counts{i}", torch.zeros(centroids.size + 1, dtype=torch.long, device=value.device))
            getattr(self, f"counts{i}").copy_(_live_counts(self.codes(i, nearest=True), centroids.size + 1))
        if not self.names:
            raise ConfigError("RateLoss found no weight to rate: select layers with bits= or filter_fn=.")

    def _layer(self, i: int) -> Weight:
        return self._rated[i]

    def levels(self, i: int) -> torch.Tensor:
        """Layer i's values: zero, then its centroids."""
        return torch.cat([self.centroids[i].new_zeros(1), self.centroids[i]])

    def code_bits(self, i: int) -> torch.Tensor:
        """What each of layer i's codes costs now, in bits: −log₂ of its frequency (one weight's
        worth for a code nobody uses, so it stays finite)."""
        counts = getattr(self, f"counts{i}").double().clamp(min=1)
        return -(counts / counts.sum()).log2()

    @torch.no_grad()
    def codes(self, i: int, values: torch.Tensor | None = None, *, nearest: bool = False) -> torch.Tensor:
        """Each weight's code (long, the weight's shape): the entropy-constrained choice, or with
        `nearest` the nearest level; exact zeros (pruned) are code 0."""
        values = self._layer(i).value.detach() if values is None else values.detach()
        flat, levels = values.reshape(-1), self.levels(i).detach()
        spread2 = getattr(self, f"spread{i}") ** 2
        penalty = 0 if nearest or self.weight == 0 else (self.weight * self.code_bits(i)).to(flat.dtype)
        out = torch.empty(flat.numel(), dtype=torch.long, device=flat.device)
        chunk = max(1, COSTS // levels.numel())
        for start in range(0, flat.numel(), chunk):
            piece = flat[start:start + chunk]
            cost = (piece[:, None] - levels[None, :]) ** 2 / spread2 + penalty
            out[start:start + chunk] = cost.argmin(dim=1)
        out[flat == 0] = 0
        return out.reshape(values.shape)

    @torch.no_grad()
    def layer_bits(self, model: nn.Module) -> dict[str, float]:
        """The estimate per layer, in bits: n · H of the codes each weight of the live block takes now."""
        out = {}
        for i, name in enumerate(self.names):
            counts = _live_counts(self.codes(i), self.centroids[i].numel() + 1).double()
            p = counts[counts > 0] / counts.sum()
            out[name] = max(0.0, float(-(p * p.log2()).sum() * counts.sum()))
        return out

    def bits(self, model: nn.Module) -> float:
        """The estimate for all rated layers, in bits."""
        return sum(self.layer_bits(model).values())

    @torch.no_grad()
    def epoch_metrics(self, model: nn.Module) -> dict[str, float]:
        """What the history and TensorBoard show per epoch of rate training: the rated layers'
        estimated bytes and the fraction of their weights coded zero."""
        zeros = total = 0
        for i in range(len(self.names)):
            codes = self.codes(i)
            zeros, total = zeros + int((codes == 0).sum()), total + codes.numel()
        return {"rate/estimated_bytes": self.bits(model) / 8, "rate/sparsity": zeros / max(total, 1)}

    def quantized(self, model: nn.Module, *, update: bool = False) -> nn.Module:
        """`model` running on its rated weights rounded to their codes (straight-through to the
        float weights, and to the centroids through the codes): what the task loss trains, and
        what evaluation during rate training measures. `update` (training) makes these codes'
        frequencies the prices of the next step's decisions."""
        weights = {}
        # Under torchrun the loss is handed DistributedDataParallel, which names the weights module.*.
        prefix = "module." if isinstance(model, nn.parallel.DistributedDataParallel) else ""
        for i, w in enumerate(self._rated):
            value = w.value
            codes = self.codes(i, value)
            if update:
                getattr(self, f"counts{i}").copy_(_live_counts(codes, self.centroids[i].numel() + 1))
            q = lookup(self.levels(i), codes)  # a gradient that is the same whatever the threads
            weights[prefix + w.name] = q + (value - value.detach())  # exactly q, straight through to value
        return _Quantized(model, weights)

    def trainable_parameters(self):
        """What dz.train optimizes with the model: the codebooks, and what the task trains (a
        distillation loss's regressors; never its teacher)."""
        task = self.task
        own = (task.trainable_parameters() if isinstance(task, OwnParameters) else
               task.parameters() if isinstance(task, nn.Module) else [])
        return [*self.centroids, *own]

    def checkpoint_state(self) -> dict[str, Any]:
        """What a training checkpoint keeps of the loss (dz.Checkpoint, resume): its codebooks,
        spreads and code frequencies, so a resumed run makes the same decisions, and the task's
        own state (a distillation loss's regressors and discriminator)."""
        own = self.task.checkpoint_state() if isinstance(self.task, CheckpointedLoss) else {}
        return {"rate": dict(self.state_dict()), "task": own}

    def load_checkpoint_state(self, state: dict[str, Any]) -> None:
        rate = state["rate"]
        # The codebooks are k-means'd from the weights when the loss is built, and a resumed run
        # builds it from the weights of its checkpoint: k-means may find another number of
        # centroids there. The saved sizes win (in place: the optimizer holds these tensors).
        for i, centroids in enumerate(self.centroids):
            saved = rate[f"centroids.{i}"]
            if saved.shape != centroids.shape:
                centroids.data = torch.empty_like(saved, device=centroids.device)
                setattr(self, f"counts{i}", torch.empty_like(rate[f"counts{i}"], device=centroids.device))
        self.load_state_dict(rate)
        if state.get("task") and isinstance(self.task, CheckpointedLoss):
            self.task.load_checkpoint_state(state["task"])

    def forward(self, model: nn.Module, batch) -> torch.Tensor:
        return self.task(self.quantized(model, update=True), batch)


@torch.no_grad()
def harden_(model: nn.Module, rate: RateLoss) -> dict[str, dict[str, float]]:
    """Make the rate-trained assignment hard, in place: each weight takes the code the forward
    pass of rate training gave it (the entropy-constrained choice), so no prediction changes; code-0 weights
    are pruned; centroids no weight chose are dropped; each layer becomes a shared layer
    (trainable codebook, fixed codes) that fine-tunes and saves like any other.

    Args:
        model: the model the RateLoss was built on.
        rate: the trained RateLoss.

    Returns {layer: {"sparsity", "centroids", "bits"}}: what training decided per layer, and
    the estimate of its hard codes (n · H of their frequencies).

    Examples:
        >>> summary = dz.harden_(model, rate); summary["fc1.weight"]["sparsity"]
        0.962
    """
    summary = {}
    for i, name in enumerate(rate.names):
        w = rate._layer(i)
        original = w.module._parameters.get(w.param)
        codes = rate.codes(i).reshape(-1).cpu()
        used = torch.unique(codes[codes > 0])
        counts = _live_counts(codes.reshape(original.shape), rate.centroids[i].numel() + 1).double()
        p = counts[counts > 0] / counts.sum()
        summary[name] = {"sparsity": float((codes == 0).double().mean()), "centroids": int(used.numel()),
                         "bits": max(0.0, float(-(p * p.log2()).sum() * counts.sum()))}
        if used.numel():  # code 0 is zero in a shared layer: the pruned weights need no mask
            renumber = torch.zeros(rate.centroids[i].numel() + 1, dtype=torch.long)
            renumber[used] = torch.arange(1, used.numel() + 1)
            dtype = torch.uint8 if used.numel() < 256 else torch.int16
            assign = renumber[codes].to(dtype).reshape(original.shape)
            share_(w.module, w.param, rate.centroids[i].detach()[used - 1].clone(), assign)
        else:  # every weight went to zero: a mask says so
            set_mask_(w.module, w.param, torch.zeros_like(original, dtype=torch.bool))
    return summary

