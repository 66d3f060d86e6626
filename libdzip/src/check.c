/* One tensor entry, checked as decode.TensorDecoder.decode checks it, up to the point where a
 * stream's symbols would be decoded: dtype, encoding, element budget, which streams it reads and
 * their coders, lengths of raw streams, live bitmaps, code tables. What it learns (codebook size,
 * live counts, scratch) goes into the public dz_tensor. */
#include <stdio.h>

#include "internal.h"

typedef struct {
    dz_file *f;
    struct dz__entry *e;
    const char *const *v;
    uint64_t *spent;
    uint64_t scratch;
    char name[80];   /* 'fc1.weight', for messages */
    char what[112];
} ctx;

static const char *const dtype_names[DZ_DTYPE_COUNT] = {DZ_DTYPE_NAMES};
static const unsigned char dtype_sizes[DZ_DTYPE_COUNT] = {DZ_DTYPE_SIZES};
/* The names an entry's "encoding" and "positions" fields may hold: alias is a key of its own, and
 * positions "none" is what a raw entry has without saying so. */
static const char *const encoding_names[DZ_ENCODING_COUNT] = {DZ_ENCODING_NAMES};
static const char *const position_names[DZ_POSITIONS_COUNT] = {DZ_POSITIONS_NAMES};

size_t dz_itemsize(dz_dtype d) { return (unsigned)d < DZ_DTYPE_COUNT ? dtype_sizes[d] : 0; }
const char *dz_dtype_name(dz_dtype d) { return (unsigned)d < DZ_DTYPE_COUNT ? dtype_names[d] : "?"; }
const char *dz_encoding_name(dz_encoding e) { return (unsigned)e < DZ_ENCODING_COUNT ? encoding_names[e] : "?"; }

static int pick(const char *v, const char *const *names, int n) {
    int i;
    for (i = 0; i < n; i++) if (dz__json_str_eq(v, names[i])) return i;
    return -1;
}

/* A JSON value as Python's repr would roughly show it, for messages. */
static const char *show(const ctx *c, const char *v, char *buf, size_t cap) {
    size_t n;
    if (!v) return "None";
    n = (size_t)(dz__json_skip(v, c->f->text + c->f->text_len) - v);
    if (n >= cap) n = cap - 1;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return buf;
}

static const char *what(ctx *c, const char *prefix) {
    snprintf(c->what, sizeof c->what, "%s%s", prefix, c->name);
    return c->what;
}

static dz_status field(ctx *c, int key, uint32_t *si) {
    *si = c->e->s[key];
    if (*si == DZ__NONE)
        return dz__fail(c->f, DZ_E_FORMAT, "the file has a corrupt header: a tensor refers to stream None, but there are %lu.",
                        (unsigned long)c->f->n_streams);
    c->e->t.stream_bytes += (size_t)c->f->streams[*si].length;
    return DZ_OK;
}

static dz_status raw_stream(ctx *c, int key, uint32_t *si, const char *about) {
    dz_status st = field(c, key, si);
    if (st != DZ_OK) return st;
    if (c->f->streams[*si].kind != DZ__RAW)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: %s should be a raw stream.", about);
    if (!dz__crc_ok(c->f, *si))
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: stream %lu fails its checksum.", (unsigned long)*si);
    return DZ_OK;
}

static dz_status coded(ctx *c, int key, uint32_t alphabet, const char *about) {
    uint32_t si;
    dz_status st = field(c, key, &si);
    if (st == DZ_OK) st = dz__coded(c->f, si, alphabet, about, c->spent);
    if (st == DZ_OK) c->scratch += c->f->streams[si].scratch;
    return st;
}

static dz_status context(ctx *c, int key, uint64_t rows, uint64_t cols, uint32_t alphabet, const char *about) {
    dz_file *f = c->f;
    struct dz__stream *s;
    uint32_t si;
    dz_status st = field(c, key, &si);
    if (st != DZ_OK) return st;
    s = &f->streams[si];
    if (f->version < 3)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s is context coded, which a version %u file cannot be.", about, f->version);
    if (s->kind != DZ__CONTEXT && s->kind != DZ__CONTEXT_LEFT)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has coder %.40s where its positions say context.", about,
                        s->coder ? s->coder : "None");
    if (s->kind == DZ__CONTEXT_LEFT && f->version < 4)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has coder 'context-left', which a version %u file cannot.",
                        about, f->version);
    if (!dz__crc_ok(f, si)) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: stream %lu fails its checksum.", (unsigned long)si);
    if ((rows == 0 || cols == 0) && s->length)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: a context-coded stream of no weights has %llu bytes.", about,
                        (unsigned long long)s->length);
    c->e->grid_rows = rows;
    c->e->grid_cols = cols;
    c->e->left_codes = s->kind == DZ__CONTEXT_LEFT;
    if (rows && cols) c->scratch += dz__context_scratch(rows, cols, alphabet, c->e->left_codes);
    return DZ_OK;
}

