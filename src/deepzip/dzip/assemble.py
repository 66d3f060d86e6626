"""deepzip.load: a .dzip back into an nn.Module, trusting nothing the file says.

decode.py turns each entry into its content (raw elements, or positions, codes and codebook);
this module decides what each becomes: a dense weight copied into the model, or, with
runtime="sparse", a sparse layer built from the non-zeros without a dense weight ever existing.
Tensors are decoded one at a time and copied into the model, so peak memory is the model plus a
small multiple of its largest layer. Architectures are rebuilt from the model registry by name;
nothing in a file is ever executed.
"""
from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from .. import models
from .. import runtime as rt
from ..checks import is_uint, resolve_device
from ..errors import ConfigError, DzipFormatError, ModelMismatchError
from ..models.hf import build_hf
from ..models.sources import rebuild_python
from ..models.widths import apply_widths_
from ..reparam import slots, strip_
from .container import DzipReader
from .decode import Decoded, TensorDecoder
from .spec import MAX_DIM, MAX_DIMS, MAX_ELEMENTS_PER_BYTE, STREAM_KEYS


def targets(model: nn.Module) -> dict[str, tuple[nn.Module, str, str]]:
    """(owner module, attribute, "param" | "buffer") of every parameter and persistent buffer of a
    plain (stripped) model by name; tied parameters appear under each of their names."""
    return {s.name: (s.module, s.attr, s.role) for s in slots(model)}


def build_model(header: dict, path_name: str, file_bytes: int | None = None) -> nn.Module:
    """The architecture the file records: a registry model built on the meta device (no memory
    for weights, and no random init, until the file's values arrive); a Hugging Face one from its
    config; a user's own class only where models/sources.py allows it to be imported."""
    arch = header.get("arch")
    if arch is None:
        raise ConfigError(f"{path_name} records no architecture (it was saved from a custom module); pass the "
                          f"module to fill: deepzip.load(path, model=MyNet()), or --model-py module:Class on the "
                          f"command line (deepzip decompress needs neither).")
    budget = None if file_bytes is None else MAX_ELEMENTS_PER_BYTE * file_bytes + 65536
    if isinstance(arch, dict) and "python" in arch:
        return _user_class(arch, path_name, budget)
    if isinstance(arch, dict) and "hf" in arch:
        tensors = header.get("tensors")
        return build_hf(arch["hf"] if isinstance(arch["hf"], dict) else {}, path_name, budget,
                        len(tensors) if isinstance(tensors, list) else 0)
    kwargs = arch.get("kwargs", {}) if isinstance(arch, dict) else None
    if not (isinstance(arch.get("name") if kwargs is not None else None, str) and isinstance(kwargs, dict)
            and all(_plain_argument(v) for v in kwargs.values())):
        raise DzipFormatError(f"{path_name} is corrupt: its architecture record is malformed or out of range.")
    try:
        with torch.device("meta"):
            return models.create(arch["name"], **kwargs)
    except (ConfigError, ValueError, TypeError, RuntimeError, OverflowError, ZeroDivisionError) as e:
        reason = str(e).rstrip(".")
        raise DzipFormatError(f"{path_name} records an architecture that cannot be built here: {reason}.") from None


def _user_class(arch: dict, path_name: str, budget: int | None) -> nn.Module:
    """A user's own class (a trusted file, models/sources.py) with the file's recorded arguments:
    built on the meta device first and its parameters counted, so that arguments asking for more
    than the file can hold are refused before any memory is allocated for them."""
    try:
        with torch.device("meta"):
            probe = rebuild_python(arch, path_name)
    except ConfigError as e:
        if "building it raised" not in str(e):
            raise  # not trusted, changed, malformed: the same sentence as without the probe
        probe = None  # a class that computes on its tensors as it builds: counted after, as built
    if probe is not None and budget is not None:
        count = sum(t.numel() for t in [*probe.parameters(), *probe.buffers()])
        if count > budget:
            raise ModelMismatchError(f"{path_name} records {arch.get('python')} with {arch.get('kwargs')}: "
                                     f"{count:,} parameters, more than the file can hold.")
    return rebuild_python(arch, path_name)


