"""Deep Compression glued together from stock parts: the baseline bench/compression.py measures deepzip against.

This is what a user without deepzip would write: torch.nn.utils.prune for iterative global
magnitude pruning, scikit-learn's KMeans for weight sharing (no centroid fine-tuning), dahuffman
for Huffman coding of the cluster ids and of the paper's relative index, and np.savez for the
file. Training is deepzip's loop, and the pruning ramp deepzip's, so that the comparison is
about the compression parts and not about the optimiser or schedule.

    result = stock_compress(model, train_set, test_set, sparsity=0.92, steps=3, retrain_epochs=2,
                            lr=1e-3, bits={"linear": 5, "conv": 8}, out_path="stock.npz")
    stock_load("stock.npz", same_architecture)

The file is an uncompressed .npz of three arrays, because each array costs ~200 bytes of zip and
.npy headers, which would otherwise be charged to the baseline's ratio:
  blob    uint8: every segment back to back;
  sizes   uint32: the byte length of each segment;
  shapes  uint32: for each state_dict entry, by key, its number of dimensions, then its dims.
A Linear/Conv2d weight takes seven segments: cluster-id bytes, id table symbols (uint16), id
table code lengths (uint8), gap bytes, gap table symbols, gap table code lengths, and the
codebook (float32); every other state_dict entry (the biases) is one float32 segment.
"""
from __future__ import annotations

import math
import os
import time
from collections import Counter
from typing import Any

import numpy as np
import torch
from dahuffman import HuffmanCodec
from dahuffman.huffmancodec import PrefixCodec
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import prune

from deepzip.data import Dataset
from deepzip.files import atomic_path
from deepzip.prune import ramp
from deepzip.train import evaluate, train

# The paper's relative-index widths: 5 bits for fc layers, 8 for conv.
INDEX_BITS = {"linear": 5, "conv": 8}
# Cluster id 0 is the zero weight (only fillers carry it), so centroid j has id j + 1.
ZERO_ID = 0
# dahuffman's end-of-stream symbol: above any id or gap, and it fits the uint16 symbol tables.
EOF = 0xFFFF


def _layers(model: nn.Module) -> list[tuple[str, nn.Module, str]]:
    return [(name, m, "conv" if isinstance(m, nn.Conv2d) else "linear")
            for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _prune(model: nn.Module, train_set: Dataset, sparsity: float, steps: int, retrain_epochs: float, lr: float,
           seed: int, progress: bool) -> None:
    modules = [m for _, m, _ in _layers(model)]
    total = sum(m.weight.numel() for m in modules)
    pruned = 0
    for step in range(1, steps + 1):
        target = round(ramp(sparsity, step, steps) * total)
        # An int amount counts weights among those still unpruned (torch prunes within the current
        # mask), so each round adds exactly what the ramp asks for. Scores come from weight_orig
        # because `weight` is refreshed only by a forward pass, so after training it is a step stale.
        prune.global_unstructured([(m, "weight") for m in modules], pruning_method=prune.L1Unstructured,
                                  amount=target - pruned,
                                  importance_scores={(m, "weight"): getattr(m, "weight_orig", m.weight)
                                                     for m in modules})
        pruned = target
        train(model, train_set, epochs=retrain_epochs, lr=lr, seed=seed + step, progress=progress,
              desc=f"stock prune {step}/{steps}")
    for m in modules:
        prune.remove(m, "weight")


def _share(flat: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codebook, ids, positions) of a flat weight's nonzero entries: k-means with linear init."""
    positions = np.flatnonzero(flat)
    values = flat[positions].astype(np.float64).reshape(-1, 1)
    # sklearn refuses more clusters than distinct points, which a nearly empty layer can have.
    k = min(2 ** bits, len(np.unique(values)))
    if k == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.int64), positions
    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1).fit(values)
    return km.cluster_centers_.ravel().astype(np.float32), km.labels_.astype(np.int64) + 1, positions


