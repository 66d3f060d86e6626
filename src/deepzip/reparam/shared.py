"""Shared weights: a parameter computed from a small trainable codebook and fixed per-weight codes.

A shared parameter is a `torch.nn.utils.parametrize` parametrization, `SharedWeight`:
  centroids  Parameter, float32, shape (K,), K ≤ 2^bits − 1: the shared non-zero values
  assign     buffer, uint8 (K < 256) or int16, the parameter's shape: 0 = pruned (exactly 0),
             k ≥ 1 = centroid k − 1
  scales     buffer or None, float32, shape (rows,): a step per output row (dim 0) that the
             row's values are multiplied by (format version 5). Pretrained weights have rows
             whose scales differ by 100×; one codebook of normalised values times a scale per
             row fits them at 16 bits a row, where a codebook per row would cost 16 bits a value.
and `module.<name>` is `[0, c_1, …, c_K][assign]` (× scales per row), recomputed on every access. Because it is
computed on access rather than by a forward hook, code that reads the weight without calling the
module's forward (nn.MultiheadAttention reading `out_proj.weight`, `torch.func.functional_call`)
sees the current codebook, and every optimizer step backpropagates through a fresh graph.

Code 0 is reserved for zero so that pruning, weight sharing and the file's filler entries all use
one representation, and a layer never has more than 2^bits distinct values, zero included.
Autograd gives exactly the paper's centroid gradient: the sum of the gradients of the weights
assigned to each centroid. Assignments never change, and zeros cannot move.

The parametrization's `original` tensor, which torch keeps beside it, is emptied: the dense
float32 weight is not needed any more, and on a 138 M-weight model it would be half a gigabyte.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError
from .masks import remove_mask_


class _Lookup(torch.autograd.Function):
    """table[codes], whose gradient sums each code's weight gradients with torch.bincount.

    Plain indexing would do, but its backward (an accumulating index_put_) adds in an order that
    depends on the thread count and changes from run to run with two or more threads, so a
    resumed run could not end with the same bytes. bincount adds serially, in element order: the
    same sums as indexing on one thread, bit for bit, and 4× faster on two (16 M weights).
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(codes)
        ctx.size = table.numel()
        return table[codes.int()]  # int32 indices: half the temporary of int64, the same values

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (codes,) = ctx.saved_tensors
        sums = torch.bincount(codes.reshape(-1), weights=grad.reshape(-1), minlength=ctx.size)
        return sums.to(grad.dtype), None


def lookup(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """table[codes], differentiable in `table`, with a gradient that is the same bit for bit
    whatever the thread count (see _Lookup).

    Examples:
        >>> lookup(torch.tensor([0.0, -0.1, 0.2], requires_grad=True), codes)
    """
    return _Lookup.apply(table, codes)


class SharedWeight(nn.Module):
    """The parametrization `weight = [0, centroids…][assign]`.

    Args:
        centroids: float32 (K,) codebook, K < 2^15; a Parameter is used as given (tying).
        assign: integer codes of the weight's shape, 0 = zero, k = centroid k − 1.
        scales: optional float32 (rows,): each output row's values are multiplied by its scale.

    Examples:
        >>> sw = SharedWeight(torch.tensor([-0.5, 0.5]), torch.tensor([[0, 1], [2, 1]], dtype=torch.uint8))
        >>> sw(None)
        tensor([[ 0.0000, -0.5000], [ 0.5000, -0.5000]], grad_fn=...)
    """

    def __init__(self, centroids: torch.Tensor, assign: torch.Tensor, scales: torch.Tensor | None = None) -> None:
        super().__init__()
        if not isinstance(centroids, nn.Parameter):
            centroids = nn.Parameter(centroids.to(torch.float32))
        self.centroids = centroids
        dtype = torch.uint8 if centroids.numel() < 256 else torch.int16
        self.register_buffer("assign", assign.to(device=centroids.device, dtype=dtype))
        if scales is not None and (assign.dim() < 1 or tuple(scales.shape) != tuple(assign.shape[:1])):
            raise ConfigError(f"scales of shape {tuple(scales.shape)} do not fit codes of shape {tuple(assign.shape)}: "
                              f"one scale per row (dim 0).")
        self.register_buffer("scales", None if scales is None else scales.to(centroids.device, torch.float32))

    def forward(self, _original: torch.Tensor | None) -> torch.Tensor:
        table = torch.cat([self.centroids.new_zeros(1), self.centroids])
        weight = _Lookup.apply(table, self.assign)
        if self.scales is None:
            return weight
        return weight * self.scales.reshape(-1, *[1] * (weight.dim() - 1))

    def extra_repr(self) -> str:
        rows = "" if self.scales is None else ", scaled rows"
        return f"codebook={self.centroids.numel()}, shape={tuple(self.assign.shape)}{rows}"


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before its parametrizations change.

    torch injects a class per parametrized module and changes that class's properties when a
    parametrization is added or removed; a deep copy shares the class with its original, so
    without this, stripping the copy would strip the original's properties too."""
    if parametrize.is_parametrized(module):
        cls = type(module)
        module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))


