/* The WebAssembly face of libdzip and dzrt: the few calls dzip.js needs that the C API cannot
 * give a JS caller as it is (structs read field by field, 64-bit positions, a model built from
 * an op list in memory). Nothing here allocates: dzip.js places every buffer in the instance's
 * memory (a bump pointer from __heap_base) and passes its address. */
#include <stdint.h>
#include <string.h>

#include "dzip.h"
#include "dzrt.h"
#include "oplist.h"

#define EXPORT(name) __attribute__((export_name(#name)))

/* dzip.js's view of a tensor (dzw_tensor_info): doubles, so one Float64Array reads them all
 * (every figure below is far under 2^53 for a file that opened in 4 GiB of memory). */
enum {
    DZW_DTYPE, DZW_ENCODING, DZW_POSITIONS, DZW_TARGET, DZW_NDIM, DZW_NUMEL, DZW_DENSE_BYTES,
    DZW_SCRATCH_BYTES, DZW_KEPT_MAX, DZW_BOOK, DZW_NAME, DZW_NAME_LEN, DZW_ALIAS, DZW_ALIAS_LEN,
    DZW_SCALED, DZW_SHAPE, DZW_INFO_LEN = DZW_SHAPE + DZ_MAX_DIMS
};

EXPORT(dzw_file_bytes) size_t dzw_file_bytes(void);
size_t dzw_file_bytes(void) { return sizeof(dz_file); }

EXPORT(dzw_info_len) int dzw_info_len(void);
int dzw_info_len(void) { return DZW_INFO_LEN; }

/* Tensor `index`'s fields into out[DZW_INFO_LEN]; 0, or -1 past the end. */
EXPORT(dzw_tensor_info) int dzw_tensor_info(const dz_file *f, size_t index, double *out);
int dzw_tensor_info(const dz_file *f, size_t index, double *out) {
    const dz_tensor *t = dz_tensor_at(f, index);
    unsigned d;
    if (!t) return -1;
    out[DZW_DTYPE] = t->dtype;
    out[DZW_ENCODING] = t->encoding;
    out[DZW_POSITIONS] = t->positions;
    out[DZW_TARGET] = (double)t->target;
    out[DZW_NDIM] = t->ndim;
    out[DZW_NUMEL] = (double)t->numel;
    out[DZW_DENSE_BYTES] = (double)t->dense_bytes;
    out[DZW_SCRATCH_BYTES] = (double)t->scratch_bytes;
    out[DZW_KEPT_MAX] = (double)t->kept_max;
    out[DZW_BOOK] = t->codebook_size;
    out[DZW_NAME] = (double)(uintptr_t)t->name.ptr;
    out[DZW_NAME_LEN] = (double)t->name.len;
    out[DZW_ALIAS] = (double)(uintptr_t)t->alias.ptr;
    out[DZW_ALIAS_LEN] = (double)t->alias.len;
    out[DZW_SCALED] = t->scaled;
    for (d = 0; d < DZ_MAX_DIMS; d++) out[DZW_SHAPE + d] = d < t->ndim ? (double)t->shape[d] : 0.0;
    return 0;
}

/* The header's JSON text (arch, meta, ...): its address, and its length into *len. */
EXPORT(dzw_header_text) const char *dzw_header_text(const dz_file *f, size_t *len);
const char *dzw_header_text(const dz_file *f, size_t *len) {
    dz_json h = dz_header(f);
    *len = h.p ? (size_t)(h.end - h.p) : 0;
    return h.p;
}

/* A shared tensor's kept weights as JS wants them: 32-bit positions (a typed array of 64-bit
 * ones would be BigInts) and 16-bit codes. `positions` holds cap 64-bit slots; the first
 * *count 32-bit words are the positions afterwards (each copied down, never overtaking an
 * unread slot). The tensor has fewer than 2^32 elements (dzip.js checks numel first). */
EXPORT(dzw_decode_shared) dz_status dzw_decode_shared(dz_file *f, size_t index, uint8_t *positions, uint16_t *codes,
                                                      size_t cap, size_t *count, void *scratch, size_t scratch_bytes);
