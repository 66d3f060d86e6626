/* Whole tensors and the calls built on the iterator: dense output, the raw bytes of raw
 * entries, codebooks, kept lists into caller arrays, visitors, counting and whole-file checks. */
#include <stdio.h>

#include "internal.h"

static dz_status not_of_kind(dz_file *f, const struct dz__entry *e, const char *need) {
    return dz__fail(f, DZ_E_ARG, "tensor '%.60s' is %s, not %s.", e->t.name.ptr, dz_encoding_name(e->t.encoding), need);
}

/* Split float32: signs and exponents from the context stream, mantissas 23 bits each, MSB first.
 * out NULL: decode and check only. */
static dz_status split(dz_file *f, const struct dz__entry *e, float *out, uint8_t *scratch) {
    const uint8_t *low = dz__stream_bytes(f, e->s[DZ__LOW]);
    const struct dz__stream *hs = &f->streams[e->s[DZ__HIGH]];
    uint64_t i, bitpos = 0, left;
    dz__context c;
    if (!e->t.numel) return DZ_OK;
    dz__context_begin(&c, dz__stream_bytes(f, e->s[DZ__HIGH]), (size_t)hs->length, e->t.numel, 1, 513, e->left_codes, &scratch);
    for (i = 0; i < e->t.numel; i++) {
        uint32_t code, m = 0;
        unsigned k;
        if (!dz__context_next(&c, &code))
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: the signs and exponents of '%.60s': a context-coded stream "
                            "decodes to a code outside its alphabet of 513 at weight %llu.", e->t.name.ptr, (unsigned long long)i);
        if (code == 0)
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor '%.60s': a split float tensor has a sign-and-exponent "
                            "code outside 1 ... 512.", e->t.name.ptr);
        for (k = 0; k < 23; k++, bitpos++) m = m << 1 | ((low[bitpos / 8] >> (7 - bitpos % 8)) & 1);
        if (out) out[i] = dz__bits_float((code - 1) << 23 | m);
    }
    if ((left = dz__context_left_over(&c)) != 0)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: the signs and exponents of '%.60s': a context-coded stream has "
                        "%llu bytes left after its last weight.", e->t.name.ptr, (unsigned long long)left);
    return DZ_OK;
}

static float element(const uint8_t *p, dz_dtype stored) {
    switch (stored) {
    case DZ_FLOAT64: {
        uint64_t b = dz__rd64(p);
        double d;
        memcpy(&d, &b, 8);
        return (float)d;
    }
    case DZ_FLOAT16: return dz__half_to_float(dz__rd16(p));
    case DZ_BFLOAT16: return dz__bits_float((uint32_t)dz__rd16(p) << 16);
    default: return dz__bits_float(dz__rd32(p));
    }
}

static dz_status raw(dz_file *f, const struct dz__entry *e, void *out, uint8_t *scratch) {
    const uint8_t *p;
    uint64_t i;
    float *o = (float *)out;
    if (e->t.split) return split(f, e, o, scratch);
    p = dz__stream_bytes(f, e->s[DZ__DATA]);
    if (e->t.dtype > DZ_BFLOAT16) {
        memcpy(out, p, (size_t)f->streams[e->s[DZ__DATA]].length);
        return DZ_OK;
    }
    for (i = 0; i < e->t.numel; i++, p += e->stored_size) o[i] = element(p, e->t.half ? DZ_FLOAT16 : e->t.dtype);
    return DZ_OK;
}

/* The one walk over a tensor's kept entries (dz_visit, dz_count_kept, dz_decode_kept and the
 * scattered dz_decode_dense all go through it): each goes to visit(ctx, ...) until it returns
 * nonzero; a stream that fails to decode is DZ_E_FORMAT with the iterator's message. */
static dz_status walk(dz_file *f, size_t index, void *scratch, size_t scratch_bytes, dz_visitor visit, void *ctx) {
    dz_status st;
    dz_iter it;
    dz_kept k;
    int rc;
    if ((st = dz_iter_begin(&it, f, index, scratch, scratch_bytes)) != DZ_OK) return st;
    while ((rc = dz_iter_next(&it, &k)) > 0)
        if (visit(ctx, k.position, k.code, k.value)) return DZ_OK;
    return rc < 0 ? DZ_E_FORMAT : DZ_OK;
}

static int count_one(void *ctx, uint64_t position, uint32_t code, float value) {
    (void)position, (void)code, (void)value;
    ++*(uint64_t *)ctx;
    return 0;
}

struct kept_out {
    uint64_t *positions;
    uint16_t *codes;
    float *values;
    size_t cap;
    uint64_t n;
};

static int keep_one(void *ctx, uint64_t position, uint32_t code, float value) {
    struct kept_out *o = (struct kept_out *)ctx;
    if (o->n < o->cap) {
        if (o->positions) o->positions[o->n] = position;
        if (o->codes) o->codes[o->n] = (uint16_t)code;
        if (o->values) o->values[o->n] = value;
    }
    o->n++;
    return 0;
}

static int scatter_one(void *ctx, uint64_t position, uint32_t code, float value) {
    (void)code;
    ((float *)ctx)[position] = value;
    return 0;
}

