"""Calibration: what post-training quantizers need to know of a model, from a few hundred samples.

Two facts per layer, gathered in one pass of the calibration samples through the model:

  hessians  for each linear layer (nn.Linear, transformers' Conv1D), H = Σ xᵀx over every input
            row it saw, in float64 (sums of 10⁵ outer products lose digits in float32). GPTQ
            (quantize/gptq.py) rounds against it: the output error of a weight error E is
            tr(E H Eᵀ), so columns that meet large inputs are rounded more carefully.
  fisher    for each weight of a linear or embedding layer, the Fisher (Gauss-Newton)
            information of its rows (dim 0): the sum over every token of the output's sensitivity
            to the row's weights, exact per token. With a Gaussian probe v on the model's output
            o, the gradient δ reaching a linear layer's output row r at token t gives
            F_r = Σ_t δ_r(t)² · mean_j x_j(t)², the diagonal's mean over the row, in expectation
            over v; an embedding row gets Σ over the tokens that read it of mean_j δ_j(t)². It
            tells the quantizer which rows matter: a token no calibration text used scores 0.
            With `logits`, the probe is a label sampled from the output's softmax instead (the
            Fisher information of the predictions, SqueezeLLM's weighting); not the default,
            because a confident model samples its own argmax and most rows' estimates collapse.

Only what the quantizer reads is kept: one H per linear layer (in × in float64) and one
vector per weight's rows; no parameter gradient is ever formed (the backward pass stops at
the layers' outputs), and the model is never copied.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from ..errors import ConfigError


@dataclass
class Calibration:
    """What `calibrate` measured.

    hessians: module name -> H = Σ xᵀx, float64 (in_features, in_features), linear layers only.
    fisher: parameter name -> float64 (rows,): the Fisher information of each row (dim 0).
    rows: module name -> input rows seen (tokens × samples).
    samples: calibration samples seen.
    """

    hessians: dict[str, torch.Tensor] = field(default_factory=dict)
    fisher: dict[str, torch.Tensor] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    samples: int = 0


def _kind(module: nn.Module) -> str | None:
    from ..models.hf import is_conv1d  # no transformers import: recognised by name

    if isinstance(module, nn.Linear):
        return "linear"
    if is_conv1d(module):
        return "conv1d"  # weight in × out: its rows (dim 0) are the inputs
    if isinstance(module, nn.Embedding):
        return "embedding"
    return None


def default_forward(model: nn.Module, batch: Any) -> torch.Tensor:
    """model(x) for a batch that is x or (x, y, …)."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return model(x.to(next(model.parameters()).device))


def probe_loss(out: torch.Tensor, logits: bool, generator: torch.Generator) -> torch.Tensor:
    """A scalar whose gradient, squared, estimates the output's Gauss-Newton / Fisher diagonal.

    Args:
        out: the model's output for a batch.
        logits: classes on dimension 1 (a label sampled from the softmax), else a Gaussian probe.
        generator: the seeded random stream.
    """
    out = out.float()
    if not logits:
        return (out * torch.randn(out.shape, generator=generator).to(out.device)).sum()
    moved = out.movedim(1, -1).reshape(-1, out.shape[1])
    labels = torch.multinomial(F.softmax(moved.detach(), -1).cpu(), 1, generator=generator).reshape(-1)
    return F.cross_entropy(moved, labels.to(out.device), reduction="sum")