/* Bitmap of `size` bits, padded with zeros; returns the bits set through *live. */
static dz_status bitmap(ctx *c, int key, uint64_t size, uint64_t *live) {
    const char *nm = key == DZ__ROWS ? "rows" : "cols";
    const uint8_t *p;
    uint64_t need = size / 8 + (size % 8 != 0), i;
    uint32_t si;
    char about[120];
    dz_status st;
    snprintf(about, sizeof about, "the live %s of %s", nm, c->name);
    if ((st = raw_stream(c, key, &si, about)) != DZ_OK) return st;
    /* size saturates at 2^64 - 1 for a shape like [0, 2^47, 2^47]: no stream is that long */
    if (c->f->streams[si].length != need || size == UINT64_MAX)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: the live %s bitmap of %s is %llu bytes, not %llu.", nm, c->name,
                        (unsigned long long)c->f->streams[si].length, (unsigned long long)need);
    p = dz__stream_bytes(c->f, si);
    if (size % 8 && (p[need - 1] & (0xffu >> (size % 8))))
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: the live %s bitmap of %s has bits set past its end.", nm, c->name);
    for (*live = 0, i = 0; i < need; i++) {
        unsigned b = p[i];
        for (; b; b &= b - 1) ++*live;
    }
    return DZ_OK;
}

static dz_status live(ctx *c) {
    dz_tensor *t = &c->e->t;
    uint64_t cols;
    dz_status st;
    if (!c->v[K_STREAM + DZ__ROWS] && !c->v[K_STREAM + DZ__COLS]) return DZ_OK;
    if (t->ndim < 2)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has live bitmaps but %u dimensions.", c->name, t->ndim);
    cols = dz__row_length(t);
    if ((st = bitmap(c, DZ__ROWS, t->shape[0], &t->live_rows)) != DZ_OK) return st;
    if ((st = bitmap(c, DZ__COLS, cols, &t->live_cols)) != DZ_OK) return st;
    t->live = 1;
    c->e->size = t->live_rows * t->live_cols;
    return DZ_OK;
}

static dz_status split(ctx *c) {
    dz_tensor *t = &c->e->t;
    char buf[40];
    uint64_t n = t->numel, bits = 23 * n, need = (bits + 7) / 8;
    const uint8_t *p;
    uint32_t si;
    dz_status st;
    if (!(dz__json_str_eq(c->v[K_SPLIT], "float32") && t->dtype == DZ_FLOAT32 && !c->v[K_STORED]))
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s cannot be split as %s.", c->name,
                        show(c, c->v[K_SPLIT], buf, sizeof buf));
    if ((st = context(c, DZ__HIGH, n, 1, 513, what(c, "the signs and exponents of "))) != DZ_OK) return st;
    if ((st = raw_stream(c, DZ__LOW, &si, what(c, "the mantissas of "))) != DZ_OK) return st;
    if (c->f->streams[si].length != need)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s: a split float tensor has %llu mantissa bytes for %llu values.",
                        c->name, (unsigned long long)c->f->streams[si].length, (unsigned long long)n);
    p = dz__stream_bytes(c->f, si);
    if (bits % 8 && (p[need - 1] & ((1u << (8 - bits % 8)) - 1)))
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s: a split float tensor has bits set in the padding of its mantissas.",
                        c->name);
    t->split = 1;
    return DZ_OK;
}

static dz_status raw(ctx *c) {
    dz_tensor *t = &c->e->t;
    const char *stored = c->v[K_STORED];
    char buf[40];
    uint32_t si;
    size_t size;
    dz_status st;
    if (c->v[K_SPLIT]) return split(c);
    if ((st = raw_stream(c, DZ__DATA, &si, what(c, "tensor "))) != DZ_OK) return st;
    if (!stored || dz__json_str_eq(stored, dtype_names[t->dtype])) size = dtype_sizes[t->dtype];
    else if (t->dtype == DZ_FLOAT32 && dz__json_str_eq(stored, "float16")) { size = 2; t->half = 1; }
    else return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s cannot be stored as %s.", c->name, show(c, stored, buf, sizeof buf));
    if (c->f->streams[si].length != t->numel * size)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has %llu bytes for %llu elements.", c->name,
                        (unsigned long long)c->f->streams[si].length, (unsigned long long)t->numel);
    c->e->stored_size = size;
    return DZ_OK;
}