def relative_index(positions: np.ndarray, ids: np.ndarray, index_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(gaps, ids) with the paper's fillers: a gap counts the zeros skipped since the previous entry.

    A gap that does not fit in index_bits gets filler entries in front: gap 2^index_bits − 1 and
    id ZERO_ID, each standing on a zero, so each filler uses up 2^index_bits positions.
    """
    width = 1 << index_bits
    skipped = np.diff(positions, prepend=-1) - 1
    fillers = skipped // width
    slot = np.cumsum(fillers + 1) - 1  # where each kept weight lands among all entries
    count = int(slot[-1]) + 1 if slot.size else 0
    gaps = np.full(count, width - 1, np.int64)
    gaps[slot] = skipped - fillers * width
    out = np.full(count, ZERO_ID, np.int64)
    out[slot] = ids
    return gaps, out


def _canonical(lengths: dict[int, int]) -> dict[int, tuple[int, int]]:
    """Canonical code values for these code lengths, as dahuffman's {symbol: (bits, value)} table.

    dahuffman's own values depend on its tree's merge order; canonical ones follow from the
    lengths alone, so the file needs to keep only (symbol, length) pairs.
    """
    table, code, previous = {}, 0, 0
    for symbol, bits in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= bits - previous
        table[symbol] = (bits, code)
        code, previous = code + 1, bits
    return table


def _huffman(symbols: np.ndarray) -> list[bytes]:
    """[coded bytes, table symbols, table code lengths] of one stream."""
    if symbols.size == 0:
        return [b"", b"", b""]
    data = symbols.tolist()
    tree = HuffmanCodec.from_frequencies(Counter(data), eof=EOF)
    lengths = {symbol: bits for symbol, (bits, _) in tree.get_code_table().items()}
    coded = PrefixCodec(_canonical(lengths), eof=EOF).encode(data)
    return [coded, np.array(list(lengths), np.uint16).tobytes(), np.array(list(lengths.values()), np.uint8).tobytes()]


def _unhuffman(coded: bytes, symbols: bytes, lengths: bytes) -> np.ndarray:
    if not symbols:
        return np.zeros(0, np.int64)
    table = dict(zip(np.frombuffer(symbols, np.uint16).tolist(), np.frombuffer(lengths, np.uint8).tolist()))
    return np.array(PrefixCodec(_canonical(table), eof=EOF).decode(coded), np.int64)


def stock_compress(model: nn.Module, train_set: Dataset, test_set: Dataset, *, sparsity: float, steps: int,
                   retrain_epochs: float, lr: float, bits: dict[str, int], out_path: str | os.PathLike,
                   seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """Prune, share and code `model` in place; write out_path; return its size and the model's accuracy.

    sparsity is the overall fraction of Linear/Conv2d weights pruned, reached over `steps` rounds
    of global pruning, each followed by `retrain_epochs` of training at `lr`. bits maps a layer
    kind ("linear", "conv") to its codebook width.
    """
    start = time.perf_counter()
    _prune(model, train_set, sparsity, steps, retrain_epochs, lr, seed, progress)
    coded: dict[str, list[bytes]] = {}
    with torch.no_grad():
        for name, module, kind in _layers(model):
            flat = module.weight.detach().cpu().numpy().ravel()
            codebook, ids, positions = _share(flat, bits[kind])
            shared = np.zeros_like(flat)
            shared[positions] = codebook[ids - 1]
            module.weight.copy_(torch.from_numpy(shared).view_as(module.weight))
            gaps, entries = relative_index(positions, ids, INDEX_BITS[kind])
            coded[f"{name}.weight"] = [*_huffman(entries), *_huffman(gaps), codebook.tobytes()]
    segments: list[bytes] = []
    shapes: list[int] = []
    # Sorted by key: prune.remove re-registers `weight` after `bias`, so a fresh model's order differs.
    for key, tensor in sorted(model.state_dict().items()):
        shapes += [tensor.dim(), *tensor.shape]
        segments += coded[key] if key in coded else [tensor.detach().cpu().numpy().astype(np.float32).tobytes()]
    # A file object, because np.savez appends ".npz" to a path that lacks it.
    with atomic_path(out_path) as tmp, open(tmp, "wb") as f:
        np.savez(f, blob=np.frombuffer(b"".join(segments), np.uint8),
                 sizes=np.array([len(s) for s in segments], np.uint32), shapes=np.array(shapes, np.uint32))
    return {"file_bytes": os.path.getsize(out_path), "accuracy": evaluate(model, test_set),
            "seconds": round(time.perf_counter() - start, 2)}


def stock_load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Decode a stock_compress file into `model` (the same architecture) and return it."""
    with np.load(path) as f:
        blob, sizes, dims = f["blob"].tobytes(), f["sizes"].tolist(), iter(f["shapes"].tolist())
    ends = np.cumsum([0, *sizes]).tolist()
    segments = iter(blob[a:b] for a, b in zip(ends, ends[1:]))
    coded = {f"{name}.weight" for name, _, _ in _layers(model)}
    state = {}
    for key, tensor in sorted(model.state_dict().items()):
        shape = tuple(next(dims) for _ in range(next(dims)))
        if shape != tuple(tensor.shape):
            raise ValueError(f"{path} holds {key} of shape {shape}, but the model's is {tuple(tensor.shape)}.")
        if key in coded:
            ids = _unhuffman(next(segments), next(segments), next(segments))
            gaps = _unhuffman(next(segments), next(segments), next(segments))
            values = np.concatenate(([0.0], np.frombuffer(next(segments), np.float32))).astype(np.float32)
            flat = np.zeros(math.prod(shape), np.float32)
            flat[np.cumsum(gaps + 1) - 1] = values[ids]
        else:
            flat = np.frombuffer(next(segments), np.float32).copy()
        state[key] = torch.from_numpy(flat.reshape(shape))
    model.load_state_dict(state)
    return model