def _plain_argument(value: Any) -> bool:
    """Architecture arguments a file may carry: small numbers, strings, booleans. A hostile file
    must not make the reader build a network of a billion layers before anything else is checked."""
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return 0 <= value <= 4096
    return isinstance(value, float) and math.isfinite(value) and 0 <= value <= 64


def _check_names(entries: list, have: dict, path_name: str) -> None:
    names = [e.get("name") for e in entries if isinstance(e, dict)]
    missing = sorted(set(have) - set(names))
    extra = sorted(n for n in names if n not in have)
    if missing or extra:
        parts = []
        if extra:
            parts.append(f"the file has {', '.join(map(repr, extra[:5]))}{' …' if len(extra) > 5 else ''} "
                         f"which the model lacks")
        if missing:
            parts.append(f"the model has {', '.join(map(repr, missing[:5]))}{' …' if len(missing) > 5 else ''} "
                         f"which the file lacks")
        raise ModelMismatchError(f"{path_name} does not fit this model: {'; '.join(parts)}.")


def _check_entries(entries: list, count: int, path_name: str, also: list[int] = ()) -> None:
    """Shape of the tensor table, checked once so later lookups can trust the types: each entry is
    an object with a string name and either a string alias or string encoding and dtype. And each
    stream belongs to exactly one tensor field: a header that points two tensors at one stream,
    or leaves a stream unused, was not written by deepzip and is refused (`also`: the streams
    the carried files use)."""
    for i, e in enumerate(entries):
        keys = ("name", "alias") if isinstance(e, dict) and "alias" in e else ("name", "encoding", "dtype")
        if not (isinstance(e, dict) and all(isinstance(e.get(k), str) for k in keys)):
            raise DzipFormatError(f"{path_name} is corrupt: tensor entry {i} lacks a valid {' or '.join(keys)}.")
        shape = e.get("shape")
        valid = isinstance(shape, list) and len(shape) <= MAX_DIMS and all(is_uint(d, MAX_DIM) for d in shape)
        if "alias" not in e and not valid:
            raise DzipFormatError(f"{path_name} is corrupt: tensor {e['name']!r} has an invalid shape {shape!r}.")
    used = [e[k] for e in entries if "alias" not in e for k in STREAM_KEYS if k in e] + list(also)
    if sorted(map(repr, used)) != sorted(map(repr, range(count))):
        raise DzipFormatError(f"{path_name} is corrupt: its tensors{' and files' if also else ''} do not use each of its "
                              f"{count} streams exactly once.")


def _check_shapes(entries: list, have: dict, path_name: str) -> None:
    for e in entries:
        if "alias" in e or e["name"] not in have:
            continue
        owner, attr, role = have[e["name"]]
        current = owner._parameters[attr] if role == "param" else owner._buffers[attr]
        if not isinstance(e.get("shape"), list) or list(e["shape"]) != list(current.shape):
            raise ModelMismatchError(f"{path_name} does not fit this model: {e['name']!r} is {e.get('shape')!r} "
                                     f"in the file but {list(current.shape)} in the model.")