static dz_status index_bits(ctx *c) {
    uint64_t b;
    char buf[40];
    if (!dz__json_is_uint(c->v[K_INDEX_BITS], c->f->text + c->f->text_len, &b) || b < 1 || b > 16)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has invalid index_bits %s.", c->name,
                        show(c, c->v[K_INDEX_BITS], buf, sizeof buf));
    c->e->t.index_bits = (unsigned)b;
    return DZ_OK;
}

/* "stored" of a codebook or of sparse values: float32 (the default) or float16. */
static dz_status stored_float(ctx *c, const char *of) {
    const char *v = c->v[K_STORED];
    char buf[40];
    if (!v || dz__json_str_eq(v, "float32")) c->e->stored_size = 4;
    else if (dz__json_str_eq(v, "float16")) { c->e->stored_size = 2; c->e->t.half = 1; }
    else return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: %s of %s cannot be stored as %s.", of, c->name, show(c, v, buf, sizeof buf));
    return DZ_OK;
}

/* A shared entry's scale per row (version 5): a raw stream of shape[0] float16 or float32 values. */
static dz_status scales(ctx *c) {
    dz_tensor *t = &c->e->t;
    uint32_t si;
    uint64_t len, rows;
    dz_status st;
    if (c->e->s[DZ__SCALES] == DZ__NONE) return DZ_OK;
    if (c->f->version < 5)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has scaled rows, which a version %u file cannot have.",
                        c->name, c->f->version);
    if (t->ndim < 1)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has scaled rows but no rows.", c->name);
    if ((st = raw_stream(c, DZ__SCALES, &si, what(c, "the scales of "))) != DZ_OK) return st;
    len = c->f->streams[si].length;
    rows = t->shape[0];
    if (len != 2 * rows && len != 4 * rows)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: the scales of %s are %llu bytes, not %llu float16 or float32 values.",
                        c->name, (unsigned long long)len, (unsigned long long)rows);
    t->scaled = len == 2 * rows ? 2 : 4;
    return DZ_OK;
}

static dz_status shared(ctx *c) {
    struct dz__entry *e = c->e;
    dz_tensor *t = &e->t;
    uint64_t len, rows, cols;
    uint32_t si, alphabet;
    char buf[40];
    int kind;
    dz_status st;
    if ((st = raw_stream(c, DZ__CODEBOOK, &si, what(c, "the codebook of "))) != DZ_OK) return st;
    if ((st = stored_float(c, "the codebook")) != DZ_OK) return st;
    len = c->f->streams[si].length;
    if (len >= e->stored_size * DZ__MAX_ALPHABET || len % e->stored_size)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: the codebook of %s is %llu bytes, not a whole number of %s values.",
                        c->name, (unsigned long long)len, e->stored_size == 4 ? "float32" : "float16");
    t->codebook_size = (uint32_t)(len / e->stored_size);
    alphabet = t->codebook_size + 1;
    if ((st = scales(c)) != DZ_OK) return st;
    c->scratch += dz__align8((size_t)t->codebook_size * 4);
    if ((kind = pick(c->v[K_POSITIONS], position_names + DZ_POS_DENSE, DZ_POSITIONS_COUNT - DZ_POS_DENSE)) < 0)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has unknown positions %s.", c->name,
                        show(c, c->v[K_POSITIONS], buf, sizeof buf));
    t->positions = (dz_positions)(DZ_POS_DENSE + kind);
    if (t->positions == DZ_POS_CONTEXT) {
        rows = t->live ? t->live_rows : (t->ndim < 2 ? 1 : t->shape[0]);
        cols = t->live ? t->live_cols : (t->ndim < 2 ? t->numel : dz__row_length(t));
        t->kept_max = e->size;
        return context(c, DZ__VALUES, rows, cols, alphabet, what(c, "the codes of "));
    }
    if (t->positions == DZ_POS_DENSE) {
        if ((st = coded(c, DZ__VALUES, alphabet, what(c, "the codes of "))) != DZ_OK) return st;
        if (c->f->streams[e->s[DZ__VALUES]].n != e->size)
            return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has %llu codes for %llu weights.", c->name,
                            (unsigned long long)c->f->streams[e->s[DZ__VALUES]].n, (unsigned long long)e->size);
        t->kept_max = e->size;
        return DZ_OK;
    }
    if ((st = index_bits(c)) != DZ_OK) return st;
    if ((st = coded(c, DZ__GAPS, 1u << t->index_bits, what(c, "the gaps of "))) != DZ_OK) return st;
    if ((st = coded(c, DZ__VALUES, alphabet, what(c, "the codes of "))) != DZ_OK) return st;
    t->kept_max = c->f->streams[e->s[DZ__GAPS]].n;
    if (t->kept_max != c->f->streams[e->s[DZ__VALUES]].n)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has %llu gaps for %llu values.", c->name,
                        (unsigned long long)t->kept_max, (unsigned long long)c->f->streams[e->s[DZ__VALUES]].n);
    return DZ_OK;
}