class _Hooks:
    """Forward hooks that add each linear layer's xᵀx, and keep each layer's input and output
    for the backward pass of the Fisher probes."""

    def __init__(self, model: nn.Module, cal: Calibration) -> None:
        self.cal, self.first, self.seen = cal, True, []
        self.last: tuple[torch.Tensor, str] | None = None  # the last linear layer's input, and its name
        names = {id(p): n for n, p in model.named_parameters()}  # a tied weight under its first name
        self.handles = [m.register_forward_hook(self.hook(names[id(m.weight)], name, kind))
                        for name, m in model.named_modules() if (kind := _kind(m)) and id(m.weight) in names]

    def hook(self, param: str, name: str, kind: str):
        def run(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            x = inputs[0].detach()
            if kind != "embedding":
                x = x.reshape(-1, x.shape[-1])
                if self.first and kind == "linear":
                    self._hessian(name, inputs[0], x)
            if output.requires_grad:
                self.seen.append((param, kind, x, output, module.weight.shape[0]))
        return run

    def _hessian(self, name: str, given: torch.Tensor, x: torch.Tensor) -> None:
        """Add xᵀx to the layer's H. Layers called one after another on the very same input
        tensor (a transformer's query, key and value; gate and up) share one H, held once."""
        self.cal.rows[name] = self.cal.rows.get(name, 0) + x.shape[0]
        if self.last is not None and self.last[0] is given and self.last[1] != name:
            self.cal.hessians.setdefault(name, self.cal.hessians[self.last[1]])
            return
        self.last = (given, name)
        xd = x.double()
        if name in self.cal.hessians:
            self.cal.hessians[name].add_(xd.T @ xd)
        else:
            self.cal.hessians[name] = xd.T @ xd

    def fisher(self, loss: torch.Tensor) -> None:
        """Backward from `loss` to the kept outputs only, adding each row's Fisher information."""
        outputs = [o for *_, o, _ in self.seen]
        grads = torch.autograd.grad(loss, outputs, allow_unused=True) if outputs else []
        for (param, kind, x, _, rows), g in zip(self.seen, grads):
            if g is None:
                continue
            g = g.detach().double().reshape(-1, g.shape[-1])
            if kind == "linear":
                add = (g.pow(2) * x.double().pow(2).mean(1, keepdim=True)).sum(0)
            elif kind == "conv1d":
                add = (x.double().pow(2) * g.pow(2).mean(1, keepdim=True)).sum(0)
            else:
                add = torch.zeros(rows, dtype=torch.float64).index_add_(0, x.reshape(-1).cpu(), g.pow(2).mean(1).cpu())
            self.cal.fisher[param] = self.cal.fisher[param].add_(add.cpu()) if param in self.cal.fisher else add.cpu()
        self.seen = []

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


TOKENS = 1024  # token ids a probed pass holds at most (H and the Fisher sums do not care how a batch is cut)


def _split(batch: Any, probes: int) -> list[Any]:
    """A batch of token ids cut into parts of at most TOKENS tokens where the Fisher probes will
    backpropagate through it: the pass keeps every layer's input and output for that, so a
    language model's 32 windows of 128 tokens held 10 GB at once; 8 windows hold a quarter."""
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if not probes or not isinstance(x, torch.Tensor) or x.is_floating_point() or x.dim() != 2 or x.numel() <= 2 * TOKENS:
        return [batch]
    rows = max(1, TOKENS // x.shape[1])
    if isinstance(batch, (tuple, list)):
        return [type(batch)(t[i:i + rows] for t in batch) for i in range(0, len(x), rows)]
    return [x[i:i + rows] for i in range(0, len(x), rows)]


def calibrate(model: nn.Module, batches: Iterable[Any], *, forward: Callable[[nn.Module, Any], torch.Tensor] | None = None,
              logits: bool = False, probes: int = 1, seed: int = 0, progress: bool = False) -> Calibration:
    """Run the calibration batches through `model` once and measure H per linear layer and the
    Fisher information of the rows of every linear and embedding weight.

    Args:
        model: the float model (left unchanged, in eval mode).
        batches: calibration batches (inputs, or (inputs, labels)); labels are never read.
        forward: how to call the model on a batch (default: `model(x)`).
        logits: probe with labels sampled from the output's softmax (classes on dimension 1)
            instead of Gaussian vectors.
        probes: probe passes per batch for the Fisher estimate (0: no Fisher).
        seed: seeds the probes.
        progress: a progress bar over batches.

    Examples:
        >>> cal = calibrate(model, [x[i:i + 32] for i in range(0, 256, 32)])
        >>> cal.hessians["fc1"].shape, cal.fisher["fc1.weight"].shape
        (torch.Size([784, 784]), torch.Size([300]))
    """
    forward = forward or default_forward
    cal = Calibration()
    generator = torch.Generator().manual_seed(seed)
    hooks = _Hooks(model, cal)
    was = model.training
    frozen = [p for p in model.parameters() if not p.requires_grad]
    model.eval()
    try:
        for p in frozen:  # the probes' gradients must reach the layers' outputs
            p.requires_grad_(True)
        parts = (part for batch in batches for part in _split(batch, probes))
        for batch in tqdm(parts, desc="calibrate", disable=None if progress else True, leave=False):
            cal.samples += len(batch[0] if isinstance(batch, (tuple, list)) else batch)
            for probe in range(max(probes, 1)):
                hooks.first = probe == 0  # H from each batch's first pass only
                hooks.last = None
                with torch.set_grad_enabled(probes > 0):
                    out = forward(model, batch)
                    if probes > 0:
                        hooks.fisher(probe_loss(out, logits, generator))
                hooks.seen = []
    finally:
        hooks.remove()
        hooks.last = None
        for p in frozen:
            p.requires_grad_(False)
        model.train(was)
    if not cal.samples:
        raise ConfigError("calibration needs at least one sample; the calibration data is empty.")
    return cal
