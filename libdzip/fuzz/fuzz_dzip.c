/* libFuzzer target: any bytes through dz_open, then every decoding call on every tensor.
 *
 * Each input runs twice: as it is, and with its trailing crc32 rewritten to match, since almost
 * any mutation breaks the checksum and would otherwise never reach the header or the decoders.
 * (Seeds with an uncompressed header, flags 0, let mutations reach the JSON as text.) Buffers
 * are allocated at exactly the sizes the library asks for, so AddressSanitizer catches a read or
 * write one byte past any of them; sizes are capped so a valid giant file stays fast. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dzip.h"

#define CAP ((size_t)64 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk_json(dz_json v, int depth) {
    dz_json it;
    uint64_t u;
    int64_t i;
    double d;
    char buf[16];
    if (depth > 8) return;
    dz_json_uint(v, &u);
    dz_json_int(v, &i);
    dz_json_number(v, &d);
    dz_json_string(v, buf, sizeof buf);
    for (it = dz_json_first(v); it.p; it = dz_json_next(it)) {
        walk_json(it, depth + 1);
        if (dz_json_kind(v) == DZ_JSON_OBJECT) walk_json(dz_json_value(it), depth + 1);
    }
}

static void tensor(dz_file *f, size_t i, void *scratch, size_t sb) {
    const dz_tensor *t = dz_tensor_at(f, i);
    const uint8_t *raw;
    size_t n, len;
    dz_iter it;
    dz_kept k;
    if (t->dense_bytes <= CAP) {
        void *out = malloc(t->dense_bytes ? t->dense_bytes : 1);
        dz_decode_dense(f, i, out, t->dense_bytes, scratch, sb);
        free(out);
    }
    dz_raw_bytes(f, i, &raw, &len);
    if (t->encoding == DZ_SHARED) {
        float *book = malloc(4 * (size_t)t->codebook_size + 1);
        dz_codebook(f, i, book, t->codebook_size);
        free(book);
    }
    if (t->kept_max <= CAP / 16) {
        size_t cap = (size_t)t->kept_max;
        uint64_t *pos = malloc(8 * cap + 1);
        uint16_t *codes = malloc(2 * cap + 1);
        float *values = malloc(4 * cap + 1);
        dz_decode_kept(f, i, pos, codes, values, cap, &n, scratch, sb);
        free(pos);
        free(codes);
        free(values);
    }
    if (dz_iter_begin(&it, f, i, scratch, sb) == DZ_OK)
        while (dz_iter_next(&it, &k) > 0) {}
}

/* A carried file (version 6): its name and its bytes, into buffers of exactly the sizes asked for. */
static void carried(dz_file *f, size_t i) {
    char name[DZ_FILE_NAME_MAX + 1];
    uint64_t length = 0;
    uint8_t *out;
    if (dz_file_info(f, i, name, sizeof name, &length) != DZ_OK || length > CAP) return;
    out = malloc(length ? (size_t)length : 1);
    dz_file_read(f, i, length ? out : NULL, (size_t)length);
    free(out);
}

uint32_t dz__crc32(uint32_t crc, const uint8_t *p, size_t n);  /* the library's own */

static void run(const uint8_t *data, size_t size) {
    void *arena = NULL, *scratch;
    size_t need = 0, i, sb;
    dz_file f;
    dz_status st;
    int tries;
    for (tries = 0; tries < 3; tries++) {
        st = dz_open(&f, data, size, arena, need);
        if (st != DZ_E_ARENA || dz_needed(&f) > CAP) break;
        free(arena);
        need = dz_needed(&f);
        arena = malloc(need);
    }
    if (st == DZ_OK) {
        size_t idx;
        walk_json(dz_header(&f), 0);
        for (i = 0; i < dz_tensor_count(&f); i++) {
            const dz_tensor *t = dz_tensor_at(&f, i);
            dz_find(&f, t->name.ptr, t->name.len, &idx);
        }
        sb = dz_scratch_max(&f);
        if (sb <= CAP) {
            scratch = malloc(sb ? sb : 1);
            if (dz_verify(&f, scratch, sb) == DZ_OK)
                for (i = 0; i < dz_tensor_count(&f); i++) tensor(&f, i, scratch, sb);
            free(scratch);
        }
        for (i = 0; i < dz_file_count(&f); i++) carried(&f, i);
    }
    free(arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *sealed;
    uint32_t crc;
    run(data, size);
    if (size < 20) return 0;
    sealed = malloc(size);
    memcpy(sealed, data, size);
    crc = dz__crc32(0, sealed, size - 4);
    sealed[size - 4] = (uint8_t)crc;
    sealed[size - 3] = (uint8_t)(crc >> 8);
    sealed[size - 2] = (uint8_t)(crc >> 16);
    sealed[size - 1] = (uint8_t)(crc >> 24);
    run(sealed, size);
    free(sealed);
    return 0;
}