def _put(owner: nn.Module, attr: str, role: str, value: torch.Tensor, name: str, path_name: str) -> torch.Tensor:
    """Store `value` as owner.attr: in place into a real tensor, or as the tensor itself on a
    meta-built model. Returns the tensor now held, so tied names can share it."""
    current = owner._parameters[attr] if role == "param" else owner._buffers[attr]
    if tuple(current.shape) != tuple(value.shape):
        raise ModelMismatchError(f"{path_name} does not fit this model: {name!r} is {tuple(value.shape)} "
                                 f"in the file but {tuple(current.shape)} in the model.")
    if not current.is_meta:
        with torch.no_grad():
            current.copy_(value)
        return current
    value = value.to(current.dtype)
    if role == "param":
        value = nn.Parameter(value, requires_grad=current.requires_grad)
        owner._parameters[attr] = value
    else:
        owner._buffers[attr] = value
    return value


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def load(path: str | os.PathLike, model: nn.Module | None = None, *, runtime: str = "dense",
         strict: bool = True, device: str | torch.device | None = None) -> nn.Module:
    """Rebuild the model stored in `path`, in eval mode.

    Args:
        path: a .dzip file (validated before anything is built; never unpickled).
        model: None to build the architecture the file records from the model registry, or your
            own module to fill in place (deepzip masks or sharing on it are stripped first).
        runtime: "dense" for exact weights in an ordinary module; "sparse" to run each compressed
            Linear and Conv2d layer the way deepzip.runtime.choose measured to pay (dense, torch
            CSR, or CodebookLinear / CodebookConv2d reading the codes); "csr" or "codebook" to
            force one. No dense weight matrix is built for a layer that is not dense. With
            "codebook" where Triton runs (device "cuda" and triton installed), each layer's codes
            are laid out for the lookup-table kernels (runtime.choose_layout).
        strict: False skips names the file and the model do not share.
        device: where the model goes (None: stays on the CPU).

    Examples:
        >>> model = dz.load("model.dzip")
        >>> fast = dz.load("model.dzip", runtime="sparse"); fast.deepzip_runtime
        {'fc1.weight': 'sparse (density 0.050)', ...}
        >>> mine = dz.load("model.dzip", model=MyNet())
        >>> gpu = dz.load("model.dzip", runtime="codebook", device="cuda")
    """
    if runtime not in rt.RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(rt.RUNTIMES)}, not {runtime!r}.")
    target = resolve_device(device or "cpu")  # a bad or absent device is one sentence, before any work
    if runtime != "dense":
        rt.warn_without_triton(target)
    with DzipReader(path) as reader:
        pname = reader.path.name
        header = reader.header
        entries = header.get("tensors")
        if not isinstance(entries, list):
            raise DzipFormatError(f"{pname} is corrupt: 'tensors' is not a list.")
        model = _prepared(model, header, pname, reader.size)
        carried = reader.file_entries()
        _check_entries(entries, len(reader.streams), pname, [e["stream"] for e in carried])
        have = targets(model)
        if strict:
            _check_names(entries, have, pname)
        _check_shapes(entries, have, pname)  # before anything is written into the caller's model
        packed_ok = runtime == "codebook" and rt.triton_runs(target)
        model, decisions = _fill(model, entries, have, TensorDecoder(reader), (runtime, packed_ok), pname)
        model.deepzip_meta = header.get("meta", {})
        if carried:  # a tokenizer and the like: saved again with the model, written by decompress --hf
            model.deepzip_files = reader.files()
        if runtime != "dense":
            model.deepzip_runtime = decisions  # per layer weight: "codebook (density …)", "dense (why)", …
    leftover = [n for n, (m, a, r) in targets(model).items()
                if (m._parameters[a] if r == "param" else m._buffers[a]).is_meta]
    if leftover:
        raise ModelMismatchError(f"{pname} does not fit this model: nothing in the file for {', '.join(leftover[:5])}.")
    return model.to(target).eval() if device is not None else model.eval()