def shared_names(module: nn.Module) -> list[str]:
    """Names of `module`'s parameters that are shared."""
    if not parametrize.is_parametrized(module):
        return []
    return [name for name, plist in module.parametrizations.items()
            if any(isinstance(p, SharedWeight) for p in plist)]


def is_shared(module: nn.Module, name: str = "weight") -> bool:
    """Whether `module.<name>` is a shared weight."""
    return name in shared_names(module)


def sharing(module: nn.Module, name: str = "weight") -> SharedWeight | None:
    """The SharedWeight behind `module.<name>` (its centroids and assign), or None.

    Examples:
        >>> sharing(model.fc1).centroids.numel()   # codebook size
    """
    if not is_shared(module, name):
        return None
    return next(p for p in module.parametrizations[name] if isinstance(p, SharedWeight))


def shared_weight(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """The dense weight a shared layer computes, or None if `name` is not shared."""
    return getattr(module, name) if is_shared(module, name) else None


def share_(module: nn.Module, name: str, centroids: torch.Tensor | SharedWeight,
           assign: torch.Tensor | None = None, scales: torch.Tensor | None = None) -> SharedWeight:
    """Make `module.<name>` shared with the codebook (K,) and codes (0 = zero, k = centroid k−1).

    Args:
        module: owner of the parameter.
        name: the parameter's name.
        centroids: the codebook, or a SharedWeight of another module to tie this one to it.
        assign: the codes, the parameter's shape (not given when tying).
        scales: optional per-row scales (dim 0) the looked-up values are multiplied by.

    Returns the SharedWeight now behind the parameter.

    Examples:
        >>> share_(layer, "weight", torch.tensor([-0.1, 0.1]), (layer.weight > 0).to(torch.uint8) + 1)
    """
    if is_shared(module, name):
        raise ConfigError(f"{name} of this {type(module).__name__} is already shared; strip it first.")
    original = getattr(module, name)
    sw = centroids if isinstance(centroids, SharedWeight) else SharedWeight(
        centroids.to(original.device) if not isinstance(centroids, nn.Parameter) else centroids, assign,
        scales)
    if sw.assign.shape != original.shape:
        raise ConfigError(f"codes of shape {tuple(sw.assign.shape)} do not fit {name} of shape "
                          f"{tuple(original.shape)}.")
    remove_mask_(module, name)
    _own_class(module)
    parametrize.register_parametrization(module, name, sw, unsafe=True)
    module.parametrizations[name].original = nn.Parameter(original.new_empty(0), requires_grad=False)
    return sw


def unshare_(module: nn.Module, name: str = "weight") -> None:
    """Turn a shared weight back into a plain Parameter holding the same values.

    Examples:
        >>> unshare_(model.fc1, "weight")
    """
    if not is_shared(module, name):
        return
    value = getattr(module, name).detach().clone()
    _own_class(module)
    parametrize.remove_parametrizations(module, name, leave_parametrized=False)
    module._parameters[name] = nn.Parameter(value)