dz_status dz_decode_dense(dz_file *f, size_t index, void *out, size_t out_bytes, void *scratch, size_t scratch_bytes) {
    const struct dz__entry *e = NULL;
    uint8_t *at;
    dz_status st;
    dz_iter it;
    int rc;
    if ((st = dz__entry_for(f, index, &e)) != DZ_OK) return st;
    if (e->t.dense_bytes == SIZE_MAX) return dz__fail(f, DZ_E_LIMIT, "tensor '%.60s' is larger than this machine can address.", e->t.name.ptr);
    if (out_bytes < e->t.dense_bytes || (!out && e->t.dense_bytes)) {
        f->needed = e->t.dense_bytes;
        return dz__fail(f, DZ_E_OUTPUT, "tensor '%.60s' needs %lu bytes of output, not %lu.", e->t.name.ptr,
                        (unsigned long)e->t.dense_bytes, (unsigned long)out_bytes);
    }
    if (((uintptr_t)out & 3) && e->t.dtype <= DZ_BFLOAT16)
        return dz__fail(f, DZ_E_ARG, "dz_decode_dense needs float-aligned output for tensor '%.60s'.", e->t.name.ptr);
    if ((st = dz__scratch(f, e, scratch, scratch_bytes, &at)) != DZ_OK) return st;
    if (e->t.encoding == DZ_RAW) return raw(f, e, out, at);
    if ((st = dz_iter_begin(&it, f, index, scratch, scratch_bytes)) != DZ_OK) return st;
    if ((rc = dz__iter_dense(&it, (float *)out)) != -2) return rc < 0 ? DZ_E_FORMAT : DZ_OK;
    memset(out, 0, e->t.dense_bytes);  /* a layout the dense fast path does not take: the kept entries, scattered */
    return walk(f, index, scratch, scratch_bytes, scatter_one, out);
}

dz_status dz_raw_bytes(dz_file *f, size_t index, const uint8_t **bytes, size_t *len) {
    const struct dz__entry *e = NULL;
    dz_status st;
    if ((st = dz__entry_for(f, index, &e)) != DZ_OK) return st;
    if (e->t.encoding != DZ_RAW || e->t.split || e->t.half) return not_of_kind(f, e, "a raw entry stored as its own dtype");
    *bytes = dz__stream_bytes(f, e->s[DZ__DATA]);
    *len = (size_t)f->streams[e->s[DZ__DATA]].length;
    return DZ_OK;
}

dz_status dz_codebook(dz_file *f, size_t index, float *out, size_t cap) {
    const struct dz__entry *e = NULL;
    const uint8_t *p;
    uint32_t k;
    dz_status st;
    if ((st = dz__entry_for(f, index, &e)) != DZ_OK) return st;
    if (e->t.encoding != DZ_SHARED) return not_of_kind(f, e, "shared");
    if (cap < e->t.codebook_size || (!out && e->t.codebook_size)) {
        f->needed = e->t.codebook_size;
        return dz__fail(f, DZ_E_OUTPUT, "the codebook of '%.60s' has %lu values, more than %lu.", e->t.name.ptr,
                        (unsigned long)e->t.codebook_size, (unsigned long)cap);
    }
    p = dz__stream_bytes(f, e->s[DZ__CODEBOOK]);
    for (k = 0; k < e->t.codebook_size; k++)
        out[k] = e->stored_size == 2 ? dz__half_to_float(dz__rd16(p + 2 * k)) : dz__bits_float(dz__rd32(p + 4 * k));
    return DZ_OK;
}

dz_status dz_decode_kept(dz_file *f, size_t index, uint64_t *positions, uint16_t *codes, float *values, size_t cap,
                         size_t *count, void *scratch, size_t scratch_bytes) {
    struct kept_out o = {NULL, NULL, NULL, 0, 0};
    dz_status st;
    o.positions = positions, o.codes = codes, o.values = values, o.cap = cap;
    if ((st = walk(f, index, scratch, scratch_bytes, keep_one, &o)) != DZ_OK) return st;
    if (count) *count = o.n > SIZE_MAX ? SIZE_MAX : (size_t)o.n;
    if (o.n > cap) {
        f->needed = o.n > SIZE_MAX ? SIZE_MAX : (size_t)o.n;
        return dz__fail(f, DZ_E_OUTPUT, "tensor '%.60s' keeps %llu entries, more than %lu.",
                        f->entries[f->entries[index].t.target].t.name.ptr, (unsigned long long)o.n, (unsigned long)cap);
    }
    return DZ_OK;
}

dz_status dz_visit(dz_file *f, size_t index, void *scratch, size_t scratch_bytes, dz_visitor visit, void *ctx) {
    if (!visit) return dz__fail(f, DZ_E_ARG, "dz_visit was given no visitor.");
    return walk(f, index, scratch, scratch_bytes, visit, ctx);
}

dz_status dz_count_kept(dz_file *f, size_t index, void *scratch, size_t scratch_bytes, uint64_t *count) {
    uint64_t n = 0;
    dz_status st = walk(f, index, scratch, scratch_bytes, count_one, &n);
    if (st == DZ_OK && count) *count = n;
    return st;
}

dz_status dz_verify(dz_file *f, void *scratch, size_t scratch_bytes) {
    size_t i;
    dz_status st = DZ_OK;
    if (!f || !f->opened) return f ? dz__fail(f, DZ_E_ARG, "dz_verify needs an open file.") : DZ_E_ARG;
    for (i = 0; i < f->n_entries && st == DZ_OK; i++) {
        const struct dz__entry *e = &f->entries[i];
        uint8_t *at;
        if (e->t.target != i) continue;  /* aliases: their tensor is checked once */
        if (e->t.encoding != DZ_RAW) st = dz_count_kept(f, i, scratch, scratch_bytes, NULL);
        else if (e->t.split && (st = dz__scratch(f, e, scratch, scratch_bytes, &at)) == DZ_OK) st = split(f, e, NULL, at);
    }
    if (st == DZ_OK) { f->status = DZ_OK; f->message[0] = '\0'; }
    return st;
}
