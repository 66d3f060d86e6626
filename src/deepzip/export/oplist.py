"""The C runtime's op list as bytes (model.dzrt), for `export --web`: the records csource.py
spells as C for model.c, packed in the layout of libdzip/runtime/include/dzrt.h, so that one
compiled runtime (libdzip/wasm/build/dzip.wasm) runs any exported network. The header is
libdzip/wasm/src/oplist.h's; tests/web holds these bytes equal to model.c's arrays compiled.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

from ..dzip._tables import NUMBERS
from .cplan import Plan

KINDS = NUMBERS["op"]              # enum dzrt_kind (dzip/tables.toml)
NONE = 0xFFFF                      # DZRT_NONE
ABI = 1                            # DZRT_ABI
# dzrt_op, 144 bytes: kind relu in in2 out tmp | c h w oc oh ow yc yh yw | kh kw sh sw pad_h pad_w dh dw |
# groups at | dzrt_pool (kind count_pad kh kw sh sw ph pw) | dzrt_layer (weight bias bn×4 eps form
# entry_bytes code_bits ptr_bytes rows cols kept book offset bytes). C's padding is written as x.
OP = struct.Struct("<BBHHHH2x9I8H2IBB6H2x6if4B6I")
BUF = struct.Struct("<2I")
HEAD = struct.Struct("<4sI4H2I2I")
assert OP.size == 144 and HEAD.size == 32


def _op(rec: dict) -> bytes:
    op = rec["op"]
    conv = [op.conv.get(k, 0) for k in ("kh", "kw", "sh", "sw", "pad_h", "pad_w", "dh", "dw", "groups")] \
        if op.kind == "conv" else [0] * 9
    at = op.conv["at"] if op.kind == "copy" else 0
    p = op.pool
    pool = [p["kind"], p["count_pad"], p["kh"], p["kw"], p["sh"], p["sw"], p["ph"], p["pw"]] if p else [0] * 8
    L = rec["layer"]
    # An op without a layer leaves dzrt_layer all zeros, as model.c's designated initialisers do.
    layer = [L.weight, L.bias, *L.bn, float(np.float32(L.eps)), L.form, L.entry_bytes, L.code_bits, L.ptr_bytes,
             L.rows, L.cols, L.kept, L.book, L.offset, L.bytes] if L is not None else [0] * 6 + [0.0] + [0] * 10
    ids = [rec["in"], NONE if rec["in2"] is None else rec["in2"], rec["out"], NONE if rec["tmp"] is None else rec["tmp"]]
    return OP.pack(KINDS[op.kind], op.relu, *ids, *op.shape_in, *op.shape_mid, *op.shape_out, *conv[:8], conv[8], at,
                   *pool, *layer)


def op_list_bytes(plan: Plan, data: bytes) -> bytes:
    """model.dzrt: the plan's buffers and op records for the .dzip whose bytes are `data` (its
    size and crc32 recorded, so that the runtime refuses the op list with another file).

    Args:
        plan: cplan.plan's, for that file.
        data: the .dzip's bytes.

    Example:
        >>> plan = cplan.plan(cgraph.trace(dz.load(path), (1, 28, 28)), path)
        >>> Path("model.dzrt").write_bytes(op_list_bytes(plan, path.read_bytes()))
    """
    head = HEAD.pack(b"DZRT", ABI, len(plan.records), len(plan.bufs), plan.input, plan.output, plan.packed_bytes,
                     plan.arena_bytes, len(data), zlib.crc32(data))
    return head + b"".join(BUF.pack(*b) for b in plan.bufs) + b"".join(_op(r) for r in plan.records)
