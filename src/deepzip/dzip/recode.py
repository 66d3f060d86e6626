"""deepzip.recode: a .dzip written again with another coder, losslessly, without its training run.

The file is decoded into its model, each shared tensor gets back its codebook and codes and
each sparse one its mask, and the model is saved again: the weights cannot change, only how
they are coded (and a version 1 or 2 file becomes a version 3 one, with its smaller header).
"""
from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, DeepzipError
from ..reparam import set_mask_, share_, strip_
from .assemble import load, targets
from .container import DzipReader
from .decode import TensorDecoder
from .write import save


def recode(src: str | os.PathLike, dst: str | os.PathLike, *, model: nn.Module | None = None,
           coder: str = "auto", index_bits: Any = "auto", metadata: Mapping[str, Any] | None = None,
           progress: bool = False) -> dict[str, Any]:
    """Write the model in `src` to `dst` with another coder; returns the header written (with
    "file_bytes"). `dst` may be `src` (the write is atomic).

    Args:
        src: a .dzip of any version this deepzip reads.
        dst: where to write the new file.
        model: the module to fill, for a file saved from your own module (as for load).
        coder: "huffman", "ans", "context" or "auto" (see save).
        index_bits: relative-index width, as for save ("auto": the smallest per layer).
        metadata: the new file's "meta"; default: the old one's (versions are written afresh).
        progress: a progress bar over the tensors.

    Raises ConfigError for a file whose compressed tensors are tied to others (recode would
    untie them) and DzipFormatError for a corrupt one; nothing is written then. The new file is
    read back and its tensors compared, bit for bit, with the old one's.

    Examples:
        >>> dz.recode("model.dzip", "small.dzip", coder="auto")["file_bytes"]
        20087
    """
    model = load(src, model)
    before = _digests(model)
    with DzipReader(src) as reader:
        entries = reader.header["tensors"]
        old_meta = reader.header.get("meta")
        arch = reader.header.get("arch")
        compressed = {e["name"] for e in entries if "alias" not in e and e["encoding"] != "raw"}
        tied = sorted(e["name"] for e in entries if "alias" in e and e["alias"] in compressed)
        if tied:
            raise ConfigError(f"cannot recode {reader.path.name}: {', '.join(tied[:3])} "
                              f"{'are' if len(tied) > 1 else 'is'} tied to compressed weights, which recode would untie.")
        have = targets(model)
        dec = TensorDecoder(reader)
        for i, entry in enumerate(entries):
            if entry["name"] not in compressed or entry["name"] not in have:
                continue
            owner, attr, _ = have[entry["name"]]
            decoded = dec.decode(entry, i)
            if entry["encoding"] == "shared":
                positions, codes, codebook = decoded.nonzeros()
                if codebook.size > 1 << 15:  # a SharedWeight keeps its codes as int16
                    raise ConfigError(f"cannot recode {reader.path.name}: {entry['name']!r} has {codebook.size - 1:,} "
                                      f"centroids, more than deepzip's shared weights hold (32,767).")
                assign = np.zeros(decoded.info.numel, np.uint8 if codebook.size <= 256 else np.int16)
                assign[positions] = codes
                share_(owner, attr, torch.from_numpy(codebook[1:].copy()),
                       torch.from_numpy(assign.reshape(decoded.info.shape)))
            elif getattr(owner, attr).requires_grad:  # a buffer or frozen weight needs no mask: save stores it sparse anyway
                set_mask_(owner, attr, getattr(owner, attr) != 0)
    if metadata is None:
        metadata = {k: v for k, v in (old_meta if isinstance(old_meta, dict) else {}).items()
                    if k not in ("deepzip", "torch")}
    template = copy.deepcopy(model) if not isinstance(arch, dict) else None  # a custom module, to read dst into
    header = save(model, dst, coder=coder, index_bits=index_bits, metadata=metadata,
                  arch=arch if isinstance(arch, dict) else None, progress=progress)
    strip_(model)  # the caller's module, if one was given, goes back plain
    del model
    if _digests(load(dst, template)) != before:  # cannot happen; if it ever did, a user must not trust dst
        raise DeepzipError(f"recode wrote {os.fspath(dst)} but it does not load to the weights of {os.fspath(src)}; "
                           f"keep the original.")
    return header


def _digests(model: nn.Module) -> dict[str, str]:
    """sha256 of each tensor's bytes: recode's promise is the same weights, bit for bit."""
    return {k: hashlib.sha256(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()
            for k, v in model.state_dict().items()}
