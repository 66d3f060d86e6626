"""Structured pruning: remove whole output units (neurons, filters), then the inputs they fed.

Unstructured pruning alone leaves every neuron alive with a few weights each, so the file pays
for positions spread over the whole matrix. Removing units first concentrates the same number
of weights in fewer rows: the gaps between them shrink, and so do the index bits (LeNet-300's
fc1 at 3 % density: 5.8 → 5.0 bits per kept weight with 100 of its 300 neurons). The columns the
removed units fed then carry nothing; `prune_dead_inputs_` finds them from data, for any
architecture, instead of from a layer graph deepzip would have to know.

Both only add to the masks (masks only shrink), so magnitude pruning afterwards keeps them.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..checks import check_each, is_amount
from ..data import Dataset
from ..data.loader import Batch, inputs
from ..models.hf import is_conv1d
from ..reparam import get_mask, reattach_masks_, set_mask_
from ..selection import Filter, per_layer, select, weights
from .magnitude import PerLayer, amount_of

# Layers whose weight's rows are output units and whose columns read input features/channels.
UNIT_KINDS = ("linear", "conv")
UNITS_RULE = "a fraction in [0, 1] (or a whole count of units; a layer keeps one)"


def unit_scores(module: nn.Module) -> torch.Tensor:
    """L2 norm of each output unit's incoming weights (rows of a Linear, filters of a conv,
    columns of a transposed Conv1D)."""
    w = module.weight.detach().float()
    return w.norm(dim=0) if is_conv1d(module) else w.flatten(1).norm(dim=1)


def prune_units_(model: nn.Module, units: PerLayer, *, filter_fn: Filter | None = None) -> dict[str, int]:
    """Mask the weakest output units of each selected Linear/Conv layer, weights and bias alike.

    A layer keeps at least one unit. Only Linear and Conv layers have units: embeddings' rows are
    tokens, and attention and recurrent weights stack several matrices whose rows are not units.

    Args:
        model: the model, changed in place.
        units: the fraction of each layer's output units to remove (or a count, as an int),
            one value for all layers or a dict by layer name / kind / "default".
        filter_fn: `filter_fn(module, name) -> bool` selects layers.

    Returns how many units each layer lost.

    Examples:
        >>> dz.prune_units_(model, {"fc1": 0.667})
        {'fc1': 200}
    """
    check_each(units, "units", UNITS_RULE, is_amount)
    reattach_masks_(model)
    removed: dict[str, int] = {}
    for w in select(model, units, "the unit pruning setting", filter_fn):
        name, module, setting = w.layer, w.module, per_layer(units, w)
        if w.kind not in UNIT_KINDS or w.param != "weight":
            continue
        transposed = is_conv1d(module)  # its units are the weight's columns
        count = module.weight.shape[1 if transposed else 0]
        drop = min(amount_of(setting, count), count - 1)
        if drop <= 0:
            removed[name] = 0
            continue
        alive = torch.ones(count, dtype=torch.bool, device=module.weight.device)
        alive[torch.argsort(unit_scores(module), stable=True)[:drop]] = False
        shape = (1, count) if transposed else (count,) + (1,) * (module.weight.dim() - 1)
        _and_mask(module, "weight", alive.view(shape).expand_as(module.weight))
        if getattr(module, "bias", None) is not None:
            _and_mask(module, "bias", alive)
        removed[name] = drop
    return removed


@torch.no_grad()
def prune_dead_inputs_(model: nn.Module, data: Dataset | Iterable[Batch], *, batch_size: int = 1000,
                       filter_fn: Filter | None = None, norms: bool = True) -> dict[str, int]:
    """Mask the weights reading an input feature (Linear) or channel (conv) that is exactly zero
    for every sample of `data`: they cannot change any output on it. Returns, per layer, how
    many weights were masked (for a batch norm: how many channels).

    After `prune_units_`, the units it removed output zero through ReLU, so the next layer's
    columns for them go here. An input that only happens to be zero on `data` goes too; its
    weights never received a gradient there either.

    A batch norm after a removed filter still outputs its shift β (and −γμ/σ) on that channel,
    a constant that keeps the next conv's inputs alive. With `norms`, a batch norm whose input
    channel is dead has γ and β masked too, so the channel is zero past it and the next layer's
    weights for it go in a further pass. That drops the constant the channel added downstream:
    unlike the rest, this changes the outputs slightly, which the retraining after it absorbs.
    Batch norms are found in the whole model: `filter_fn` selects compressible layers only.

    Args:
        model: the model, changed in place.
        data: a deepzip Dataset or an iterable of (inputs, labels) batches (a DataLoader).
        batch_size: for a Dataset.
        filter_fn: selects the compressible layers whose inputs are checked.
        norms: mask batch norms whose input channel is dead (see above).

    Examples:
        >>> dz.prune_units_(model, {"fc1": 0.5}); dz.prune_dead_inputs_(model, train_set)
        {'fc1': 0, 'fc2': 15000, 'fc3': 0}
    """
    layers = [(w.layer, w.module) for w in weights(model, filter_fn) if w.kind in UNIT_KINDS and w.param == "weight"]
    bns = [(name, m) for name, m in model.named_modules()
           if norms and isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]
    if not layers:
        return {}
    masked: dict[str, int] = {}
    # Each pass can kill channels at a batch norm, which makes the next layer's inputs dead.
    for _ in range(len(bns) + 1):
        seen = _ever_nonzero(model, layers + bns, data, batch_size)
        killed = 0
        for name, module in bns:
            if name not in seen:  # never called on this data: nothing is known
                continue
            dead = ~seen[name].to(module.weight.device)
            fresh = dead & ((module.weight != 0) | (module.bias != 0))
            if fresh.any():
                _and_mask(module, "weight", ~dead)
                _and_mask(module, "bias", ~dead)
                masked[name] = masked.get(name, 0) + int(fresh.sum())
                killed += int(fresh.sum())
        for name, module in layers:
            if name not in seen:  # never called on this data (an unused branch): nothing is known
                continue
            before = int((module.weight != 0).sum())
            _and_mask(module, "weight", _reading(module, seen[name]))
            masked[name] = masked.get(name, 0) + before - int((module.weight != 0).sum())
        if not killed:
            break
    return masked


def _ever_nonzero(model: nn.Module, watched: list[tuple[str, nn.Module]], data: Dataset | Iterable[Batch],
                  batch_size: int) -> dict[str, torch.Tensor]:
    """Per watched module, which of its input features / channels were nonzero on some sample."""
    seen: dict[str, torch.Tensor] = {}

    def watch(name: str, module: nn.Module):
        def hook(_module, args):
            x = args[0]
            # Reduce every dim but the feature one: the last for a Linear, 1 for conv and batch norm.
            dim = x.dim() - 1 if isinstance(module, nn.Linear) or is_conv1d(module) else 1
            nonzero = (x != 0).transpose(0, dim).flatten(1).any(dim=1).cpu()
            seen[name] = nonzero if name not in seen else seen[name] | nonzero
        return module.register_forward_pre_hook(hook)

    handles = [watch(name, m) for name, m in watched]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x in inputs(data, batch_size):
            model(x.to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return seen


def _reading(module: nn.Module, live: torch.Tensor) -> torch.Tensor:
    """Keep-mask of `module`'s weights that read a live input."""
    w = module.weight
    live = live.to(w.device)
    if isinstance(module, nn.Linear):
        return live.view(1, -1).expand_as(w)
    if is_conv1d(module):  # weight in × out: an input is a row
        return live.view(-1, 1).expand_as(w)
    # weight (out, in/groups, k…): output channel o of group g reads inputs g·in_g … (g+1)·in_g − 1
    out_g, in_g = w.shape[0] // module.groups, w.shape[1]
    live = live.view(module.groups, 1, in_g).expand(module.groups, out_g, in_g).reshape(w.shape[0], in_g)
    return live.view(live.shape + (1,) * (w.dim() - 2)).expand_as(w)


def _and_mask(module: nn.Module, name: str, keep: torch.Tensor) -> None:
    old = get_mask(module, name)
    keep = keep.to(torch.bool)
    set_mask_(module, name, keep.clone() if old is None else keep & old)
