"""The C runtime's memory: each layer's packed weights, and the activation buffers' places.

The arena (libdzip/runtime/include/dzrt.h) is `packed weights | activations`, and during init
`packed weights | libdzip's state, index, scratch and one vector` instead, so it is
packed + max(activations, init transient).

Packed weights follow `dzrt__layout` (libdzip/runtime/src/run.c) byte for byte; dzrt_init
recomputes the layout and refuses an op list that disagrees. Activations are planned by
liveness: a tensor's buffer lives from the op that writes it to the last op that reads it, and
buffers whose lives do not overlap share bytes, placed greedily largest first (TensorFlow Lite
Micro's "greedy by size"). Inputs of a channel concat are written by their producers straight
into their slice of the concat's buffer (one sample, C order: a channel range is contiguous), and
ReLU, add and standalone batch norm write over an input that dies with them.
"""
from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dzip._tables import NUMBERS
from ..errors import ConfigError
from .cgraph import Graph, Layer, Op
from .ctree import SOURCES, buildable

# dzrt_form (dzip/tables.toml) of each encoding: a raw tensor is packed DENSE.
FORMS = {e: NUMBERS["form"]["dense" if e == "raw" else e] for e in ("raw", "shared", "sparse")}
EXTERNAL = 0xFFFFFFFF
STATE_BYTES = 1536   # DZRT_STATE_BYTES: libdzip's dz_file and dz_iter during init
OP_BYTES = 144       # sizeof(dzrt_op), the same on every target (no pointers; run.c checks it)
BUF_BYTES = 8
LIBDZIP = SOURCES  # libdzip's C sources (export/ctree.py)


def _a4(n: int) -> int:
    return (n + 3) & ~3


def _a8(n: int) -> int:
    return (n + 7) & ~7


@dataclass
class Packed:
    """One dzrt_layer record: tensor indices in the .dzip and the packed form."""
    weight: int = -1
    bias: int = -1
    bn: tuple[int, int, int, int] = (-1, -1, -1, -1)   # weight, bias, running_mean, running_var
    eps: float = 0.0
    form: int = 0
    entry_bytes: int = 0
    code_bits: int = 0
    ptr_bytes: int = 0
    rows: int = 0
    cols: int = 0
    kept: int = 0
    book: int = 0
    offset: int = 0
    bytes: int = 0
    name: str = ""

    def layout_bytes(self) -> int:
        """dzrt__layout's total (libdzip/runtime/src/run.c), the same arithmetic.

        Examples:
            >>> Packed(form=2, rows=10, cols=500, kept=750, book=14, ptr_bytes=2, entry_bytes=2, bias=3).layout_bytes()
            1620
        """
        at = 0
        if self.form == FORMS["raw"]:
            at = self.rows * self.cols * 4
        elif self.form:
            at = _a4((self.rows + 1) * self.ptr_bytes)
            at = _a4(at + self.kept * self.entry_bytes)
            at += (self.book if self.form == FORMS["shared"] else self.kept) * 4
        has_bn = self.bn[3] >= 0
        return at + (self.rows * 4 if has_bn else 0) + (self.rows * 4 if has_bn or self.bias >= 0 else 0)


@dataclass
class Plan:
    """The op records, buffers and sizes the C files are written from."""
    ops: list[Op]
    records: list[dict[str, Any]]      # per op: the dzrt_op fields
    bufs: list[tuple[int, int]]        # (offset, numel)
    input: int
    output: int
    packed_bytes: int
    activation_bytes: int
    init_bytes: int
    arena_bytes: int
    libdzip: dict[str, int]            # dz_open's arena and the decoder scratch (this host's figures)
    layers: list[Packed] = field(default_factory=list)

    @property
    def ops_bytes(self) -> int:
        return OP_BYTES * len(self.records) + BUF_BYTES * len(self.bufs)


