/* Code tables and the checks a coded stream passes before a symbol of it is decoded: where its
 * table lives (LEB128 at the head of the stream from version 3, base64 in the header before),
 * its declared alphabet and count, and the per-stream crc32 of versions 1 and 2. */
#include <stdio.h>

#include "internal.h"

int dz__varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    unsigned shift = 0;
    const uint8_t *q = *p;
    while (q < end) {
        uint8_t b = *q++;
        x |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
        if (shift > 63) return -1;  /* Python's bound: a count below 2^63 */
        if (!(b & 0x80)) { *v = x; *p = q; return 1; }
    }
    return 0;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* binascii.a2b_base64(strict_mode=True) of CPython 3.11, which b64decode(validate=True) is. */
int dz__base64_json(const char *v, uint8_t *out, size_t cap, size_t *out_len, const char **why) {
    const char *p = v + 1;
    unsigned char u[4];
    unsigned quad = 0, pads = 0, left = 0;
    int padding = 0, first = 1;
    size_t n = 0, k, i;
    while ((k = dz__json_unit(&p, u)) != 0) {
        for (i = 0; i < k; i++, first = 0) {
            int x;
            if (u[i] == '=') {
                if (first) { *why = "Leading padding not allowed"; return 0; }
                padding = 1;
                if (quad >= 2 && quad + ++pads >= 4) {
                    if (i + 1 < k || *p != '"') { *why = "Excess data after padding"; return 0; }
                    *out_len = n;
                    return 1;
                }
                continue;
            }
            if ((x = b64_value(u[i])) < 0) { *why = "Only base64 data is allowed"; return 0; }
            if (padding) { *why = "Discontinuous padding not allowed"; return 0; }
            if (quad && n == cap) { *why = "more bytes than the header's own size allows"; return 0; }
            pads = 0;
            switch (quad) {
            case 0: left = (unsigned)x; break;
            case 1: out[n++] = (uint8_t)((left << 2) | ((unsigned)x >> 4)); left = (unsigned)x & 15; break;
            case 2: out[n++] = (uint8_t)((left << 4) | ((unsigned)x >> 2)); left = (unsigned)x & 3; break;
            default: out[n++] = (uint8_t)((left << 6) | (unsigned)x); break;
            }
            quad = (quad + 1) & 3;
        }
    }
    if (quad) { *why = quad == 1 ? "a number of data characters 1 more than a multiple of 4" : "Incorrect padding"; return 0; }
    *out_len = n;
    return 1;
}

int dz__crc_ok(const dz_file *f, uint32_t si) {
    const struct dz__stream *s = &f->streams[si];
    uint32_t crc;
    dz__num n;
    if (!s->crc32) return 1;
    crc = dz__crc32(0, dz__stream_bytes(f, si), (size_t)s->length);
    /* Python compares with ==: an int, a float of the same value, or a bool (True == 1). */
    switch (dz__json_type(s->crc32)) {
    case DZ_JSON_TRUE: return crc == 1;
    case DZ_JSON_FALSE: return crc == 0;
    case DZ_JSON_NUMBER:
        dz__json_num(s->crc32, f->text + f->text_len, &n);
        if (n.is_int) return !n.huge && n.u == crc && (!n.neg || crc == 0);
        return n.d == (double)crc;
    default: return 0;
    }
}

const uint8_t *dz__stream_bytes(const dz_file *f, uint32_t si) {
    return f->payload + (size_t)f->streams[si].offset;
}

/* A version 1-2 table: base64 in the header, every varint of it, at most 65,536 of them. */
static dz_status header_table(dz_file *f, struct dz__stream *s, const char *what) {
    const char *why = "";
    const uint8_t *p, *end;
    uint8_t *buf;
    size_t len = 0;
    uint64_t v, count = 0;
    int rc;
    if (dz__json_type(s->table) != DZ_JSON_STRING)
        return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s is not a packed integer table.", what);
    buf = (uint8_t *)dz__take(f, 0);
    if (!dz__base64_json(s->table, buf, f->pool_left, &len, &why))
        return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s is not valid base64 (%s).", what, why);
    dz__take(f, len);
    for (p = buf, end = buf + len; p < end; count++) {
        if ((rc = dz__varint(&p, end, &v)) < 0)
            return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s holds a value too large to be a count.", what);
        if (rc == 0)
            return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s ends in the middle of a number.", what);
        if (count == DZ__MAX_ALPHABET)
            return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s has more than 65536 entries.", what);
    }
    if (count != s->alphabet_n)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has a code table that is not a list of %lu "
                        "non-negative integers.", what, (unsigned long)s->alphabet_n);
    s->table_bytes = buf;
    s->table_len = len;
    s->body = dz__stream_bytes(f, (uint32_t)(s - f->streams));
    s->body_len = (size_t)s->length;
    return DZ_OK;
}

/* A version 3+ table: exactly `alphabet` varints at the head of the stream. */
static dz_status stream_table(dz_file *f, struct dz__stream *s, const char *what) {
    const uint8_t *start = dz__stream_bytes(f, (uint32_t)(s - f->streams)), *p = start, *end = start + s->length;
    uint64_t v;
    uint32_t i;
    for (i = 0; i < s->alphabet_n; i++) {
        int rc = dz__varint(&p, end, &v);
        if (rc < 0)
            return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s holds a value too large to be a count.", what);
        if (rc == 0)
            return dz__fail(f, DZ_E_FORMAT, "the file's code table of %s ends before its %lu entries.", what,
                            (unsigned long)s->alphabet_n);
    }
    s->table_bytes = start;
    s->table_len = (size_t)(p - start);
    s->body = p;
    s->body_len = (size_t)(end - p);
    return DZ_OK;
}

dz_status dz__spend(dz_file *f, uint64_t *spent, uint64_t elements, const char *what) {
    uint64_t budget = (uint64_t)DZ__ELEMENTS_PER_BYTE * f->size + 65536;
    *spent = dz__sat_add(*spent, elements);
    if (*spent > budget)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s claims more elements than a file of %lu bytes can hold.",
                        what, (unsigned long)f->size);
    return DZ_OK;
}

dz_status dz__coded(dz_file *f, uint32_t si, uint32_t alphabet, const char *what, uint64_t *spent) {
    struct dz__stream *s = &f->streams[si];
    const char *end = f->text + f->text_len;
    uint64_t a, n;
    dz_status st;
    if (s->kind != DZ__HUFFMAN && s->kind != DZ__ANS)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has unknown coder %.40s.", what,
                        s->coder ? s->coder : "None");
    if (!dz__json_is_uint(s->alphabet, end, &a) || a != alphabet)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has alphabet %.20s, expected %lu.", what,
                        s->alphabet ? s->alphabet : "None", (unsigned long)alphabet);
    if (!dz__json_is_uint(s->count, end, &n))
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s has no valid symbol count.", what);
    if ((st = dz__spend(f, spent, n, what)) != DZ_OK) return st;
    if (!dz__crc_ok(f, si)) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: stream %lu fails its checksum.", (unsigned long)si);
    s->alphabet_n = alphabet;
    s->n = n;
    st = f->version >= 3 ? stream_table(f, s, what) : header_table(f, s, what);
    if (st != DZ_OK) return st;
    return s->kind == DZ__HUFFMAN ? dz__huff_check(f, s, what) : dz__ans_check(f, s, what);
}
