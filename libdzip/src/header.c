/* The header after inflate: UTF-8 and JSON validation, the arena's layout, the stream table.
 *
 * The arena holds, in order: the inflated text (when deflated), then the stream table, the tensor
 * table, the tensors' shapes, the hash of names and a pool for strings and version 1-2 code
 * tables. Every size is measured from the text before anything is carved, so a short arena is
 * refused with the exact figure instead of failing half way. */
#include <stdio.h>

#include "internal.h"

static const char *const stream_fields[] = {"length", "offset", "crc32", "coder", "count", "alphabet", "table"};
enum { F_LENGTH, F_OFFSET, F_CRC, F_CODER, F_COUNT, F_ALPHABET, F_TABLE, F_COUNT_OF };

typedef struct {
    size_t streams, entries, dims, pool, slots;
} layout;

static size_t string_bytes(const char *v) {
    return dz__json_type(v) == DZ_JSON_STRING ? dz__json_str_decode(v, NULL) + 1 : 0;
}

/* What the tables will take: counted on the text, before any of it is parsed into them. */
static void measure(const dz_file *f, const char *streams, const char *tensors, layout *L) {
    static const char *const keys[] = {"name", "alias", "layer", "kind", "role", "shape"};
    const char *v[6];
    dz_json it;
    size_t i, n;
    memset(L, 0, sizeof *L);
    for (it = dz_json_first(dz__at(f, streams)); it.p; it = dz_json_next(it)) {
        L->streams++;
        if (f->version < 3 && dz__json_type(it.p) == DZ_JSON_OBJECT) {
            dz__json_members(it.p, it.end, &stream_fields[F_TABLE], 1, v);
            n = string_bytes(v[0]);
            L->pool += n ? n / 4 * 3 + 3 : 0;
        }
    }
    if (dz__json_type(tensors) == DZ_JSON_ARRAY) {
        for (it = dz_json_first(dz__at(f, tensors)); it.p; it = dz_json_next(it)) {
            L->entries++;
            if (dz__json_type(it.p) != DZ_JSON_OBJECT) continue;
            dz__json_members(it.p, it.end, keys, 6, v);
            for (i = 0; i < 5; i++) L->pool += string_bytes(v[i]);
            if (dz__json_type(v[5]) == DZ_JSON_ARRAY) {
                n = dz_json_size(dz__at(f, v[5]));
                L->dims += n > DZ_MAX_DIMS ? DZ_MAX_DIMS : n;
            }
        }
    }
    for (L->slots = 16; L->slots < 2 * L->entries; L->slots *= 2) {}
}

static int coder_kind(const char *v) {
    static const char *const names[DZ__CODER_COUNT] = {DZ__CODER_NAMES};
    int i;
    for (i = 0; i < DZ__CODER_COUNT; i++) if (v && dz__json_str_eq(v, names[i])) return DZ__RAW + i;
    return DZ__OTHER;
}

static dz_status parse_streams(dz_file *f, const char *streams) {
    const char *end = f->text + f->text_len, *v[F_COUNT_OF];
    int lean = f->version >= 3;
    uint64_t reach = 0, off = 0, len = 0, crc;
    dz_json it;
    size_t i = 0;
    for (it = dz_json_first(dz__at(f, streams)); it.p; it = dz_json_next(it), i++) {
        struct dz__stream *s = &f->streams[i];
        int ok = dz__json_type(it.p) == DZ_JSON_OBJECT;
        if (ok) dz__json_members(it.p, end, stream_fields, F_COUNT_OF, v);
        if (lean) {
            ok = ok && dz__json_is_uint(v[F_LENGTH], end, &len);
            off = reach;
        } else {
            ok = ok && dz__json_is_uint(v[F_OFFSET], end, &off) && dz__json_is_uint(v[F_LENGTH], end, &len) &&
                 dz__json_is_uint(v[F_CRC], end, &crc);
        }
        if (!ok)
            return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: stream %lu lacks a valid %s.", (unsigned long)i,
                            lean ? "length" : "offset, length or crc32");
        reach = dz__sat_add(off, len);
        if (reach > f->payload_len)
            return dz__fail(f, DZ_E_FORMAT, "the file is truncated or corrupt: stream %lu ends at byte %llu of a %lu-byte payload.",
                            (unsigned long)i, (unsigned long long)reach, (unsigned long)f->payload_len);
        s->offset = off;
        s->length = len;
        s->coder = v[F_CODER];
        s->count = v[F_COUNT];
        s->alphabet = v[F_ALPHABET];
        s->table = v[F_TABLE];
        s->crc32 = v[F_CRC];
        s->kind = (uint8_t)coder_kind(v[F_CODER]);
    }
    if (lean && reach != f->payload_len)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: its streams cover %llu bytes of a %lu-byte payload.",
                        (unsigned long long)reach, (unsigned long)f->payload_len);
    return DZ_OK;
}