def _prepared(model: nn.Module | None, header: dict, pname: str, size: int) -> nn.Module:
    """The module to fill: built from the file's record (None given) or the caller's, stripped of
    deepzip's masks and sharing, with the file's channel widths applied (channel surgery)."""
    built = model is None
    if built:
        model = build_model(header, pname, size)
    else:
        strip_(model)
    if "widths" in header:
        try:
            apply_widths_(model, header["widths"], "its width record")
        except ConfigError as e:
            reason = str(e).rstrip(".")
            raise (DzipFormatError(f"{pname} is corrupt: {reason}.") if built else
                   ModelMismatchError(f"{pname} does not fit this model: {reason}.")) from None
        model.deepzip_widths = header["widths"]
    return model


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a .dzip by name, dense, without building any module: what a file saved
    from a custom module can always be turned back into (tied names get copies of one tensor).

    Examples:
        >>> safetensors.torch.save_file(read_tensors("model.dzip"), "model.safetensors")
    """
    with DzipReader(path) as reader:
        entries = reader.header.get("tensors")
        if not isinstance(entries, list):
            raise DzipFormatError(f"{reader.path.name} is corrupt: 'tensors' is not a list.")
        _check_entries(entries, len(reader.streams), reader.path.name, [e["stream"] for e in reader.file_entries()])
        dec = TensorDecoder(reader)
        out: dict[str, torch.Tensor] = {}
        for i, entry in enumerate(entries):
            if "alias" in entry:
                dec.need(entry["alias"] in out, f"tensor entry {i} aliases an unknown tensor")
                out[entry["name"]] = out[entry["alias"]].clone()
            else:
                out[entry["name"]] = dec.decode(entry, i).dense().contiguous()
    return out


def _fill(model: nn.Module, entries: list, have: dict, dec: TensorDecoder, runtime: tuple[str, bool],
          pname: str) -> tuple[nn.Module, dict[str, str]]:
    """Decode every entry into the model, one tensor at a time; layers the runtime runs sparse are
    built from their codes or non-zeros instead. `runtime` is (its name, whether the packed
    layout's kernels run). Returns the model (replaced if it is itself such a layer) and the
    per-layer runtime decisions."""
    # Tensors a later entry aliases are kept; everything else is dropped once stored, so
    # memory stays one layer at a time.
    aliased = {e.get("alias") for e in entries if isinstance(e, dict)}
    held: dict[str, torch.Tensor] = {}
    sparse: dict[str, tuple[str, str, Decoded]] = {}
    decisions: dict[str, str] = {}
    for i, entry in enumerate(entries):
        if "alias" in entry:
            dec.need(entry["alias"] in held, f"tensor entry {i} aliases an unknown tensor")
            value = held[entry["alias"]]
        elif entry["name"] not in have and entry["name"] not in aliased:
            continue  # strict=False: nothing in the model takes it
        else:
            decoded = dec.decode(entry, i)
            if runtime[0] != "dense" and entry["name"] in have and decoded.info.layer:
                owner = have[entry["name"]][0]
                how = _runtime_choice(decoded.info, owner, entry["name"] in aliased, runtime[0])
                layout = _layout(owner, decoded, runtime[1]) if how[0] == "codebook" else ""
                decisions[entry["name"]] = f"{how[0]} ({', '.join(filter(None, (layout, how[1])))})"
                if how[0] != "dense":
                    sparse[entry["name"].rpartition(".")[0]] = (how[0], layout, decoded)
                    continue
            value = decoded.dense()
        if entry["name"] not in have:
            continue
        stored = _put(*have[entry["name"]], value, entry["name"], pname)
        if entry["name"] in aliased:
            held[entry["name"]] = stored
    for layer, (how, layout, decoded) in sparse.items():
        module = model.get_submodule(layer) if layer else model
        bias = getattr(module, "bias", None)
        if layout:
            positions, codes, table, scales = decoded.coded()
            new = rt.build(module, how, positions, codes, table, bias, scales=scales, layout=layout)
        else:
            new = rt.build(module, how, *decoded.nonzeros(), bias)
        if layer:
            _replace(model, layer, new)
        else:  # the model is the layer itself
            model = new
    return model, decisions


def _layout(owner: nn.Module, decoded: Decoded, packed_ok: bool) -> str:
    """A codebook layer's layout ("sparse" or "packed"), or "" where the weight has no codebook
    (a pruned float weight: CSR)."""
    if decoded.codebook is None:
        return ""
    info = decoded.info
    density = (info.nonzero if info.nonzero is not None else info.numel) / max(1, info.numel)
    return rt.choose_layout(owner, density, len(decoded.codebook), packed_ok)


def _runtime_choice(info, owner: nn.Module, tied: bool, runtime: str) -> tuple[str, str]:
    how, why = rt.choose(layer=info.layer, name=info.name, numel=info.numel, nonzero=info.nonzero,
                         encoding=info.encoding, runtime=runtime)
    if how != "dense" and not rt.supports(owner):
        return "dense", f"no sparse {type(owner).__name__} with this padding"
    if how != "dense" and tied:
        return "dense", "tied to another layer"
    return how, why
