"""Masks that keep pruned weights exactly zero, whatever training loop and optimizer run.

A mask is a bool buffer `<param>_mask` (see `mask_name`) next to the parameter, which stays a
plain `nn.Parameter`, so user code that holds `layer.weight` or built an optimizer before pruning
keeps working. Two hooks enforce it:
- a gradient hook zeroes the masked entries of every gradient, so nothing flows into them;
- a global optimizer step-post hook re-applies the mask after every `optimizer.step()`, because
  momentum buffers filled before pruning (SGD, Adam's first moment) would otherwise revive them.
  It is registered by the first mask ever set, not at import: a program that never prunes pays
  nothing on its optimizer steps.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..errors import ConfigError

# Modules that carry at least one mask. Weak, so pruning never keeps a model alive.
_MASKED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_STEP_HOOK = None


def mask_name(name: str) -> str:
    """The buffer that holds the mask of parameter `name`: the one place this name is spelled."""
    return f"{name}_mask"


def masked_names(module: nn.Module) -> list[str]:
    """Names of `module`'s own parameters that carry a mask."""
    return list(getattr(module, "_dz_masked", ()))


def get_mask(module: nn.Module, name: str) -> torch.Tensor | None:
    """The bool keep-mask of `module.<name>`, or None when it has none.

    Examples:
        >>> get_mask(model.fc1, "weight").float().mean()   # density of fc1
    """
    return getattr(module, mask_name(name), None) if name in masked_names(module) else None


def set_mask_(module: nn.Module, name: str, mask: torch.Tensor) -> None:
    """Attach (or replace) the mask of `module.<name>` and zero the masked entries now.

    Args:
        module: the module that owns the parameter.
        name: the parameter's attribute name ("weight", "bias", "in_proj_weight", …).
        mask: bool (or 0/1) tensor of the parameter's shape; True keeps a weight.

    Examples:
        >>> set_mask_(model.fc1, "weight", model.fc1.weight.abs() > 0.01)
    """
    _register_step_hook()
    param = getattr(module, name)
    if mask.shape != param.shape:
        raise ConfigError(f"a mask of shape {tuple(mask.shape)} does not fit {name} of shape {tuple(param.shape)}.")
    mask = mask.to(device=param.device, dtype=torch.bool)
    if name in masked_names(module):
        getattr(module, mask_name(name)).copy_(mask)
    else:
        module.register_buffer(mask_name(name), mask)
        ref = weakref.ref(module)

        def zero_masked_grad(grad: torch.Tensor) -> torch.Tensor:
            owner = ref()
            # masked_fill, not a product: an inf or nan gradient must still leave exact zeros.
            return grad if owner is None else grad.masked_fill(~getattr(owner, mask_name(name)), 0)

        handle = param.register_hook(zero_masked_grad)
        module._dz_masked = {**getattr(module, "_dz_masked", {}), name: handle}
        _MASKED.add(module)
    _zero_masked(param, getattr(module, mask_name(name)))


def _zero_masked(param: torch.Tensor, mask: torch.Tensor) -> None:
    with torch.no_grad():
        param.masked_fill_(~mask, 0)


def remove_mask_(module: nn.Module, name: str) -> None:
    """Drop the mask and its hooks; the zeros stay in the weight (like torch's `prune.remove`).

    Examples:
        >>> remove_mask_(model.fc1, "weight")
    """
    handles = getattr(module, "_dz_masked", {})
    if name not in handles:
        return
    handles.pop(name).remove()
    del module._buffers[mask_name(name)]
    if not handles:
        del module._dz_masked
        _MASKED.discard(module)


def reattach_masks_(model: nn.Module) -> None:
    """Re-arm masks that lost their hooks: `copy.deepcopy` copies the mask buffers but not the
    gradient hook, and the copy is not in the registry the optimizer hook reads. deepzip's train
    and prune_ call this, so a copied model trains as safely as the original."""
    for module in model.modules():
        names = masked_names(module)
        if not names or module in _MASKED:
            continue
        masks = {n: module._buffers.pop(mask_name(n)) for n in names}
        del module._dz_masked
        for n, mask in masks.items():
            set_mask_(module, n, mask)


def apply_masks_(model: nn.Module | None = None) -> None:
    """Re-zero every masked entry (of `model`, or of every masked module alive).

    Examples:
        >>> apply_masks_(model)   # after writing into masked weights by hand
    """
    modules = _MASKED if model is None else [m for m in model.modules() if m in _MASKED]
    for module in list(modules):
        for name in masked_names(module):
            _zero_masked(getattr(module, name), getattr(module, mask_name(name)))


def _remask_after_step(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    if not _MASKED:
        return
    stepped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for module in list(_MASKED):
        for name in masked_names(module):
            param = getattr(module, name)
            if id(param) in stepped:
                _zero_masked(param, getattr(module, mask_name(name)))


def _register_step_hook() -> None:
    global _STEP_HOOK
    if _STEP_HOOK is None:
        _STEP_HOOK = register_optimizer_step_post_hook(_remask_after_step)
