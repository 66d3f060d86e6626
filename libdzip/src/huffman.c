/* Canonical Huffman streams (encode/huffman.py): code lengths 0-15 in the table, codes assigned in
 * (length, symbol) order, bits MSB-first. A lookup of up to 2^10 entries resolves short codes at
 * once; longer ones fall back to the canonical walk, so scratch stays at most 4 kB + 2 bytes per
 * symbol. Padding bits are not checked (the Python reader does not), trailing bytes are. */
#include <stdio.h>

#include "internal.h"

#define FAST_MAX 10

dz_status dz__huff_check(dz_file *f, struct dz__stream *s, const char *what) {
    const uint8_t *p = s->table_bytes, *end = p + s->table_len;
    uint64_t kraft = 0, v;
    uint32_t i, used = 0;
    unsigned top = 0, fast;
    int bad = 0;
    for (i = 0; i < s->alphabet_n; i++) {
        dz__varint(&p, end, &v);
        if (v > 15) { bad = 1; continue; }
        if (v) { used++; kraft += (uint64_t)1 << (15 - v); if (v > top) top = (unsigned)v; }
    }
    if (bad) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: a Huffman code length must be between 0 and 15.", what);
    if (s->n && !used) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: the Huffman table gives no symbol a code.", what);
    if (kraft > (uint64_t)1 << 15)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: the Huffman code lengths are over-full: their Kraft sum exceeds 1.", what);
    if (s->n / 8 > s->body_len || (s->n / 8 == s->body_len && s->n % 8))
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: a Huffman stream of %lu bytes cannot hold %llu symbols.", what,
                        (unsigned long)s->body_len, (unsigned long long)s->n);
    if (!s->n && s->body_len)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: the Huffman stream has %lu bytes after its last symbol.", what,
                        (unsigned long)s->body_len);
    s->used = used;
    s->top = top;
    fast = top < FAST_MAX ? top : FAST_MAX;
    s->scratch = s->n ? dz__align8((size_t)4 << fast) + dz__align8((size_t)2 * used) : 0;
    return DZ_OK;
}

void dz__huff_begin(dz__huff *h, const struct dz__stream *s, uint8_t **scratch) {
    const uint8_t *p = s->table_bytes, *end = p + s->table_len;
    uint32_t next[16], i, sym, code = 0, l;
    uint64_t v;
    memset(h, 0, sizeof *h);
    h->top = s->top;
    h->fast_bits = s->top < FAST_MAX ? s->top : FAST_MAX;
    h->fast = (uint32_t *)(void *)*scratch;
    *scratch += dz__align8((size_t)4 << h->fast_bits);
    h->symbols = (uint16_t *)(void *)*scratch;
    *scratch += dz__align8((size_t)2 * s->used);
    for (i = 0; i < s->alphabet_n; i++) { dz__varint(&p, end, &v); h->count[v]++; }
    h->count[0] = 0;
    for (l = 1, next[1] = 0; l < 15; l++) next[l + 1] = next[l] + h->count[l];
    for (l = 1; l < 16; l++) h->start[l] = next[l];
    for (p = s->table_bytes, sym = 0; sym < s->alphabet_n; sym++) {
        dz__varint(&p, end, &v);
        if (v) ((uint16_t *)h->symbols)[next[v]++] = (uint16_t)sym;
    }
    memset((uint32_t *)h->fast, 0, (size_t)4 << h->fast_bits);
    for (l = 1; l <= h->top; l++) {
        h->first[l] = (uint16_t)code;
        for (i = 0; i < h->count[l]; i++, code++) {
            uint32_t k, span = l <= h->fast_bits ? 1u << (h->fast_bits - l) : 0;
            for (k = 0; k < span; k++)
                ((uint32_t *)h->fast)[(code << (h->fast_bits - l)) + k] = (uint32_t)h->symbols[h->start[l] + i] << 4 | l;
        }
        code <<= 1;
    }
    h->data = s->body;
    h->len = s->body_len;
    h->nbits = (uint64_t)s->body_len * 8;
}

int dz__huff_symbol(dz__huff *h, uint32_t *sym, const char **why) {
    uint32_t e, l;
    if (h->held < 16) {
        while (h->held <= 56) {
            h->acc = (h->acc << 8) | (h->next < h->len ? h->data[h->next] : 0);
            h->next++;
            h->held += 8;
        }
    }
    e = h->fast[(h->acc >> (h->held - h->fast_bits)) & ((1u << h->fast_bits) - 1)];
    if (e) {
        l = e & 15;
        *sym = e >> 4;
    } else {
        uint32_t window = (uint32_t)(h->acc >> (h->held - h->top)) & ((1u << h->top) - 1);
        for (l = h->fast_bits + 1; l <= h->top; l++) {
            uint32_t c = window >> (h->top - l);
            if (c - h->first[l] < h->count[l] && c >= h->first[l]) { *sym = h->symbols[h->start[l] + c - h->first[l]]; break; }
        }
        if (l > h->top) { *why = "the Huffman stream holds a bit pattern that no code uses"; return 0; }
    }
    h->held -= l;
    h->used += l;
    if (h->used > h->nbits) { *why = "the Huffman stream ends before its symbols do"; return 0; }
    return 1;
}

int dz__huff_end(const dz__huff *h, const char **why) {
    if ((h->used + 7) / 8 != h->len) { *why = "the Huffman stream has bytes after its last symbol"; return 0; }
    return 1;
}