dz_status dzw_decode_shared(dz_file *f, size_t index, uint8_t *positions, uint16_t *codes, size_t cap, size_t *count,
                            void *scratch, size_t scratch_bytes) {
    size_t i;
    dz_status s = dz_decode_kept(f, index, (uint64_t *)(void *)positions, codes, NULL, cap, count, scratch, scratch_bytes);
    if (s != DZ_OK) return s;
    for (i = 0; i < *count; i++) {
        uint64_t p;
        uint32_t q;
        memcpy(&p, positions + 8 * i, 8);
        q = (uint32_t)p;
        memcpy(positions + 4 * i, &q, 4);
    }
    return DZ_OK;
}

/* ---- the runtime, from an op list in memory (oplist.h) */

typedef struct dzw_model {
    dzrt rt;
    dzrt_model m;
    char message[DZRT_MESSAGE_MAX];
} dzw_model;

EXPORT(dzw_model_bytes) size_t dzw_model_bytes(void);
size_t dzw_model_bytes(void) { return sizeof(dzw_model); }

static uint32_t u32(const uint8_t *p) { return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* zlib's crc32, bit by bit: it runs once per model, over a file that libdzip checks again. */
static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    unsigned k;
    while (n--) {
        c ^= *p++;
        for (k = 0; k < 8; k++) c = c >> 1 ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static int refuse(dzw_model *w, const char *why) {
    size_t n = strlen(why);
    memcpy(w->message, why, n + 1);
    return -1;
}

/* Build the model from `ops` (an oplist.h blob, 4-byte aligned, kept alive by the caller with
 * `file` and `arena`) and run dzrt_init on it. 0, or -1 with dzw_model_message(w). */
EXPORT(dzw_model_init) int dzw_model_init(dzw_model *w, const uint8_t *file, size_t file_size, const uint8_t *ops,
                                          size_t ops_size, void *arena, size_t arena_size);
int dzw_model_init(dzw_model *w, const uint8_t *file, size_t file_size, const uint8_t *ops, size_t ops_size,
                   void *arena, size_t arena_size) {
    dzrt_model *m = &w->m;
    memset(w, 0, sizeof *w);
    if (ops_size < DZW_OPLIST_HEAD || memcmp(ops, "DZRT", 4) || (uintptr_t)ops % 4)
        return refuse(w, "The op list is not one written by deepzip export --web.");
    m->abi = u32(ops + 4);
    m->n_ops = u16(ops + 8);
    m->n_bufs = u16(ops + 10);
    m->input = u16(ops + 12);
    m->output = u16(ops + 14);
    m->packed_bytes = u32(ops + 16);
    m->arena_bytes = u32(ops + 20);
    if (ops_size != DZW_OPLIST_HEAD + (size_t)m->n_bufs * sizeof(dzrt_buf) + (size_t)m->n_ops * sizeof(dzrt_op))
        return refuse(w, "The op list's length does not match its counts of ops and buffers.");
    if (u32(ops + 24) != file_size || u32(ops + 28) != crc32(file, file_size))
        return refuse(w, "The op list was planned for another .dzip file (its size or crc32 differs).");
    m->file = file;
    m->file_size = (uint32_t)file_size;
    m->bufs = (const dzrt_buf *)(const void *)(ops + DZW_OPLIST_HEAD);
    m->ops = (const dzrt_op *)(const void *)(ops + DZW_OPLIST_HEAD + (size_t)m->n_bufs * sizeof(dzrt_buf));
    if (dzrt_init(&w->rt, m, arena, arena_size)) return refuse(w, dzrt_message(&w->rt));
    return 0;
}

EXPORT(dzw_model_message) const char *dzw_model_message(const dzw_model *w);
const char *dzw_model_message(const dzw_model *w) { return w->message; }

/* The input's and the output's element counts (after dzw_model_init). */
EXPORT(dzw_model_numel) uint32_t dzw_model_numel(const dzw_model *w, int output);
uint32_t dzw_model_numel(const dzw_model *w, int output) { return w->m.bufs[output ? w->m.output : w->m.input].numel; }

EXPORT(dzw_model_init_peak) size_t dzw_model_init_peak(const dzw_model *w);
size_t dzw_model_init_peak(const dzw_model *w) { return w->rt.init_peak; }

EXPORT(dzw_run) int dzw_run(dzw_model *w, const float *x, float *y);
int dzw_run(dzw_model *w, const float *x, float *y) { return dzrt_run(&w->rt, x, y); }
