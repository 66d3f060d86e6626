/* The kept weights of a shared or sparse tensor, one at a time and in position order, straight
 * from its streams: codes per element (dense), a context-coded matrix, or gaps + codes / values.
 * Live layouts are mapped back to whole-tensor positions by walking their bitmaps, so no index
 * table is kept. Each stream's end checks (trailing bytes, ANS state) run when the last entry
 * has been read, where Python's decoder runs them. */
#include <stdio.h>

#include "internal.h"

enum { IT_DENSE = 1, IT_CONTEXT, IT_GAPS_CODES, IT_GAPS_VALUES };

void dz__symbols_begin(dz__symbols *src, const struct dz__stream *s, uint8_t **scratch) {
    memset(src, 0, sizeof *src);
    src->coder = s->kind;
    src->remaining = s->n;
    if (!s->n) return;
    if (s->kind == DZ__HUFFMAN) dz__huff_begin(&src->u.huff, s, scratch);
    else dz__ans_begin(&src->u.ans, s, scratch);
}

int dz__symbol(dz__symbols *src, uint32_t *sym, const char **why) {
    src->remaining--;
    return src->coder == DZ__HUFFMAN ? dz__huff_symbol(&src->u.huff, sym, why) : dz__ans_symbol(&src->u.ans, sym, why);
}

int dz__symbols_end(const dz__symbols *src, const char **why) {
    if (src->coder == DZ__HUFFMAN) return src->u.huff.len == 0 || dz__huff_end(&src->u.huff, why);
    return src->u.ans.cdf == NULL || dz__ans_end(&src->u.ans, why);
}

