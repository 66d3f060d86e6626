/* constriction's stack ANS (AnsCoder: 32-bit words, 64-bit state) under the categorical model
 * Categorical(counts / counts.sum(), perfect=False) builds, reproduced to the bit:
 *
 *   S      = numpy's pairwise sum of the counts as float64 (order matters once S passes 2^53)
 *   p[i]   = count[i] / S, with one zero appended to a one-symbol table
 *   norm   = p[0] + p[1] + ... left to right;  scale = (2^24 - n) / norm
 *   cdf[i] = trunc(scale * (p[0] + ... + p[i-1])) + i,  cdf[n] = 2^24
 *
 * The decoder pops words from the stream's end (a stack), so symbols come out in order. A table
 * of the symbol at each 2^14-wide slice of the 2^24 quantiles narrows the search for a symbol to
 * the few symbols that slice meets (a binary search among them, so no table makes it slow). */
#include <stdio.h>

#include "internal.h"

#define LUT_BITS 10

typedef struct {
    const uint8_t *p, *end;
} reader;

static double next_count(reader *r) {
    uint64_t v = 0;
    dz__varint(&r->p, r->end, &v);
    return (double)(int64_t)v;  /* numpy's int64 to float64 cast, rounded to nearest */
}

/* numpy's pairwise_sum for float64: blocks of at most 128 summed in 8 lanes, halves split at a
 * multiple of 8. The leaves come left to right, so the varints are read once, in order. */
static double pairwise(reader *r, size_t n) {
    double acc[8], res = 0.;
    size_t i, j;
    if (n < 8) {
        for (i = 0; i < n; i++) res += next_count(r);
        return res;
    }
    if (n <= 128) {
        for (j = 0; j < 8; j++) acc[j] = next_count(r);
        for (i = 8; i < n - n % 8; i += 8)
            for (j = 0; j < 8; j++) acc[j] += next_count(r);
        res = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        for (; i < n; i++) res += next_count(r);
        return res;
    } else {
        size_t half = n / 2;
        double left;
        half -= half % 8;
        left = pairwise(r, half);
        return left + pairwise(r, n - half);
    }
}

dz_status dz__ans_check(dz_file *f, struct dz__stream *s, const char *what) {
    const uint8_t *p = s->table_bytes, *end = p + s->table_len;
    uint64_t v, any = 0;
    uint32_t i, nprobs = s->alphabet_n < 2 ? 2 : s->alphabet_n;
    for (i = 0; i < s->alphabet_n; i++) { dz__varint(&p, end, &v); any |= v; }
    if (s->n && !any) return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: the ANS table gives no symbol a nonzero count.", what);
    if (s->body_len % 4)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: an ANS stream is whole 32-bit words, not %lu bytes.", what,
                        (unsigned long)s->body_len);
    if (!s->n && s->body_len)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: an ANS stream of 0 symbols has %lu bytes.", what,
                        (unsigned long)s->body_len);
    if (s->body_len && dz__rd32(s->body + s->body_len - 4) == 0)
        return dz__fail(f, DZ_E_FORMAT, "the file is corrupt: %s: the ANS stream is corrupt: Invalid compressed data: "
                        "ANS compressed data never ends in a zero word.", what);
    s->scratch = s->n ? dz__align8((size_t)4 * (nprobs + 1)) + dz__align8((s->alphabet_n + 7) / 8) +
                        dz__align8(2 * ((1u << LUT_BITS) + 1)) : 0;
    return DZ_OK;
}

static void build_cdf(dz__ans *a, const struct dz__stream *s, uint32_t *cdf, uint8_t *absent) {
    reader r;
    double total, norm = 0.0, scale, cum = 0.0;
    uint32_t i;
    r.p = s->table_bytes;
    r.end = r.p + s->table_len;
    total = pairwise(&r, s->alphabet_n);
    r.p = s->table_bytes;
    for (i = 0; i < a->nprobs; i++) norm += i < s->alphabet_n ? next_count(&r) / total : 0.0;
    scale = (double)((1u << 24) - a->nprobs) / norm;
    r.p = s->table_bytes;
    memset(absent, 0, (s->alphabet_n + 7) / 8);
    for (i = 0; i < a->nprobs; i++) {
        double c = i < s->alphabet_n ? next_count(&r) : 0.0, prob = c / total;
        double left = cum * scale;
        cdf[i] = (uint32_t)left + i;
        cum += prob;
        if (i < s->alphabet_n && c == 0.0) absent[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    cdf[a->nprobs] = 1u << 24;
}

/* lut[b] = the symbol holding quantile b << 14; lut[2^10] = the last symbol. */
static void build_lut(dz__ans *a, const uint32_t *cdf) {
    uint32_t b, sym = 0;
    uint16_t *lut = (uint16_t *)a->lut;
    for (b = 0; b < (1u << LUT_BITS); b++) {
        uint32_t q = b << (24 - LUT_BITS);
        while (cdf[sym + 1] <= q) sym++;
        lut[b] = (uint16_t)sym;
    }
    lut[1u << LUT_BITS] = (uint16_t)(a->nprobs - 1);
}

void dz__ans_begin(dz__ans *a, const struct dz__stream *s, uint8_t **scratch) {
    size_t n = s->body_len / 4;
    uint32_t *cdf = (uint32_t *)(void *)*scratch;
    uint8_t *absent;
    memset(a, 0, sizeof *a);
    a->alphabet = s->alphabet_n;
    a->nprobs = s->alphabet_n < 2 ? 2 : s->alphabet_n;
    *scratch += dz__align8((size_t)4 * (a->nprobs + 1));
    absent = *scratch;
    *scratch += dz__align8((s->alphabet_n + 7) / 8);
    a->lut = (uint16_t *)(void *)*scratch;
    *scratch += dz__align8(2 * ((1u << LUT_BITS) + 1));
    build_cdf(a, s, cdf, absent);
    build_lut(a, cdf);
    a->cdf = cdf;
    a->absent = absent;
    a->words = s->body;
    /* constriction's initial state: the last word, then words until the state holds two */
    if (n >= 2) { a->state = (uint64_t)dz__rd32(s->body + 4 * (n - 1)) << 32 | dz__rd32(s->body + 4 * (n - 2)); a->left = n - 2; }
    else if (n == 1) a->state = dz__rd32(s->body);
}

int dz__ans_symbol(dz__ans *a, uint32_t *sym, const char **why) {
    uint32_t q = (uint32_t)(a->state & 0xFFFFFF), b = q >> (24 - LUT_BITS), lo = a->lut[b], hi = a->lut[b + 1] + 1u;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a->cdf[mid] <= q) lo = mid; else hi = mid;
    }
    a->state = (a->state >> 24) * (a->cdf[lo + 1] - a->cdf[lo]) + (q - a->cdf[lo]);
    if (a->state < ((uint64_t)1 << 32) && a->left) {
        a->left--;
        a->state = a->state << 32 | dz__rd32(a->words + 4 * a->left);
    }
    if (lo >= a->alphabet || (a->absent[lo / 8] >> (lo % 8) & 1)) {
        *why = "the ANS stream decodes to a symbol its table gives count 0";
        return 0;
    }
    *sym = lo;
    return 1;
}

int dz__ans_end(const dz__ans *a, const char **why) {
    if (a->state != 0) { *why = "the ANS stream has data left after its last symbol"; return 0; }
    return 1;
}