class _Tensors:
    """The .dzip's tensor entries by name: index (the last of a name, as libdzip's dz_find) and
    what packing them takes (kept count, codebook size)."""

    def __init__(self, path: Path) -> None:
        from ..dzip import DzipReader, TensorDecoder

        self.reader = DzipReader(path)
        self.entries = self.reader.header["tensors"]
        self.decoder = TensorDecoder(self.reader)
        self.index = {e["name"]: i for i, e in enumerate(self.entries)}

    def close(self) -> None:
        self.reader.close()

    def find(self, name: str | None, what: str) -> int:
        if name is None:
            return -1
        if name not in self.index:
            raise ConfigError(f"the file holds no tensor {name!r} ({what}), so export --c cannot pack that layer.")
        i = self.index[name]
        while "alias" in self.entries[i]:  # an alias names an earlier entry; pack from that one
            i = max(j for j in range(i) if self.entries[j]["name"] == self.entries[i]["alias"])
        if self.entries[i]["dtype"] not in ("float32", "float16", "bfloat16"):
            raise ConfigError(f"tensor {name!r} is {self.entries[i]['dtype']}, and the C runtime computes in float32.")
        return i

    def packed(self, layer: Layer) -> Packed:
        bn = tuple(self.find(layer.bn.get(k), "batch norm") for k in ("weight", "bias", "running_mean", "running_var"))
        p = Packed(weight=self.find(layer.weight, "weight"), bias=self.find(layer.bias, "bias"), bn=bn,
                   eps=layer.eps, rows=layer.rows, cols=layer.cols, name=layer.weight or layer.bn.get("running_var", ""))
        if p.weight >= 0:
            e = self.entries[p.weight]
            p.form = FORMS[e["encoding"]]
            if "scales" in e:
                raise ConfigError(f"layer {layer.weight!r} has a scale per row (a post-training file), which the C "
                                  f"runtime does not compute from yet; libdzip reads the file (dz_decode_dense).")
            if p.form != FORMS["raw"]:
                pos, _, book = self.decoder.decode(e, p.weight).nonzeros()
                p.kept = int(len(pos))
                p.book = 0 if book is None else int(len(book)) - 1
                p.code_bits = max(p.book - 1, 0).bit_length() if p.form == FORMS["shared"] else 0
                bits = max(p.cols - 1, 0).bit_length() + p.code_bits
                if bits > 32:
                    raise ConfigError(f"layer {layer.weight!r} has {p.cols:,} columns and {p.book} centroids, more "
                                      f"than a 32-bit packed entry holds.")
                p.entry_bytes = 1 if bits <= 8 else 2 if bits <= 16 else 4
                p.ptr_bytes = 2 if p.kept <= 0xFFFF else 4
        p.bytes = p.layout_bytes()
        return p


