/* The tensor list, checked as read_tensors checks it: first the shape of every entry and the
 * rule that each stream belongs to exactly one tensor field (assemble._check_entries), then each
 * entry in order (aliases against the names before them, the rest by check.c). */
#include <stdio.h>

#include "internal.h"

const char *const dz__stream_keys[DZ__KEYS] = {DZ__STREAM_KEY_NAMES};
const char *const dz__entry_keys[K_COUNT] = {
    "name", "alias", "encoding", "dtype", "shape", "role", "layer", "kind", "nonzero", "stored", "split",
    "positions", "index_bits", "data", "codebook", "values", "gaps", "rows", "cols", "high", "low", "scales"};

const char *dz__quote(const char *s, size_t len, char *buf, size_t cap) {
    size_t i, n = 0, keep = cap > 8 ? cap - 8 : 0;
    buf[n++] = '\'';
    for (i = 0; i < len && n < keep; i++) buf[n++] = (unsigned char)s[i] < 32 ? '?' : s[i];
    if (i < len) { memcpy(buf + n, "...", 3); n += 3; }
    buf[n++] = '\'';
    buf[n] = '\0';
    return buf;
}

static dz_str pooled(dz_file *f, const char *v) {
    dz_str s;
    char *buf;
    s.ptr = NULL;
    s.len = 0;
    if (dz__json_type(v) != DZ_JSON_STRING) return s;
    s.len = dz__json_str_decode(v, NULL);
    buf = (char *)dz__take(f, s.len + 1);
    dz__json_str_decode(v, buf);
    s.ptr = buf;
    return s;
}

/* A list of at most 8 integers below 2^48, as the reader's shape rule says; stored on success. */
static int shape(dz_file *f, struct dz__entry *e, const char *v) {
    const char *end = f->text + f->text_len;
    uint64_t d[DZ_MAX_DIMS], numel = 1;
    unsigned n = 0, i;
    dz_json it;
    if (dz__json_type(v) != DZ_JSON_ARRAY) return 0;
    for (it = dz_json_first(dz__at(f, v)); it.p; it = dz_json_next(it)) {
        if (n == DZ_MAX_DIMS || !dz__json_is_uint(it.p, end, &d[n]) || d[n] >= DZ__MAX_DIM) return 0;
        n++;
    }
    e->t.ndim = n;
    e->t.shape = f->dims;
    for (i = 0; i < n; i++) {
        f->dims[i] = d[i];
        numel = dz__sat_mul(numel, d[i]);
    }
    for (i = 0; i < n; i++) if (d[i] == 0) numel = 0;
    f->dims += n;
    f->dims_left -= n;
    e->t.numel = numel;
    return 1;
}

static dz_status check_shapes(dz_file *f, const char *tensors) {
    const char *v[K_COUNT];
    char q[80];
    dz_json it;
    size_t i = 0;
    for (it = dz_json_first(dz__at(f, tensors)); it.p; it = dz_json_next(it), i++) {
        struct dz__entry *e = &f->entries[i];
        int obj = dz__json_type(it.p) == DZ_JSON_OBJECT, alias;
        e->obj = it.p;
        if (obj) dz__json_members(it.p, it.end, dz__entry_keys, K_COUNT, v);
        alias = obj && v[K_ALIAS];
        if (alias && !(dz__json_type(v[K_NAME]) == DZ_JSON_STRING && dz__json_type(v[K_ALIAS]) == DZ_JSON_STRING))
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor entry %lu lacks a valid name or alias.", (unsigned long)i);
        if (!alias && !(obj && dz__json_type(v[K_NAME]) == DZ_JSON_STRING &&
                        dz__json_type(v[K_ENCODING]) == DZ_JSON_STRING && dz__json_type(v[K_DTYPE]) == DZ_JSON_STRING))
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor entry %lu lacks a valid name or encoding or dtype.",
                            (unsigned long)i);
        e->t.name = pooled(f, v[K_NAME]);
        if (alias) {
            e->t.alias = pooled(f, v[K_ALIAS]);
            e->t.encoding = DZ_ALIAS;
        } else if (!shape(f, e, v[K_SHAPE])) {
            return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor %s has an invalid shape.",
                            dz__quote(e->t.name.ptr, e->t.name.len, q, sizeof q));
        }
    }
    return DZ_OK;
}

