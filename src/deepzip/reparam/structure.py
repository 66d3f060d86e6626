"""A model's tensors as deepzip sees them, and the record of its structure a checkpoint keeps.

Masks and shared weights hide bookkeeping tensors (a mask buffer; torch's parametrization
container with its emptied `original`, the codebook and the codes). `slots` walks a model and
names each *logical* tensor once per name it is reachable by: "fc1.weight" is one slot whether it
is plain, masked or shared. The writer, the loader and the checkpoint all walk models this way,
so none of them spells the bookkeeping names.

`capture` turns a model's state into a JSON record plus flat tensors (what safetensors stores);
`restore_` rebuilds masks, codebooks and ties on a fresh instance of the same architecture and
fills it. Ties are recorded, not stored twice (safetensors refuses tensors that share memory).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import ConfigError, ModelMismatchError
from ..models.widths import apply_widths_, widths_of
from .masks import get_mask, masked_names, remove_mask_, set_mask_
from .shared import SharedWeight, share_, shared_names, sharing, unshare_

RECORD_VERSION = 1


@dataclass
class Slot:
    """One logical tensor of a model.

    name: qualified name ("features.0.weight"); module, attr: where it lives; role: "param" or
    "buffer"; shared: the SharedWeight behind it, if any; mask: its keep-mask, if any.
    """

    name: str
    module: nn.Module
    attr: str
    role: Literal["param", "buffer"]
    shared: SharedWeight | None = None
    mask: torch.Tensor | None = None

    @property
    def value(self) -> torch.Tensor:
        """The tensor the model computes with (for a shared weight, table[codes])."""
        return getattr(self.module, self.attr)

    @property
    def identity(self) -> int:
        """Equal for two slots that are the same tensor reached by two names (a tie)."""
        return id(self.shared) if self.shared is not None else id(self.value)


def _modules(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """named_modules(remove_duplicate=False), without descending into parametrization containers."""
    yield prefix, module
    hidden = "parametrizations" if parametrize.is_parametrized(module) else None
    for name, child in module._modules.items():
        if child is not None and name != hidden:
            yield from _modules(child, f"{prefix}.{name}" if prefix else name)


def slots(model: nn.Module) -> Iterator[Slot]:
    """Every logical parameter and persistent buffer of `model`, tied ones under each name.

    Examples:
        >>> {s.name: s.shared is not None for s in slots(model)}
        {'fc1.weight': True, 'fc1.bias': False, ...}
    """
    for prefix, module in _modules(model):
        dot = f"{prefix}." if prefix else ""
        if parametrize.is_parametrized(module):
            foreign = [n for n in module.parametrizations if n not in shared_names(module)]
            if foreign:
                raise ConfigError(f"{dot}{foreign[0]} carries a parametrization deepzip does not know "
                                  f"({type(module.parametrizations[foreign[0]][0]).__name__}); make it plain first "
                                  f"(torch.nn.utils.parametrize.remove_parametrizations(…, leave_parametrized=True)).")
        for name in shared_names(module):
            yield Slot(dot + name, module, name, "param", shared=sharing(module, name))
        for name, p in module._parameters.items():
            if p is not None:
                yield Slot(dot + name, module, name, "param", mask=get_mask(module, name))
        hidden = {f"{n}_mask" for n in masked_names(module)}
        for name, b in module._buffers.items():
            if b is not None and name not in module._non_persistent_buffers_set and name not in hidden:
                yield Slot(dot + name, module, name, "buffer")


def strip_(model: nn.Module) -> None:
    """Remove all deepzip structure (masks, sharing), keeping the weights' current values.

    Examples:
        >>> strip_(model); torch.save(model.state_dict(), "plain.pt")
    """
    plain: dict[int, nn.Parameter] = {}  # a codebook tied between modules becomes one Parameter again
    for _, module in list(_modules(model)):
        for name in shared_names(module):
            sw = sharing(module, name)
            unshare_(module, name)
            if id(sw) in plain:
                module._parameters[name] = plain[id(sw)]
            else:
                plain[id(sw)] = module._parameters[name]
        for name in masked_names(module):
            remove_mask_(module, name)


def capture(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(record, tensors): the model's state, masks, codebooks and codes, and which names are ties.

    Tensors are detached CPU copies keyed "<name>", "<name>_mask", "<name>_centroids",
    "<name>_assign" (and "<name>_scales" for scaled rows); the record lists masked and shared names and maps each tied name to the
    first name of its tensor.

    Examples:
        >>> record, tensors = capture(model); restore_(fresh_model, record, tensors)
    """
    record: dict[str, Any] = {"version": RECORD_VERSION, "masked": [], "shared": [], "tied": {},
                              "widths": widths_of(model)}
    tensors: dict[str, torch.Tensor] = {}
    first: dict[int, str] = {}
    for s in slots(model):
        if s.identity in first:
            record["tied"][s.name] = first[s.identity]
            if s.mask is not None and s.shared is None:  # a tied weight masked under both names: both hold
                key = f"{first[s.identity]}_mask"
                tensors[key] = tensors[key] & _cpu(s.mask) if key in tensors else _cpu(s.mask)
                if first[s.identity] not in record["masked"]:
                    record["masked"].append(first[s.identity])
            continue
        first[s.identity] = s.name
        if s.shared is not None:
            record["shared"].append(s.name)
            tensors[f"{s.name}_centroids"] = _cpu(s.shared.centroids)
            tensors[f"{s.name}_assign"] = _cpu(s.shared.assign)
            if s.shared.scales is not None:
                tensors[f"{s.name}_scales"] = _cpu(s.shared.scales)
            continue
        tensors[s.name] = _cpu(s.value)
        if s.mask is not None:
            record["masked"].append(s.name)
            tensors[f"{s.name}_mask"] = _cpu(s.mask)
    return record, tensors


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", copy=True).contiguous()


