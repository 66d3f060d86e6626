"""The text of model.c, model.h and samples.h: the .dzip as bytes, the op list as C99
designated initialisers of libdzip/runtime/include/dzrt.h's records, and the sizes as #defines."""
from __future__ import annotations

import numpy as np

from .cplan import EXTERNAL, Plan

KINDS = {"conv": "DZRT_CONV", "linear": "DZRT_LINEAR", "pool": "DZRT_POOL", "add": "DZRT_ADD", "copy": "DZRT_COPY",
         "affine": "DZRT_AFFINE", "relu": "DZRT_RELU", "softmax": "DZRT_SOFTMAX"}
FORMS = ["DZRT_FORM_NONE", "DZRT_FORM_DENSE", "DZRT_FORM_SHARED", "DZRT_FORM_SPARSE"]
POOLS = ["DZRT_POOL_NONE", "DZRT_POOL_MAX", "DZRT_POOL_AVG", "DZRT_POOL_ADAPTIVE_AVG", "DZRT_POOL_ADAPTIVE_MAX"]


def c_bytes(data: bytes, per_line: int = 20) -> str:
    """`data` as the body of a C array initialiser, `per_line` bytes a line.

    Examples:
        >>> c_bytes(b"DZIP")
        '    0x44,0x5a,0x49,0x50,'
    """
    lines = []
    for i in range(0, len(data), per_line):
        lines.append("    " + ",".join(f"0x{b:02x}" for b in data[i:i + per_line]) + ",")
    return "\n".join(lines)


def c_float(v: float) -> str:
    """A float32 as an exact C99 hexadecimal literal.

    Examples:
        >>> c_float(1e-5)
        '0x1.4f8b58p-17f'
    """
    f = float(np.float32(v))
    if f == 0.0:
        return "0.0f"
    mantissa, exponent = f.hex().split("p")
    return f"{mantissa.rstrip('0').rstrip('.')}p{exponent}f"


def _id(v: int | None) -> str:
    return "DZRT_NONE" if v is None else str(v)


def _record(rec: dict) -> str:
    op = rec["op"]
    c, h, w = op.shape_in
    oc, oh, ow = op.shape_mid
    yc, yh, yw = op.shape_out
    fields = [f".kind = {KINDS[op.kind]}, .relu = {op.relu}, .in = {rec['in']}, .in2 = {_id(rec['in2'])}, "
              f".out = {rec['out']}, .tmp = {_id(rec['tmp'])}",
              f".c = {c}, .h = {h}, .w = {w}, .oc = {oc}, .oh = {oh}, .ow = {ow}, .yc = {yc}, .yh = {yh}, .yw = {yw}"]
    if op.kind == "conv":
        k = op.conv
        fields.append(f".kh = {k['kh']}, .kw = {k['kw']}, .sh = {k['sh']}, .sw = {k['sw']}, .pad_h = {k['pad_h']}, "
                      f".pad_w = {k['pad_w']}, .dh = {k['dh']}, .dw = {k['dw']}, .groups = {k['groups']}")
    if op.kind == "copy":
        fields.append(f".at = {op.conv['at']}")
    if op.pool:
        p = op.pool
        fields.append(f".pool = {{{POOLS[p['kind']]}, {p['count_pad']}, {p['kh']}, {p['kw']}, {p['sh']}, {p['sw']}, "
                      f"{p['ph']}, {p['pw']}}}")
    L = rec["layer"]
    if L is not None:
        fields.append(f".layer = {{.weight = {L.weight}, .bias = {L.bias}, .bn_weight = {L.bn[0]}, .bn_bias = {L.bn[1]}, "
                      f".bn_mean = {L.bn[2]}, .bn_var = {L.bn[3]}, .eps = {c_float(L.eps)},\n"
                      f"                .form = {FORMS[L.form]}, .entry_bytes = {L.entry_bytes}, .code_bits = {L.code_bits}, "
                      f".ptr_bytes = {L.ptr_bytes}, .rows = {L.rows}, .cols = {L.cols}, .kept = {L.kept}, "
                      f".book = {L.book}, .offset = {L.offset}, .bytes = {L.bytes}}}")
    body = ",\n     ".join(fields)
    return f"    /* {' + '.join(op.nodes)} */\n    {{{body}}},"