/* Every stream named by exactly one field of one (non-alias) entry, as integers. */
static dz_status check_uses(dz_file *f) {
    const char *end = f->text + f->text_len, *v[DZ__KEYS];
    size_t i, k, uses = 0;
    int bad = 0;
    uint64_t si;
    for (i = 0; i < f->n_entries; i++) {
        struct dz__entry *e = &f->entries[i];
        for (k = 0; k < DZ__KEYS; k++) e->s[k] = DZ__NONE;
        if (e->t.encoding == DZ_ALIAS) continue;
        dz__json_members(e->obj, end, dz__stream_keys, DZ__KEYS, v);
        for (k = 0; k < DZ__KEYS; k++) {
            if (!v[k]) continue;
            uses++;
            if (!dz__json_is_uint(v[k], end, &si) || si >= f->n_streams || f->streams[si].named) { bad = 1; continue; }
            f->streams[si].named = 1;
            e->s[k] = (uint32_t)si;
        }
    }
    if (dz__file_streams(f, &uses)) bad = 1;
    if (bad || uses != f->n_streams)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: its tensors%s do not use each of its %lu streams exactly once.",
                        f->n_files ? " and files" : "", (unsigned long)f->n_streams);
    return DZ_OK;
}

static uint32_t *slot(const dz_file *f, const char *name, size_t len) {
    uint64_t h = 1469598103934665603ULL;
    size_t i, mask = f->name_slots - 1;
    for (i = 0; i < len; i++) h = (h ^ (uint8_t)name[i]) * 1099511628211ULL;
    for (i = (size_t)h & mask; f->names[i]; i = (i + 1) & mask) {
        const dz_str *n = &f->entries[f->names[i] - 1].t.name;
        if (n->len == len && memcmp(n->ptr, name, len) == 0) break;
    }
    return &f->names[i];
}

int dz_find(const dz_file *f, const char *name, size_t len, size_t *index) {
    uint32_t *s;
    if (!f->names || !name) return 0;
    s = slot(f, name, len);
    if (!*s) return 0;
    if (index) *index = *s - 1;
    return 1;
}

static dz_status resolve_alias(dz_file *f, struct dz__entry *e, size_t i) {
    uint32_t *s = slot(f, e->t.alias.ptr, e->t.alias.len);
    dz_tensor keep = e->t;
    if (!*s) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: tensor entry %lu aliases an unknown tensor.", (unsigned long)i);
    e->t = f->entries[f->entries[*s - 1].t.target].t;
    e->t.name = keep.name;
    e->t.alias = keep.alias;
    e->t.encoding = DZ_ALIAS;
    e->t.stream_bytes = 0;
    return DZ_OK;
}

dz_status dz__entries(dz_file *f, const char *tensors, uint64_t *spent) {
    const char *v[K_COUNT];
    dz_status st;
    size_t i;
    if ((st = check_shapes(f, tensors)) != DZ_OK) return st;
    if ((st = check_uses(f)) != DZ_OK) return st;
    for (i = 0; i < f->n_entries; i++) {
        struct dz__entry *e = &f->entries[i];
        uint32_t *s;
        e->t.target = i;
        if (e->t.encoding == DZ_ALIAS) {
            st = resolve_alias(f, e, i);
        } else {
            dz__json_members(e->obj, f->text + f->text_len, dz__entry_keys, K_COUNT, v);
            e->t.layer = pooled(f, v[K_LAYER]);
            e->t.kind = pooled(f, v[K_KIND]);
            e->t.role = pooled(f, v[K_ROLE]);
            st = dz__check_entry(f, e, v, spent);
        }
        if (st != DZ_OK) return st;
        s = slot(f, e->t.name.ptr, e->t.name.len);
        *s = (uint32_t)(i + 1);
    }
    return DZ_OK;
}

const dz_tensor *dz_tensor_at(const dz_file *f, size_t index) {
    return f && f->opened && index < f->n_entries ? &f->entries[index].t : NULL;
}