def restore_(model: nn.Module, record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Give `model` (same architecture, any state) the structure and values `capture` recorded.

    Raises ModelMismatchError when a name or shape does not fit, before anything is changed
    (for a channel-pruned record, after the layers have been narrowed to its widths).
    """
    if not record.get("widths"):
        _check_fit({s.name: s for s in slots(model)}, record, tensors)  # logical names and shapes: as after strip_
    strip_(model)
    if record.get("widths"):  # a channel-pruned model: narrow the fresh one first
        try:
            apply_widths_(model, record["widths"], "the checkpoint's width record")
        except ConfigError as e:
            raise ModelMismatchError(f"the checkpoint does not fit this model: {e}") from None
        model.deepzip_widths = record["widths"]
    by_name = {s.name: s for s in slots(model)}
    _check_fit(by_name, record, tensors)
    tied, shared, masked = record.get("tied", {}), set(record.get("shared", [])), set(record.get("masked", []))
    with torch.no_grad():
        for name, s in by_name.items():
            if name in tied or name in shared:
                continue
            s.value.copy_(tensors[name])
            if name in masked:
                set_mask_(s.module, s.attr, tensors[f"{name}_mask"])
        for name, s in by_name.items():  # plain ties: the same Parameter under both names again
            first = by_name.get(tied.get(name, ""))
            if first is not None and tied[name] not in shared and s.role == "param":
                s.module._parameters[s.attr] = first.module._parameters[first.attr]
                if tied[name] in masked:
                    set_mask_(s.module, s.attr, tensors[f"{tied[name]}_mask"])
    made: dict[str, SharedWeight] = {}
    for name, s in by_name.items():  # in model order, so a tie's first name comes first
        if name in shared:
            made[name] = share_(s.module, s.attr, tensors[f"{name}_centroids"].clone(),
                                tensors[f"{name}_assign"].clone(), tensors.get(f"{name}_scales"))
        elif tied.get(name) in made:
            share_(s.module, s.attr, made[tied[name]])


def _check_fit(by_name: dict[str, Slot], record: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Refuse, in one sentence, a record whose names or shapes the model's slots do not match."""
    tied, shared, masked = record.get("tied", {}), set(record.get("shared", [])), set(record.get("masked", []))
    missing = sorted(n for n in by_name if n not in tied and n not in shared and n not in tensors)
    expected = {key for n in by_name for key in (n, f"{n}_mask", f"{n}_centroids", f"{n}_assign", f"{n}_scales")}
    unknown = sorted({n for n in [*shared, *masked, *tied] if n not in by_name} | set(tensors) - expected)
    if missing or unknown:
        raise ModelMismatchError(f"the checkpoint does not fit this model: "
                                 f"{'missing ' + ', '.join(missing[:5]) if missing else ''}"
                                 f"{'; ' if missing and unknown else ''}"
                                 f"{'unknown ' + ', '.join(unknown[:5]) if unknown else ''}.")
    differ = []
    for name, s in by_name.items():
        key = f"{name}_assign" if name in shared else name
        if name in tied:
            continue
        shape = tuple((s.shared.assign if s.shared is not None else s.value).shape)  # no table lookup for a shape
        if key not in tensors or tuple(tensors[key].shape) != shape:
            got = tuple(tensors[key].shape) if key in tensors else "nothing"
            differ.append(f"{name} is {got} in the checkpoint but {shape} in the model")
    if differ:
        raise ModelMismatchError(f"the checkpoint does not fit this model: {'; '.join(differ[:5])}"
                                 f"{f' (and {len(differ) - 5} more)' if len(differ) > 5 else ''}.")
