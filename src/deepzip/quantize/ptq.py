"""Post-training quantization: pretrained weights to entropy-coded codes, no retraining.

Each weight matrix becomes a grid of a step per row (the file's `scales`, format version 5)
times integer levels, shared as a codebook of the levels used:

  steps    a step per row, `rel` × the tensor's rms, shaped by the rows' Fisher information
           (calibrate.py): step_r ∝ 1/√F_r, normalised so that the tensor's Fisher-weighted
           error is what a uniform step would give (a row that does not matter may round to
           zero). A row calibration never reached (a token no calibration text used) gets the
           step of the least-used row that was seen, capped at `max_step` × its own rms. Without
           a Fisher estimate, steps follow the rows' rms.
  rounding GPTQ's error-compensated rounding against the layer's input Hessian for linear
           layers (gptq.py); round-to-nearest for embeddings and convolutions.
  coding   the levels are entropy coded by the writer, so their count is free: the rate
           follows the step, about −log2(step) bits a weight, and the steps are set per tensor
           by the allocation (pipeline/ptq.py) to a target fidelity or size.

Why a uniform grid rather than k-means here: with entropy coding, a uniform quantizer is within
0.25 bit a weight of the rate-distortion bound at these rates, and k-means' advantage (fewer,
better-placed levels at a fixed width) is what the entropy coder already gives.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..reparam import share_, slots
from ..selection import kind_of
from .calibrate import Calibration
from .gptq import gptq_levels, round_levels

MAX_LEVEL = 16000  # levels of one tensor stay within ±this: the codebook below 2^15 values


@dataclass(frozen=True)
class PostTraining:
    """How `quantize_pretrained_` rounds.

    damp: GPTQ's damping of H, a fraction of its mean diagonal.
    act_order: GPTQ rounds columns by decreasing diag H.
    max_step: the step of a row calibration never reached is at most this many times its rms.
    min_rows: tensors with fewer rows (token-type tables, tiny heads) stay as they are.
    gptq: error-compensated rounding where a Hessian was measured (False: round to nearest).
    deadzone: rounding leans toward zero by this fraction of a step (fewer bits, a little more
        error; gptq.round_levels).
    rows: what shapes the steps of a tensor's rows: "rms" (each row's step in proportion to its
        own rms) or "fisher" (∝ 1/√ its Fisher information). On all-MiniLM-L6-v2 "rms" gives
        the smaller file at the same cosine (4.98 against 5.84 bits a weight at a drop of
        0.0009): the Fisher estimate of 256 sentences misjudges rows that other text uses. Fisher
        for the token embedding alone does no better (5.60 bits a weight at 0.00105): rare
        tokens' rows, made coarse, are met in other sentences.
    code_bits: at most 2^code_bits − 1 levels a tensor (zero and ±1 … ±(2^(code_bits−1) − 1)),
        so that a GPU holds every weight's code in code_bits bits (runtime/lut.py's packed
        layout) rather than in the ⌈log2⌉ of however many levels the entropy coder was free to
        use. Each row's step is at least its largest weight over the top level, so nothing is
        clipped by more than GPTQ compensates. None: no limit (the smallest file).

    Examples:
        >>> PostTraining(damp=0.01, gptq=True), PostTraining(code_bits=4)
    """

    damp: float = 0.01
    act_order: bool = True
    max_step: float = 3.0
    min_rows: int = 8
    gptq: bool = True
    deadzone: float = 0.0
    rows: str = "rms"
    code_bits: int | None = None

    @property
    def max_level(self) -> int:
        """The largest level magnitude a tensor may use."""
        return MAX_LEVEL if self.code_bits is None else (1 << (self.code_bits - 1)) - 1

    def __post_init__(self) -> None:
        if not (0 <= self.damp <= 1 and self.max_step > 0 and self.min_rows >= 1 and 0 <= self.deadzone < 0.5):
            raise ConfigError("PostTraining needs damp in [0, 1], max_step > 0, min_rows ≥ 1 and deadzone in [0, 0.5).")
        if self.rows not in ("rms", "fisher"):
            raise ConfigError(f"PostTraining.rows must be 'rms' or 'fisher', not {self.rows!r}.")
        if self.code_bits is not None and not (isinstance(self.code_bits, int) and 2 <= self.code_bits <= 8):
            raise ConfigError(f"code_bits must be a whole number of bits from 2 to 8, not {self.code_bits!r}.")


@dataclass
class Target:
    """One weight a post-training pass rounds: its owner, name, and what calibration knows of it."""

    name: str
    module: nn.Module
    attr: str
    hessian: torch.Tensor | None
    fisher: torch.Tensor | None
    ties: list[tuple[nn.Module, str]] = field(default_factory=list)  # other (module, attr) holding the same tensor
    # Each row's least step under a level limit (clipped_steps), by limit: a function of the float
    # weights alone, computed the first time they are rounded and not again at every search step.
    floors: dict[int, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def weight(self) -> torch.Tensor:
        return getattr(self.module, self.attr)


def targets(model: nn.Module, cal: Calibration | None, cfg: PostTraining = PostTraining()) -> list[Target]:
    """The weights post-training quantization rounds: every floating ≥ 2-D parameter of a
    linear, convolution or embedding layer with at least `cfg.min_rows` rows, each once (a tied
    weight under its first name, with the Hessian of whichever linear layer owns it).

    Examples:
        >>> [t.name for t in targets(model, cal)][:2]
        ['embeddings.word_embeddings.weight', 'embeddings.position_embeddings.weight']
    """
    from ..models.hf import is_conv1d

    cal = cal or Calibration()
    linear_h = {}
    for name, module in model.named_modules():
        if name in cal.hessians and isinstance(module, nn.Linear):
            linear_h[id(module.weight)] = cal.hessians[name]
    out, seen = [], {}
    for s in slots(model):
        if s.identity in seen:
            if seen[s.identity] is not None:
                seen[s.identity].ties.append((s.module, s.attr))
            continue
        seen[s.identity] = None
        if s.role != "param" or s.shared is not None:
            continue
        value = s.value
        if value.dim() < 2 or not value.is_floating_point() or value.shape[0] < cfg.min_rows or not kind_of(s.module):
            continue
        h = linear_h.get(id(value)) if cfg.gptq and not is_conv1d(s.module) else None
        out.append(Target(s.name, s.module, s.attr, h, cal.fisher.get(s.name)))
        seen[s.identity] = out[-1]
    return out


def row_steps(weight: torch.Tensor, rel: float, fisher: torch.Tensor | None = None,
              max_step: float = 3.0, floor: torch.Tensor | None = None) -> torch.Tensor:
    """The grid step of each row (dim 0): float32 values exact in float16 (the file's scales).

    Args:
        weight: the tensor.
        rel: the step, in units of the tensor's rms, of a row of average Fisher information.
        fisher: the Fisher information of each row (rows,), or None: steps follow the rows' rms.
        max_step: cap on the step of a row the Fisher estimate never saw, in its own rms.
        floor: each row's least step (clipped_steps, under a level limit); None: the row's
            largest weight within ±MAX_LEVEL steps.

    Examples:
        >>> row_steps(torch.randn(4, 8), 0.5).shape
        torch.Size([4])
    """
    w = weight.detach().float().reshape(weight.shape[0], -1)
    rms_rows = w.pow(2).mean(1).sqrt()
    rms = float(w.pow(2).mean().sqrt()) or 1.0
    info = None if fisher is None else fisher.detach().double().reshape(-1)
    if info is not None and bool((info > 0).any()):
        unseen = info <= 0
        info = torch.where(unseen, info[~unseen].min(), info)
        steps = (rel * rms * (info.mean() / info).sqrt()).float()
        # A row no calibration sample reached is only guessed at: its step stays within max_step
        # of its own rms, so it keeps its coarse shape rather than rounding to zero.
        steps = torch.where(unseen, torch.minimum(steps, max_step * rms_rows), steps)
    else:
        steps = rel * rms_rows
    steps = torch.maximum(steps, w.abs().amax(1) / MAX_LEVEL if floor is None else floor)
    steps = torch.where(steps > 0, steps, torch.ones_like(steps))  # an all-zero row: any step holds it
    # float16's smallest positive value at least; float16 rounding may put a step a hair under
    # the floor, which moves the largest weight by far less than half a step past the top level
    return steps.half().clamp_min(2.0**-24).float()


def clipped_steps(w: torch.Tensor, max_level: int, shrink: tuple[float, ...] = tuple(1 - 0.05 * i for i in range(11))
                  ) -> torch.Tensor:
    """The finest step of each row of w (rows, …) that a grid of ±max_level levels allows: its
    largest weight over the top level, shrunk by whichever factor rounds the row with the least
    error (Σ|error|^2.4, GPTQ's choice), since clipping a few far-out weights can cost less than
    coarsening every other one.

    Examples:
        >>> clipped_steps(torch.tensor([[0.1, -0.2, 3.0]]), 7) <= 3.0 / 7
        tensor([True])
    """
    w = w.reshape(w.shape[0], -1)
    top = w.abs().amax(1) / max_level
    best, best_err = top, torch.full_like(top, float("inf"))
    for f in shrink:
        step = (top * f).clamp_min(1e-30)[:, None]
        err = ((w / step).round().clamp(-max_level, max_level) * step - w).abs().pow(2.4).sum(1)
        better = err < best_err
        best, best_err = torch.where(better, top * f, best), torch.where(better, err, best_err)
    return best


def target_steps(target: Target, rel: float, cfg: PostTraining = PostTraining(),
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    """`row_steps` of a target (of `weight`, its original, when given) as `cfg.rows` shapes them.

    Examples:
        >>> target_steps(t, 0.5).shape
        torch.Size([384])
    """
    fisher = target.fisher if cfg.rows == "fisher" else None
    w = target.weight if weight is None else weight
    floor = None
    if cfg.code_bits is not None:
        if cfg.max_level not in target.floors:
            target.floors[cfg.max_level] = clipped_steps(w.detach().float(), cfg.max_level)
        floor = target.floors[cfg.max_level]
    return row_steps(w, rel, fisher, cfg.max_step, floor)


def levels(target: Target, steps: torch.Tensor, cfg: PostTraining = PostTraining()) -> torch.Tensor:
    """Integer levels (int32, the weight's shape) of `target` on the grid of `steps`.

    Examples:
        >>> q = levels(t, row_steps(t.weight, 0.5, t.fisher)); q.dtype
        torch.int32
    """
    w = target.weight.detach().float().cpu()
    if target.hessian is not None and w.dim() == 2:
        q = gptq_levels(w, target.hessian, steps, damp=cfg.damp, act_order=cfg.act_order, deadzone=cfg.deadzone,
                        limit=cfg.max_level)
    else:
        q = round_levels(w / steps.reshape(-1, *[1] * (w.dim() - 1)), cfg.deadzone).to(torch.int32)
    return q.clamp_(-cfg.max_level, cfg.max_level)


def rounded(q: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """The float weight the levels and steps stand for (what the file decodes to, bit for bit)."""
    return q.float() * steps.reshape(-1, *[1] * (q.dim() - 1))


def share_levels_(target: Target, q: torch.Tensor, steps: torch.Tensor) -> None:
    """Make `target`'s weight shared: codebook = the nonzero levels used, codes, scales = steps.

    Examples:
        >>> share_levels_(t, q, steps); t.module.weight.equal(rounded(q, steps))
        True
    """
    used = torch.unique(q)
    used = used[used != 0]
    assign = torch.zeros(q.shape, dtype=torch.int16)
    nonzero = q != 0
    assign[nonzero] = (torch.searchsorted(used, q[nonzero]) + 1).to(torch.int16)
    sw = share_(target.module, target.attr, used.float(), assign, steps)
    for module, attr in target.ties:  # a tied weight (an LM head and its embedding) stays one tensor
        share_(module, attr, sw)


def entropy_bits(q: torch.Tensor) -> float:
    """The empirical entropy of the levels, in bits for the whole tensor: what an ideal coder of
    one model per tensor spends (the writer's ANS comes within its table of it)."""
    _, counts = np.unique(q.numpy(), return_counts=True)
    p = counts / counts.sum()
    return float(-(counts * np.log2(p)).sum())


def scale_bits(q: torch.Tensor) -> int:
    """The bits a tensor's steps and codebook take in the file (float16 each)."""
    return 16 * (q.shape[0] + int(torch.unique(q).numel()))


def quantize_pretrained_(model: nn.Module, cal: Calibration | None, rel: float | Mapping[str, float],
                         cfg: PostTraining = PostTraining()) -> dict[str, float]:
    """Round every target weight of `model` in place to a per-row grid (shared, with scales),
    and return each one's estimated coded bits.

    Args:
        model: a float model (pretrained); its weights are replaced.
        cal: what `calibrate` measured on it (None: round to nearest, rows by their rms).
        rel: the step in units of each tensor's rms, one for all or by tensor name.
        cfg: how to round.

    Examples:
        >>> cal = calibrate(model, calib_batches)
        >>> bits = quantize_pretrained_(model, cal, rel=0.25)
        >>> dz.save(model, "model.dzip")
    """
    bits = {}
    for t in list(targets(model, cal, cfg)):
        r = rel if isinstance(rel, (int, float)) else rel[t.name]
        if not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise ConfigError(f"the step of {t.name} must be a positive number, not {r!r}.")
        steps = target_steps(t, float(r), cfg)
        q = levels(t, steps, cfg)
        bits[t.name] = entropy_bits(q) + scale_bits(q)
        share_levels_(t, q, steps)
    return bits

