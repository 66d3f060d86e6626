/* dzrt: an embedded runtime that runs a .dzip network from its codes, in C99.
 *
 * `deepzip export FILE --c DIR` traces the network once in Python and writes its op list as the
 * C arrays below (model.c); the .dzip itself stays in flash as const bytes. At init the runtime
 * decodes each weight tensor with libdzip and packs it into the arena (the one block of RAM the
 * caller gives it; nothing is ever malloc'd); at run time it computes from the packed codes:
 *
 *   static uint64_t arena[(MODEL_ARENA_BYTES + 7) / 8];
 *   dzrt rt;
 *   if (dzrt_init(&rt, &model, arena, sizeof arena)) puts(dzrt_message(&rt));
 *   dzrt_run(&rt, x, logits);
 *
 * The arena, from offset 0:
 *   [packed weights, model.packed_bytes]  written once by dzrt_init, read by every run
 *   [activations, planned by the export]  buffers reused as their tensors die (bufs[].offset)
 * During dzrt_init the space after the packed weights holds libdzip's header index, its decoder
 * scratch and one vector of floats instead (nothing of it is needed once the weights are packed),
 * so the arena is packed_bytes + max(activations, init transient).
 *
 * A compressed (shared or sparse) weight never becomes a dense matrix: each output row keeps its
 * kept weights as entries (column << code_bits | code - 1) of 1, 2 or 4 bytes, behind a row
 * pointer; the codebook stays one small float table. Batch norm after a conv or linear layer is
 * folded into a per-output scale and shift applied after the accumulation, so codes stay shared.
 * libdzip/runtime/README.md documents the records and the packed layout; the export
 * (src/deepzip/export/cplan.py) computes the same layout in Python and dzrt_init checks it. */
#ifndef DZRT_H
#define DZRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DZRT_ABI 1               /* layout of the records below; model.c records the one it was written for */
#define DZRT_NONE 0xFFFFu        /* no buffer */
#define DZRT_EXTERNAL 0xFFFFFFFFu /* a buffer's offset: the caller's input, read in place */
#define DZRT_MESSAGE_MAX 200
#define DZRT_STATE_BYTES 1536    /* arena bytes init lends libdzip's dz_file and dz_iter (checked at compile time) */

/* The op kinds (enum dzrt_kind: DZRT_CONV = 1, DZRT_LINEAR, ...), pool kinds (DZRT_POOL_*) and
 * weight forms (DZRT_FORM_*, how a layer's weight is packed: README.md, "Packed weights") are
 * generated from src/deepzip/dzip/tables.toml with their names, as are libdzip's lists. */
#include "dz_tables.h"

/* ReLU flags of an op: after the layer's scale and shift, and (a fused pool) after the pool. */
#define DZRT_RELU_BEFORE_POOL 1u
#define DZRT_RELU_AFTER_POOL 2u

typedef struct dzrt_pool {
    uint8_t kind;                 /* DZRT_POOL_* */
    uint8_t count_pad;            /* average pools: padding counts in the divisor (torch's count_include_pad) */
    uint16_t kh, kw, sh, sw, ph, pw;  /* window, stride, padding; unused by adaptive pools */
} dzrt_pool;

/* The weights of a conv, linear or affine op: where they are in the .dzip, how they are packed. */
typedef struct dzrt_layer {
    int32_t weight, bias;         /* tensor indices in the .dzip; -1 = none */
    int32_t bn_weight, bn_bias, bn_mean, bn_var;  /* the folded batch norm; -1 = none (weight, bias: affine=False) */
    float eps;                    /* the batch norm's */
    uint8_t form;                 /* DZRT_FORM_* */
    uint8_t entry_bytes;          /* shared, sparse: bytes per entry, 1, 2 or 4 */
    uint8_t code_bits;            /* shared: low bits of an entry holding code - 1 */
    uint8_t ptr_bytes;            /* shared, sparse: bytes per row pointer, 2 or 4 */
    uint32_t rows, cols;          /* the weight as a matrix: output units x the rest (affine: rows = channels) */
    uint32_t kept;                /* shared, sparse: entries (the kept weights) */
    uint32_t book;                /* shared: codebook entries, K */
    uint32_t offset, bytes;       /* the packed layer's place in the arena */
} dzrt_layer;

/* One step of the network. Shapes are one sample's, channels x height x width (a vector: c
 * features, h = w = 1). The op reads bufs[in] (and bufs[in2]) and writes bufs[out]. */
typedef struct dzrt_op {
    uint8_t kind;                 /* enum dzrt_kind */
    uint8_t relu;                 /* DZRT_RELU_* flags */
    uint16_t in, in2, out;        /* buffer ids; in2: ADD's second input, else DZRT_NONE */
    uint16_t tmp;                 /* CONV with a fused pool: a buffer of one output plane (oh x ow); else DZRT_NONE */
    uint32_t c, h, w;             /* input shape */
    uint32_t oc, oh, ow;          /* the layer's output, before a fused pool */
    uint32_t yc, yh, yw;          /* the op's output (after a fused pool) */
    uint16_t kh, kw, sh, sw, pad_h, pad_w, dh, dw;  /* CONV: kernel, stride, top/left padding, dilation */
    uint32_t groups;              /* CONV */
    uint32_t at;                  /* COPY: first element of out that x goes to */
    dzrt_pool pool;               /* CONV: the fused pool (kind NONE: none); POOL: the pool */
    dzrt_layer layer;             /* CONV, LINEAR, AFFINE */
} dzrt_op;

/* An activation buffer: `numel` float32 at byte `offset` of the arena (DZRT_EXTERNAL: the input).
 * Buffers of tensors that are never live at once share bytes. */
typedef struct dzrt_buf {
    uint32_t offset, numel;
} dzrt_buf;

/* A network, all in flash: the .dzip and the op list. */
typedef struct dzrt_model {
    uint32_t abi;                 /* DZRT_ABI when written */
    const uint8_t *file;          /* the .dzip */
    uint32_t file_size;
    const dzrt_op *ops;
    const dzrt_buf *bufs;
    uint16_t n_ops, n_bufs;
    uint16_t input, output;       /* buffer ids of the network's input and output */
    uint32_t packed_bytes;        /* [0, packed_bytes) of the arena: the packed weights */
    uint32_t arena_bytes;         /* the arena the export planned (on the host that ran it) */
} dzrt_model;

/* The runtime's state (a few hundred bytes; place it anywhere). */
typedef struct dzrt {
    const dzrt_model *m;
    uint8_t *arena;
    size_t arena_size;
    size_t init_peak;             /* after init: the most arena init used (packed + libdzip + scratch + temp) */
    int ready;
    char message[DZRT_MESSAGE_MAX];
} dzrt;

/* Check the op list against the arena and the file, decode every weight with libdzip and pack it
 * into the arena (8-byte aligned, arena_size bytes). Returns 0, or -1 with dzrt_message(rt) one
 * sentence saying why (a libdzip refusal quotes its message). The file is not used afterwards. */
int dzrt_init(dzrt *rt, const dzrt_model *m, void *arena, size_t arena_size);

/* One inference: x holds the input's numel floats (read, never written), y receives the output's.
 * x and y may not overlap the arena. Returns 0, or -1 when init has not succeeded. */
int dzrt_run(dzrt *rt, const float *x, float *y);

/* "" after success, else one sentence. */
const char *dzrt_message(const dzrt *rt);

#ifdef __cplusplus
}
#endif
#endif