def libdzip_sizes(path: Path) -> dict[str, int]:
    """dz_open's arena and the largest decoder scratch for `path`, from `dzip-dump --sizes`
    linked with the runtime's build of libdzip (`make -C libdzip/runtime`, run first so that the
    figure comes from the sources the export copies; DZIP_DUMP names another binary).

    Args:
        path: a .dzip.

    Examples:
        >>> libdzip_sizes(Path("model.dzip"))
        {'arena': 7415, 'scratch': 6616}
    """
    if "DZIP_DUMP" in os.environ:
        tool = Path(os.environ["DZIP_DUMP"])
    else:
        tree = buildable()
        tool = tree / "runtime" / "build" / "dzip-dump"
        proc = subprocess.run(["make", "-C", str(tree / "runtime"), "-s", "build/dzip-dump"], capture_output=True,
                              text=True)
        if proc.returncode != 0 or not tool.exists():
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["make failed"]
            raise ConfigError(f"export --c measures libdzip's memory with {tool}, which does not build here ({last[0]}).")
    proc = subprocess.run([str(tool), "--sizes", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ConfigError(f"libdzip refuses {path.name}: {proc.stderr.strip()}")
    sizes = json.loads(proc.stdout)
    return {"arena": int(sizes["arena"]), "scratch": int(sizes["scratch_max"])}


class _Storage:
    """Bytes that one or more values share: a root placed in the arena, or a slice of another."""

    def __init__(self, numel: int) -> None:
        self.numel, self.parent, self.at, self.offset = numel, None, 0, 0

    def root(self) -> tuple[_Storage, int]:
        s, at = self, 0
        while s.parent is not None:
            s, at = s.parent, at + s.at
        return s, at


def _place(roots: list[tuple[_Storage, int, int]]) -> int:
    """Greedy by size: largest first, each at the lowest offset clear of every placed buffer
    whose life overlaps its own. Returns the bytes spanned."""
    placed: list[tuple[int, int, int, int]] = []   # offset, end, first, last
    top = 0
    for s, first, last in sorted(roots, key=lambda r: (-r[0].numel, r[1])):
        size = _a4(4 * s.numel)
        clash = sorted((o, e) for o, e, f, end in placed if f <= last and first <= end)
        at = 0
        for o, e in clash:
            if at + size <= o:
                break
            at = max(at, e)
        s.offset = at
        placed.append((at, at + size, first, last))
        top = max(top, at + size)
    return top


def _concats(ops: list[Op], graph: Graph, storage: dict[str, _Storage]) -> list[Op]:
    """Concats become slices where the producer can write in place, COPY ops elsewhere."""
    out: list[Op] = []
    for op in ops:
        if op.kind != "cat":
            out.append(op)
            continue
        whole = storage[op.output]
        at = 0
        for v in op.inputs:
            s = storage.get(v)
            n = graph.numel[v]
            free = (v != graph.input and s is not None and s.parent is None and s.numel == n and s is not whole
                    and op.inputs.count(v) == 1)
            if free:
                s.parent, s.at = whole, at
            else:
                copy = Op("copy", [v], op.output, op.nodes, op.shape_in, op.shape_out, op.shape_out)
                copy.conv = {"at": at}
                out.append(copy)
            at += n
    return out


def plan(graph: Graph, path: Path, sizes: dict[str, int] | None = None) -> Plan:
    """Pack every layer of `graph` (reading the kept counts from the .dzip at `path`) and place
    every activation buffer.

    Args:
        graph: cgraph.trace's ops.
        path: the .dzip they are packed from.
        sizes: libdzip's figures for the file (default: measured with dzip-dump).

    Examples:
        >>> p = plan(trace(dz.load(f), (1, 28, 28)), f); p.arena_bytes
    """
    layers, packed_bytes = _pack(graph, path)
    storage: dict[str, _Storage] = {op.output: _Storage(graph.numel[op.output]) for op in graph.ops}
    ops = _concats(graph.ops, graph, storage)
    _in_place(ops, graph, storage)
    span = _lifetimes(ops, graph, storage)
    tmps = {i: _Storage(op.shape_mid[1] * op.shape_mid[2]) for i, op in enumerate(ops) if op.kind == "conv" and op.pool}
    roots = {id(r): r for r in (s.root()[0] for s in storage.values())}
    entries = [(r, span[key][0], span[key][1]) for key, r in roots.items() if key in span]
    entries += [(t, i, i) for i, t in tmps.items()]
    activation_bytes = _place(entries)
    bufs = _Buffers(graph, storage, packed_bytes)
    records = [{"kind": op.kind, "in": bufs.value(op.inputs[0]), "out": bufs.value(op.output),
                "in2": bufs.value(op.inputs[1]) if op.kind == "add" else None,
                "tmp": bufs.of(tmps[i], tmps[i].numel) if i in tmps else None, "op": op, "layer": layers.get(id(op))}
               for i, op in enumerate(ops)]
    rows_max = max([p.rows for p in layers.values() if p.bn[3] >= 0] + [0])   # init's batch-norm vector
    sizes = sizes or libdzip_sizes(path)
    init_bytes = _a8(packed_bytes) + STATE_BYTES + _a8(sizes["arena"]) + _a8(sizes["scratch"]) + 4 * rows_max
    arena = max(packed_bytes + activation_bytes, init_bytes)
    return Plan(ops, records, bufs.list, 0, bufs.value(graph.output), packed_bytes, activation_bytes,
                init_bytes - packed_bytes, arena, sizes, list(layers.values()))


def _pack(graph: Graph, path: Path) -> tuple[dict[int, Packed], int]:
    """Each layer's packed form (by id of its op), placed one after another from the arena's start."""
    tensors = _Tensors(path)
    try:
        layers: dict[int, Packed] = {}
        offset = 0
        for op in graph.ops:
            if op.layer is not None:
                p = tensors.packed(op.layer)
                p.offset = offset
                offset = _a8(offset + p.bytes)
                layers[id(op)] = p
    finally:
        tensors.close()
    return layers, offset


def _lifetimes(ops: list[Op], graph: Graph, storage: dict[str, _Storage]) -> dict[int, list[int]]:
    """The first and last op that touches each storage root (the output lives to the end)."""
    span: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for v, when in [(v, i) for v in op.inputs] + [(op.output, i)]:
            if v == graph.input:
                continue
            r, _ = storage[v].root()
            s = span.setdefault(id(r), [when, when])
            s[0], s[1] = min(s[0], when), max(s[1], when)
    r, _ = storage[graph.output].root()
    span[id(r)][1] = len(ops)
    return span


def _in_place(ops: list[Op], graph: Graph, storage: dict[str, _Storage]) -> None:
    """An elementwise op writes over an input whose bytes die with it (storage is changed)."""
    for i, op in enumerate(ops):
        if op.kind not in ("relu", "add", "affine", "softmax"):
            continue
        out = storage[op.output]
        if out.parent is not None or any(s.parent is out for s in storage.values()):
            continue
        span = _lifetimes(ops, graph, storage)
        for v in op.inputs:
            if v == graph.input:
                continue
            r, at = storage[v].root()
            if at == 0 and r.numel == graph.numel[v] == out.numel and span[id(r)][1] == i:
                for name, s in storage.items():
                    if s is out:
                        storage[name] = storage[v]
                break


class _Buffers:
    """The op list's buffers: (arena offset, numel) each, numbered as first asked for; 0 is the input."""

    def __init__(self, graph: Graph, storage: dict[str, _Storage], packed_bytes: int) -> None:
        self.graph, self.storage, self.packed_bytes = graph, storage, packed_bytes
        self.list: list[tuple[int, int]] = [(EXTERNAL, graph.numel[graph.input])]
        self.ids: dict[tuple[int, int], int] = {}

    def of(self, s: _Storage, numel: int) -> int:
        r, at = s.root()
        key = (self.packed_bytes + r.offset + 4 * at, numel)
        if key not in self.ids:
            self.ids[key] = len(self.list)
            self.list.append(key)
        return self.ids[key]

    def value(self, v: str) -> int:
        return 0 if v == self.graph.input else self.of(self.storage[v], self.graph.numel[v])