static dz_status check_text(dz_file *f) {
    const char *why = "";
    size_t bad;
    if (!dz__utf8_valid((const uint8_t *)f->text, f->text_len, &bad))
        return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: UnicodeDecodeError (byte %lu is not UTF-8).",
                        (unsigned long)bad);
    if (!dz__json_validate(f->text, f->text_len, &why, &bad))
        return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: JSONDecodeError (%s at byte %lu).", why,
                        (unsigned long)bad);
    if (dz_json_kind(dz_header(f)) != DZ_JSON_OBJECT)
        return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: it is not a JSON object.");
    return DZ_OK;
}

void *dz__take(dz_file *f, size_t bytes) {
    uint8_t *p = f->pool;
    if (bytes > f->pool_left) return NULL;  /* measure() sized the pool: never happens */
    f->pool += bytes;
    f->pool_left -= bytes;
    return p;
}

/* Carve the tables out of the arena, or say exactly how large it must be. */
static dz_status carve(dz_file *f, uint8_t *arena, size_t arena_size, size_t text_bytes, const layout *L) {
    size_t pad = (size_t)((8 - (((uintptr_t)arena + text_bytes) & 7)) & 7), need, part[4], i;
    uint64_t total = (uint64_t)text_bytes + pad;
    part[0] = L->streams * sizeof(struct dz__stream);
    part[1] = L->entries * sizeof(struct dz__entry);
    part[2] = L->dims * sizeof(uint64_t);
    part[3] = L->slots * sizeof(uint32_t);
    for (i = 0; i < 4; i++) total += dz__align8(part[i]);
    total += L->pool;
    if (total > SIZE_MAX) return dz__fail(f, DZ_E_LIMIT, "the header's tables do not fit this machine's memory.");
    need = (size_t)total;
    if (need > arena_size) {
        f->needed = need;
        return dz__fail(f, DZ_E_ARENA, "the header needs an arena of %lu bytes, not %lu.", (unsigned long)need,
                        (unsigned long)arena_size);
    }
    arena += text_bytes + pad;
    memset(arena, 0, need - text_bytes - pad);
    f->streams = (struct dz__stream *)(void *)arena;
    arena += dz__align8(part[0]);
    f->entries = (struct dz__entry *)(void *)arena;
    arena += dz__align8(part[1]);
    f->dims = (uint64_t *)(void *)arena;
    f->dims_left = L->dims;
    arena += dz__align8(part[2]);
    f->names = (uint32_t *)(void *)arena;
    f->name_slots = L->slots;
    arena += dz__align8(part[3]);
    f->pool = arena;
    f->pool_left = L->pool;
    f->n_streams = L->streams;
    f->n_entries = L->entries;
    f->arena_used = need;
    return DZ_OK;
}

dz_status dz__header(dz_file *f, uint8_t *arena, size_t arena_size, size_t text_bytes) {
    static const char *const keys[] = {"streams", "tensors", "files"};
    const char *v[3];
    uint64_t spent = 0;
    layout L;
    dz_status st;
    size_t i;
    if ((st = check_text(f)) != DZ_OK) return st;
    dz__json_members(dz_header(f).p, f->text + f->text_len, keys, 3, v);
    if (dz__json_type(v[0]) != DZ_JSON_ARRAY)
        return dz__fail(f, DZ_E_FORMAT, "the file has a corrupt header: 'streams' is not a list.");
    measure(f, v[0], v[1], &L);
    if ((st = carve(f, arena, arena_size, text_bytes, &L)) != DZ_OK) return st;
    if ((st = parse_streams(f, v[0])) != DZ_OK) return st;
    if ((st = dz__files(f, v[2])) != DZ_OK) return st;
    if (dz__json_type(v[1]) != DZ_JSON_ARRAY)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: 'tensors' is not a list.");
    if ((st = dz__entries(f, v[1], &spent)) != DZ_OK) return st;
    for (i = 0; i < f->n_entries; i++)
        if (f->entries[i].t.scratch_bytes > f->scratch_max) f->scratch_max = f->entries[i].t.scratch_bytes;
    f->opened = 1;
    f->status = DZ_OK;
    f->message[0] = '\0';
    return DZ_OK;
}