def model_h(plan: Plan, graph, info: dict) -> str:
    """model.h: the sizes as #defines and the four functions.

    Args:
        plan: cplan.plan's.
        graph: cgraph.trace's.
        info: file_name, file_bytes and sha256 of the .dzip.

    Examples:
        >>> Path("out/c/model.h").write_text(model_h(plan, graph, info))
    """
    shape = "x".join(str(s) for s in graph.input_shape)
    return f"""/* model.h: the network of {info['file_name']}, exported by deepzip export --c. Do not edit: export again.
 *
 *   if (dz_model_init()) puts(dz_model_error());     decodes and packs the weights (once)
 *   dz_predict(x, logits);                           x: DZ_MODEL_INPUT_NUMEL floats ({shape}, C order)
 *
 * RAM: one arena of DZ_MODEL_ARENA_BYTES (static in model.c; define DZ_MODEL_NO_ARENA and call
 * dz_model_init_arena to give your own), plus the stack. Flash: the .dzip and the op list. */
#ifndef DZ_MODEL_H
#define DZ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#define DZ_MODEL_INPUT_NUMEL {graph.numel[graph.input]}
#define DZ_MODEL_OUTPUT_NUMEL {graph.numel[graph.output]}
#define DZ_MODEL_FILE_BYTES {info['file_bytes']}        /* the .dzip, in flash */
#define DZ_MODEL_OPS_BYTES {plan.ops_bytes}        /* the op list and buffer table, in flash */
#define DZ_MODEL_PACKED_BYTES {plan.packed_bytes}      /* weights packed at init: kept entries, codebooks, scales */
#define DZ_MODEL_ACTIVATION_BYTES {plan.activation_bytes}  /* activation buffers, after the packed weights */
#define DZ_MODEL_INIT_BYTES {plan.init_bytes}        /* during init instead: libdzip's state, index, scratch */
#ifndef DZ_MODEL_ARENA_BYTES
#define DZ_MODEL_ARENA_BYTES {plan.arena_bytes}       /* packed + max(activations, init); planned on a 64-bit host */
#endif

#ifdef __cplusplus
extern "C" {{
#endif

/* Decode the weights from the .dzip in flash and pack them into the static arena: 0, or -1
 * with dz_model_error() saying why. */
int dz_model_init(void);
/* The same with the caller's arena (8-byte aligned, at least DZ_MODEL_ARENA_BYTES). */
int dz_model_init_arena(void *arena, size_t bytes);
/* One inference: logits receives DZ_MODEL_OUTPUT_NUMEL floats. Inits first if needed. 0 or -1. */
int dz_predict(const float *x, float *logits);
/* One sentence after a failure, else "". */
const char *dz_model_error(void);
/* The most arena bytes init used (packed weights + libdzip's transient use). */
size_t dz_model_init_peak(void);

#ifdef __cplusplus
}}
#endif
#endif
"""


def model_c(plan: Plan, graph, data: bytes, info: dict) -> str:
    """model.c: the .dzip's bytes, the buffer table, the op records and the functions.

    Args:
        plan: cplan.plan's.
        graph: cgraph.trace's.
        data: the .dzip's bytes.
        info: file_name, file_bytes and sha256 of the .dzip.

    Examples:
        >>> Path("out/c/model.c").write_text(model_c(plan, graph, path.read_bytes(), info))
    """
    bufs = ",\n".join(f"    {{{'DZRT_EXTERNAL' if off == EXTERNAL else off}, {n}}}" for off, n in plan.bufs)
    ops = "\n".join(_record(r) for r in plan.records)
    return f"""/* model.c: {info['file_name']} ({len(data):,} bytes, sha256 {info['sha256'][:16]}…) and its op list, exported by
 * deepzip export --c. Do not edit: export again. The op records are libdzip/runtime/include/dzrt.h's. */
#include "model.h"
#include "dzrt.h"

/* The .dzip itself: libdzip reads it in place (flash), and only during init. */
static const uint8_t dz_model_file[{len(data)}] = {{
{c_bytes(data)}
}};

/* Activation buffers: byte offset in the arena (DZRT_EXTERNAL: the caller's input), floats. Buffers
 * of tensors never live at the same time share bytes. */
static const dzrt_buf bufs[{len(plan.bufs)}] = {{
{bufs}
}};

static const dzrt_op ops[{len(plan.records)}] = {{
{ops}
}};

static const dzrt_model model = {{DZRT_ABI, dz_model_file, {len(data)}u, ops, bufs, {len(plan.records)}, {len(plan.bufs)},
                                 {plan.input}, {plan.output}, {plan.packed_bytes}u, {plan.arena_bytes}u}};

static dzrt rt;

#ifndef DZ_MODEL_NO_ARENA
static uint64_t arena[(DZ_MODEL_ARENA_BYTES + 7) / 8];

int dz_model_init(void) {{ return dz_model_init_arena(arena, sizeof arena); }}
#endif

int dz_model_init_arena(void *mem, size_t bytes) {{ return dzrt_init(&rt, &model, mem, bytes); }}

int dz_predict(const float *x, float *logits) {{
#ifndef DZ_MODEL_NO_ARENA
    if (!rt.ready && dz_model_init()) return -1;
#endif
    return dzrt_run(&rt, x, logits);
}}

const char *dz_model_error(void) {{
    return rt.ready || rt.message[0] ? rt.message : "dz_predict was called before dz_model_init_arena.";
}}

size_t dz_model_init_peak(void) {{ return rt.init_peak; }}
"""


def samples_h(x: np.ndarray, placeholder: bool = False) -> str:
    """samples.h: inputs embedded for a device without a file system (cortex-m/main.c runs them).

    Args:
        x: N samples of the input's shape (float32; finite).
        placeholder: they are zeros standing in for real inputs (said in the file).

    Examples:
        >>> Path("out/c/samples.h").write_text(samples_h(test.x[:10].numpy()))
    """
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    rows = []
    for s in x:
        vals = ", ".join(c_float(v) for v in s)
        rows.append(f"    {{{vals}}}")
    body = ",\n".join(rows)
    what = "one input of zeros, a placeholder (export_c(..., samples=x) embeds real ones)" if placeholder else \
        f"{len(x)} inputs"
    return f"""/* samples.h: {what} for the device build (cortex-m/main.c prints each one's top-1). */
#ifndef DZ_SAMPLES_H
#define DZ_SAMPLES_H
#include "model.h"

#define DZ_SAMPLES {len(x)}
static const float dz_samples[DZ_SAMPLES][DZ_MODEL_INPUT_NUMEL] = {{
{body}
}};
#endif
"""