float dz__bits_float(uint32_t bits) {
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* IEEE binary16 to binary32, exactly (NaN payloads kept, as numpy's conversion keeps them). */
float dz__half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 31, man = h & 1023;
    if (exp == 31) return dz__bits_float(sign | 0x7F800000u | man << 13);
    if (exp == 0) {
        if (!man) return dz__bits_float(sign);
        exp = 113;  /* a subnormal half is a normal float: shift its mantissa up to the hidden bit */
        while (!(man & 1024)) { man <<= 1; exp--; }
        return dz__bits_float(sign | exp << 23 | (man & 1023) << 13);
    }
    return dz__bits_float(sign | (exp + 112) << 23 | man << 13);
}

dz_status dz__entry_for(dz_file *f, size_t index, const struct dz__entry **e) {
    if (!f || !f->opened || index >= f->n_entries) {
        if (f) return dz__fail(f, DZ_E_ARG, "there is no tensor %lu in this file.", (unsigned long)index);
        return DZ_E_ARG;
    }
    *e = &f->entries[f->entries[index].t.target];
    return DZ_OK;
}

dz_status dz__scratch(dz_file *f, const struct dz__entry *e, void *scratch, size_t bytes, uint8_t **at) {
    size_t pad = (size_t)((8 - ((uintptr_t)scratch & 7)) & 7), need = e->t.scratch_bytes;
    if (need == SIZE_MAX) return dz__fail(f, DZ_E_LIMIT, "tensor '%s' needs more scratch than this machine can address.", e->t.name.ptr);
    if ((need && !scratch) || need + pad > bytes || (need + pad < need)) {
        f->needed = need + pad;
        return dz__fail(f, DZ_E_SCRATCH, "tensor '%.60s' needs %lu bytes of scratch, not %lu.", e->t.name.ptr,
                        (unsigned long)(need + pad), (unsigned long)bytes);
    }
    *at = scratch ? (uint8_t *)scratch + pad : NULL;
    return DZ_OK;
}

static void cursor_reset(dz__cursor *c) {
    c->ord = 0;
    for (c->at = 0; c->at < c->nbits && !(c->bits[c->at / 8] & (0x80 >> (c->at % 8))); c->at++) {}
}

static void cursor_next(dz__cursor *c) {
    c->ord++;
    for (c->at++; c->at < c->nbits; c->at++) {
        if (c->at % 8 == 0) while (c->at + 8 <= c->nbits && c->bits[c->at / 8] == 0) c->at += 8;
        if (c->at < c->nbits && (c->bits[c->at / 8] & (0x80 >> (c->at % 8)))) break;
    }
}

static void cursor_seek(dz__cursor *c, uint64_t ord) {
    if (ord < c->ord) cursor_reset(c);
    while (c->ord < ord) cursor_next(c);
}

/* Position `sub` of the stored matrix within the whole tensor. */
static uint64_t position(dz_iter *it, uint64_t sub) {
    uint64_t r, k;
    if (!it->e->t.live) return sub;
    r = sub / it->live_cols;
    k = sub % it->live_cols;
    if (r != it->rows.ord) { cursor_seek(&it->rows, r); cursor_reset(&it->cols); }
    cursor_seek(&it->cols, k);
    return it->rows.at * it->row_len + it->cols.at;
}

static void live_begin(dz_iter *it) {
    const struct dz__entry *e = it->e;
    it->row_len = dz__row_length(&e->t);
    it->live_cols = e->t.live_cols;
    it->rows.bits = dz__stream_bytes(it->f, e->s[DZ__ROWS]);
    it->rows.nbits = e->t.shape[0];
    it->cols.bits = dz__stream_bytes(it->f, e->s[DZ__COLS]);
    it->cols.nbits = it->row_len;
    cursor_reset(&it->rows);
    cursor_reset(&it->cols);
}

static void load_codebook(dz_iter *it, uint8_t **scratch) {
    const struct dz__entry *e = it->e;
    const uint8_t *p = dz__stream_bytes(it->f, e->s[DZ__CODEBOOK]);
    float *book = (float *)(void *)*scratch;
    uint32_t k;
    *scratch += dz__align8((size_t)e->t.codebook_size * 4);
    for (k = 0; k < e->t.codebook_size; k++)
        book[k] = e->stored_size == 2 ? dz__half_to_float(dz__rd16(p + 2 * k)) : dz__bits_float(dz__rd32(p + 4 * k));
    it->codebook = book;
    if (e->t.scaled) {
        it->scales = dz__stream_bytes(it->f, e->s[DZ__SCALES]);
        it->scale_row = dz__row_length(&e->t);
    }
}

/* The value of code `code` at flat position `pos`: codebook[code - 1], times its row's scale
 * (version 5), as float32 products exactly as numpy's. */
static float shared_value(const dz_iter *it, uint32_t code, uint64_t pos) {
    float v, s;
    uint64_t row;
    if (!code) return 0.0f;
    v = it->codebook[code - 1];
    if (!it->scales) return v;
    row = it->scale_row ? pos / it->scale_row : 0;
    s = it->e->t.scaled == 2 ? dz__half_to_float(dz__rd16(it->scales + 2 * row)) : dz__bits_float(dz__rd32(it->scales + 4 * row));
    return v * s;
}

dz_status dz_iter_begin(dz_iter *it, dz_file *f, size_t index, void *scratch, size_t scratch_bytes) {
    const struct dz__entry *e = NULL;
    uint8_t *at;
    dz_status st;
    if (!it) return f ? dz__fail(f, DZ_E_ARG, "dz_iter_begin was given no iterator.") : DZ_E_ARG;
    if ((st = dz__entry_for(f, index, &e)) != DZ_OK) return st;
    if (e->t.encoding == DZ_RAW)
        return dz__fail(f, DZ_E_ARG, "tensor '%.60s' is raw: it has no kept entries (read it with dz_decode_dense).", e->t.name.ptr);
    if ((st = dz__scratch(f, e, scratch, scratch_bytes, &at)) != DZ_OK) return st;
    memset(it, 0, sizeof *it);
    it->f = f;
    it->e = e;
    if (e->t.live) live_begin(it);
    if (e->t.encoding == DZ_SHARED) load_codebook(it, &at);
    if (e->t.positions == DZ_POS_CONTEXT) {
        const struct dz__stream *s = &f->streams[e->s[DZ__VALUES]];
        it->kind = IT_CONTEXT;
        it->total = e->size;
        if (e->size) dz__context_begin(&it->ctx, dz__stream_bytes(f, e->s[DZ__VALUES]), (size_t)s->length, e->grid_rows,
                                       e->grid_cols, e->t.codebook_size + 1, e->left_codes, &at);
    } else if (e->t.positions == DZ_POS_DENSE) {
        it->kind = IT_DENSE;
        it->total = e->size;
        dz__symbols_begin(&it->codes, &f->streams[e->s[DZ__VALUES]], &at);
    } else {
        it->kind = e->t.encoding == DZ_SHARED ? IT_GAPS_CODES : IT_GAPS_VALUES;
        it->total = f->streams[e->s[DZ__GAPS]].n;
        dz__symbols_begin(&it->gaps, &f->streams[e->s[DZ__GAPS]], &at);
        if (it->kind == IT_GAPS_CODES) dz__symbols_begin(&it->codes, &f->streams[e->s[DZ__VALUES]], &at);
        else it->values = dz__stream_bytes(f, e->s[DZ__VALUES]);
    }
    return DZ_OK;
}

static int fail(dz_iter *it, const char *what, const char *why) {
    dz__fail(it->f, DZ_E_FORMAT, "the file is corrupt: %s '%.60s': %s.", what, it->e->t.name.ptr, why);
    it->status = -1;
    return -1;
}

static int finish(dz_iter *it) {
    const char *why = "";
    uint64_t left;
    if (it->kind == IT_CONTEXT && it->total && (left = dz__context_left_over(&it->ctx)) != 0) {
        char buf[96];
        snprintf(buf, sizeof buf, "a context-coded stream has %llu bytes left after its last weight", (unsigned long long)left);
        return fail(it, "the codes of", buf);
    }
    if ((it->kind == IT_GAPS_CODES || it->kind == IT_GAPS_VALUES) && !dz__symbols_end(&it->gaps, &why))
        return fail(it, "the gaps of", why);
    if ((it->kind == IT_DENSE || it->kind == IT_GAPS_CODES) && !dz__symbols_end(&it->codes, &why))
        return fail(it, "the codes of", why);
    it->status = 1;
    return 0;
}

/* The next entry of the stored matrix, kept or not: 1, or -1 on an error. */
static int step(dz_iter *it, uint64_t *sub, uint32_t *code, float *value) {
    const char *why = "";
    uint32_t gap;
    *value = 0.0f;
    if (it->kind == IT_DENSE || it->kind == IT_CONTEXT) {
        *sub = it->done;
        if (it->kind == IT_CONTEXT && it->run_at == it->run_n) {
            size_t n = it->total - it->done < 32 ? (size_t)(it->total - it->done) : 32;
            size_t got = dz__context_codes(&it->ctx, it->run, n);
            it->run_n = (unsigned)(got < n ? got + 1 : got);  /* a code past K ends the run */
            it->run_at = 0;
        }
        if (it->kind == IT_DENSE ? !dz__symbol(&it->codes, code, &why)
                                 : (*code = it->run[it->run_at++]) > it->ctx.kept_max) {
            char buf[96];
            if (it->kind == IT_CONTEXT)
                snprintf(buf, sizeof buf, "a context-coded stream decodes to a code outside its alphabet of %lu at weight %llu",
                         (unsigned long)it->e->t.codebook_size + 1, (unsigned long long)it->done);
            return fail(it, "the codes of", it->kind == IT_CONTEXT ? buf : why);
        }
    } else {
        if (!dz__symbol(&it->gaps, &gap, &why)) return fail(it, "the gaps of", why);
        it->sub += (uint64_t)gap + 1;
        if (it->sub > it->e->size) {
            char buf[64];
            snprintf(buf, sizeof buf, "they run past its %llu elements", (unsigned long long)it->e->size);
            return fail(it, "the gaps of", buf);
        }
        *sub = it->sub - 1;
        if (it->kind == IT_GAPS_CODES) {
            if (!dz__symbol(&it->codes, code, &why)) return fail(it, "the codes of", why);
        } else {
            *code = 0;
            *value = it->e->stored_size == 2 ? dz__half_to_float(dz__rd16(it->values + 2 * it->done))
                                             : dz__bits_float(dz__rd32(it->values + 4 * it->done));
        }
    }
    it->done++;
    return 1;
}

/* Every element of a tensor coded one symbol per element (no live layout), straight into out:
 * no zero fill and no scatter. 0 at the end, -1 on an error, as dz_iter_next. */
int dz__iter_dense(dz_iter *it, float *out) {
    uint64_t sub;
    uint32_t code;
    float value;
    if (it->e->t.live || (it->kind != IT_DENSE && it->kind != IT_CONTEXT)) return -2;
    while (it->kind == IT_CONTEXT && it->done < it->total) {
        uint32_t codes[256];
        size_t n = it->total - it->done < 256 ? (size_t)(it->total - it->done) : 256, got, i;
        got = dz__context_codes(&it->ctx, codes, n);
        for (i = 0; i < got; i++) out[it->done + i] = shared_value(it, codes[i], it->done + i);
        it->done += got;
        if (got < n) {
            char buf[96];
            snprintf(buf, sizeof buf, "a context-coded stream decodes to a code outside its alphabet of %lu at weight %llu",
                     (unsigned long)it->e->t.codebook_size + 1, (unsigned long long)it->done);
            return fail(it, "the codes of", buf);
        }
    }
    while (it->done < it->total) {
        if (step(it, &sub, &code, &value) < 0) return -1;
        out[sub] = shared_value(it, code, sub);
    }
    return finish(it);
}

int dz_iter_next(dz_iter *it, dz_kept *out) {
    uint64_t sub;
    uint32_t code;
    float value;
    if (!it || !it->f) return -1;
    if (it->status) return it->status > 0 ? 0 : -1;
    while (it->done < it->total) {
        if (step(it, &sub, &code, &value) < 0) return -1;
        if (it->kind == IT_GAPS_VALUES ? value == 0.0f : code == 0) continue;  /* fillers; -0.0 too */
        out->position = position(it, sub);
        out->code = code;
        out->value = code ? shared_value(it, code, out->position) : value;
        return 1;
    }
    return finish(it);
}
