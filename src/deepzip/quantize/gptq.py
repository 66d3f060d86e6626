"""Error-compensated rounding of a weight matrix to a grid of a step per row (GPTQ / OBQ).

Rounding each weight alone (round-to-nearest) ignores that a linear layer's output error for a
weight error E is tr(E H Eᵀ) with H = Σ xᵀx of its inputs (quantize/calibrate.py): errors in
columns that meet correlated inputs can cancel each other. GPTQ (Frantar et al., 2023, after
OBQ) rounds one column at a time and moves each column's rounding error onto the columns not
yet rounded, along the inverse Hessian, so that the output error stays near the least possible.
Here the grid is a uniform one of a step per row (the file's `scales`, format version 5): the
integer levels it returns are entropy coded, so no fixed number of levels is imposed and a few
far-out weights cost only their own bits (what "dense-and-sparse" storage buys fixed-width
codes, the entropy coder gives for free).

Columns are visited in order of decreasing diag H ("act order"), in blocks of 128 whose updates
to the later columns are applied as one matrix product.
"""
from __future__ import annotations

import torch


def _inverse_factor(h: torch.Tensor, damp: float) -> torch.Tensor:
    """The upper Cholesky factor of H⁻¹, H damped by `damp` × its mean diagonal (a layer whose H
    is singular, as from too few samples, still has one)."""
    h = h.clone()
    h.diagonal().add_(damp * float(h.diagonal().mean().clamp_min(1e-12)))
    for extra in (0.0, 1e-4, 1e-2, 1.0):  # more damping where float64 still finds H indefinite
        try:
            if extra:
                h.diagonal().add_(extra * float(h.diagonal().mean()))
            inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
            return torch.linalg.cholesky(inverse, upper=True)
        except RuntimeError:  # torch.linalg.LinAlgError: not positive definite
            continue
    return torch.diag(h.diagonal().rsqrt())  # no factor at all: plain rounding, scaled


def round_levels(x: torch.Tensor, deadzone: float = 0.0) -> torch.Tensor:
    """Nearest integers, with ties and values within `deadzone` of a half-step pulled toward zero:
    zero is the cheapest level to code, so a little more error there buys fewer bits (video
    coders' dead-zone quantizer). deadzone 0 is plain rounding (ties to even).

    Examples:
        >>> round_levels(torch.tensor([0.6, -1.55, 2.4]), deadzone=0.15)
        tensor([ 0., -1.,  2.])
    """
    if not deadzone:
        return torch.round(x)
    return torch.sign(x) * torch.floor(x.abs() + (0.5 - deadzone))


def gptq_levels(weight: torch.Tensor, hessian: torch.Tensor, steps: torch.Tensor, *, damp: float = 0.01,
                block: int = 128, act_order: bool = True, deadzone: float = 0.0, limit: int | None = None
                ) -> torch.Tensor:
    """Integer levels q (int32, the weight's shape) such that q × steps[row] is the weight rounded
    with GPTQ's error compensation.

    Args:
        weight: (rows, columns) float weight, columns = the layer's inputs.
        hessian: (columns, columns) H = Σ xᵀx of the layer's inputs (float64).
        steps: (rows,) the grid step of each row, > 0.
        damp: added to H's diagonal, as a fraction of its mean, before inverting.
        block: columns whose updates are batched.
        act_order: round columns in order of decreasing diag H.
        deadzone: rounding leans toward zero by this fraction of a step (round_levels).
        limit: levels stay within ±limit (None: unbounded); a clipped weight's error is
            compensated like a rounded one's.

    Examples:
        >>> q = gptq_levels(layer.weight, cal.hessians["fc1"], steps)
        >>> (q * steps[:, None]).sub(layer.weight).abs().max() <= steps.max() * 4
        tensor(True)
    """
    w = weight.detach().double().clone()
    h = hessian.detach().to(w.device, torch.float64, copy=True)  # the caller's H (maybe shared) stays as it was
    dead = h.diagonal() == 0  # inputs that never moved: any value of theirs costs nothing
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.argsort(h.diagonal(), descending=True) if act_order else torch.arange(w.shape[1])
    w, h = w[:, order], h[order][:, order]
    factor = _inverse_factor(h, damp)
    step = steps.detach().double().to(w.device).reshape(-1)
    levels = torch.empty(w.shape, dtype=torch.int32)
    for start in range(0, w.shape[1], block):
        stop = min(start + block, w.shape[1])
        part, errors = w[:, start:stop].clone(), torch.empty(w.shape[0], stop - start, dtype=w.dtype)
        inner = factor[start:stop, start:stop]
        for i in range(stop - start):
            q = round_levels(part[:, i] / step, deadzone)
            if limit is not None:
                q = q.clamp(-limit, limit)
            levels[:, start + i] = q.to(torch.int32)
            err = (part[:, i] - q * step) / inner[i, i]
            part[:, i:] -= err[:, None] * inner[i, i:][None, :]
            errors[:, i] = err
        w[:, stop:] -= errors @ factor[start:stop, stop:]
    out = torch.empty_like(levels)
    out[:, order] = levels
    return out