static dz_status sparse(ctx *c) {
    struct dz__entry *e = c->e;
    uint32_t si;
    uint64_t n;
    dz_status st;
    e->t.positions = DZ_POS_SPARSE;
    if ((st = index_bits(c)) != DZ_OK) return st;
    if ((st = coded(c, DZ__GAPS, 1u << e->t.index_bits, what(c, "the gaps of "))) != DZ_OK) return st;
    if ((st = raw_stream(c, DZ__VALUES, &si, what(c, "the values of "))) != DZ_OK) return st;
    if ((st = stored_float(c, "tensor")) != DZ_OK) return st;
    n = c->f->streams[e->s[DZ__GAPS]].n;
    if (c->f->streams[si].length != n * e->stored_size)
        return dz__fail(c->f, DZ_E_FORMAT, "the file is corrupt: tensor %s has %llu value bytes for %llu entries.", c->name,
                        (unsigned long long)c->f->streams[si].length, (unsigned long long)n);
    e->t.kept_max = n;
    return DZ_OK;
}

uint64_t dz__row_length(const dz_tensor *t) {
    uint64_t n = 1;
    unsigned i;
    for (i = 1; i < t->ndim; i++) n = dz__sat_mul(n, t->shape[i]);
    for (i = 1; i < t->ndim; i++) if (t->shape[i] == 0) n = 0;
    return n;
}

static size_t clamp(uint64_t n) { return n > SIZE_MAX ? SIZE_MAX : (size_t)n; }

dz_status dz__check_entry(dz_file *f, struct dz__entry *e, const char *const *v, uint64_t *spent) {
    dz_tensor *t = &e->t;
    const char *end = f->text + f->text_len;
    uint64_t nz;
    char buf[40];
    int d, enc;
    dz_status st;
    ctx c;
    memset(&c, 0, sizeof c);
    c.f = f;
    c.e = e;
    c.v = v;
    c.spent = spent;
    dz__quote(t->name.ptr, t->name.len, c.name, sizeof c.name);
    if ((d = pick(v[K_DTYPE], dtype_names, DZ_DTYPE_COUNT)) < 0)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor %s has unknown dtype %s.", c.name, show(&c, v[K_DTYPE], buf, sizeof buf));
    if ((enc = pick(v[K_ENCODING], encoding_names, DZ_ALIAS)) < 0)  /* alias: not an encoding field's value */
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor %s has unknown encoding %s.", c.name,
                        show(&c, v[K_ENCODING], buf, sizeof buf));
    t->dtype = (dz_dtype)d;
    t->encoding = (dz_encoding)enc;
    if (enc != DZ_RAW && v[K_NONZERO] && dz__json_type(v[K_NONZERO]) != DZ_JSON_NULL) {
        if (!dz__json_is_uint(v[K_NONZERO], end, &nz) || nz >= (uint64_t)1 << 62)
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor %s has an invalid nonzero count.", c.name);
        t->has_nonzero = 1;
        t->nonzero = nz;
    }
    if ((st = dz__spend(f, spent, t->numel, what(&c, "tensor "))) != DZ_OK) return st;
    e->size = t->numel;
    if (enc == DZ_RAW) {
        st = raw(&c);
    } else if (t->dtype != DZ_FLOAT32) {
        st = dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s tensor %s must be float32.", encoding_names[enc], c.name);
    } else if ((st = live(&c)) == DZ_OK) {
        st = enc == DZ_SHARED ? shared(&c) : sparse(&c);
    }
    if (st != DZ_OK) return st;
    t->dense_bytes = clamp(dz__sat_mul(t->numel, t->dtype <= DZ_BFLOAT16 ? 4 : dtype_sizes[t->dtype]));
    t->scratch_bytes = clamp(c.scratch);
    return DZ_OK;
}
