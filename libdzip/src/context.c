/* The context-adaptive binary range decoder of encode/context_kernels.py: LZMA's range coder
 * with 16-bit probabilities, a significance bit per element under one of 544 contexts (density
 * of the column above, of the row so far, the left neighbour), and the code of a kept element
 * as a walk down a binary tree of models (with left contexts, the first three levels chosen by
 * the left neighbour's code). Models are uint16 probability + uint8 count, in scratch. */
#include "internal.h"

#define SIG_CONTEXTS 544
#define SCALE_BITS 20
#define LEFT_LEVELS 3

static unsigned depth_of(uint32_t alphabet) {
    unsigned d = 0;
    uint32_t k = alphabet > 2 ? alphabet - 2 : 0;
    while (k) { d++; k >>= 1; }
    return d;
}

static uint64_t align8_64(uint64_t n) { return n > UINT64_MAX - 7 ? UINT64_MAX : (n + 7) & ~(uint64_t)7; }

/* What dz__context_begin carves, exactly; saturating, so a huge matrix asks for more than any
 * scratch instead of wrapping (its caller refuses SIZE_MAX). */
size_t dz__context_scratch(uint64_t rows, uint64_t cols, uint32_t alphabet, int left) {
    uint64_t models = (uint64_t)(left ? 5 : 1) << depth_of(alphabet), n;
    n = align8_64(2 * SIG_CONTEXTS) + align8_64(SIG_CONTEXTS) + align8_64(2 * models) + align8_64(models);
    n = dz__sat_add(n, align8_64(dz__sat_mul(cols, rows > UINT32_MAX ? 8 : 4)));
    n = dz__sat_add(n, align8_64(dz__sat_mul(cols, 4)));
    return n > SIZE_MAX ? SIZE_MAX : (size_t)n;
}

static void *carve(uint8_t **scratch, uint64_t bytes) {
    void *p = *scratch;
    *scratch += dz__align8((size_t)bytes);
    return p;
}

void dz__context_begin(dz__context *c, const uint8_t *data, size_t len, uint64_t rows, uint64_t cols,
                       uint32_t alphabet, int left, uint8_t **scratch) {
    uint64_t models, i;
    memset(c, 0, sizeof *c);
    c->depth = depth_of(alphabet);
    models = (uint64_t)(left ? 5 : 1) << c->depth;
    c->sig_p = (uint16_t *)carve(scratch, 2 * SIG_CONTEXTS);
    c->sig_s = (uint8_t *)carve(scratch, SIG_CONTEXTS);
    c->tree_p = (uint16_t *)carve(scratch, 2 * models);
    c->tree_s = (uint8_t *)carve(scratch, models);
    c->wide = rows > UINT32_MAX;
    c->col_count = carve(scratch, cols * (c->wide ? 8 : 4));
    c->col_scale = (uint32_t *)carve(scratch, cols * 4);
    for (i = 0; i < SIG_CONTEXTS; i++) c->sig_p[i] = 32768;
    for (i = 0; i < models; i++) c->tree_p[i] = 32768;
    memset(c->sig_s, 0, SIG_CONTEXTS);
    memset(c->tree_s, 0, (size_t)models);
    memset(c->col_count, 0, (size_t)cols * (c->wide ? 8 : 4));
    for (i = 0; i < cols; i++) c->col_scale[i] = (uint32_t)(((uint64_t)16 << SCALE_BITS) / (i + 1));
    c->data = data;
    c->len = len;
    for (i = 0; i < 4; i++) c->code = (c->code << 8) | (i < len ? data[i] : 0);
    c->pos = 4;
    c->range = 0xFFFFFFFFu;
    c->rows = rows;
    c->cols = cols;
    c->kept_max = alphabet - 1;
    c->left_codes = (uint8_t)left;
}

/* 65536 / (n + 2): a model's rate after n observations (KT-like at first, 1/256 from 254 on). */
static const uint16_t recip[255] = {
#define R(n) (uint16_t)(65536 / ((n) + 2))
#define R8(n) R(n), R(n + 1), R(n + 2), R(n + 3), R(n + 4), R(n + 5), R(n + 6), R(n + 7)
    R8(0), R8(8), R8(16), R8(24), R8(32), R8(40), R8(48), R8(56), R8(64), R8(72), R8(80), R8(88),
    R8(96), R8(104), R8(112), R8(120), R8(128), R8(136), R8(144), R8(152), R8(160), R8(168), R8(176),
    R8(184), R8(192), R8(200), R8(208), R8(216), R8(224), R8(232), R8(240), R(248), R(249), R(250),
    R(251), R(252), R(253), R(254)
#undef R8
#undef R
};

/* The coder's registers, copied out of the dz__context for the length of one element so that
 * the compiler keeps them in registers (stores to the uint8_t counts may alias any field). */
typedef struct {
    const uint8_t *data;
    size_t len;
    uint64_t pos;
    uint32_t code, range;
} coder;

static unsigned bit(coder *c, uint16_t *prob, uint8_t *seen, size_t i) {
    uint32_t p = prob[i], bound = (c->range >> 16) * p;
    unsigned n = seen[i];
    int32_t delta;
    unsigned b;
    if (c->code < bound) { c->range = bound; b = 1; }
    else { c->code -= bound; c->range -= bound; b = 0; }
    delta = (int32_t)(b ? 65536 - p : 0 - p) * (int32_t)recip[n];
    /* an arithmetic shift, written so that C's implementation-defined >> of negatives is not needed */
    p = delta >= 0 ? p + (uint32_t)(delta >> 16) : p - (uint32_t)(((uint32_t)-delta + 65535) >> 16);
    prob[i] = (uint16_t)(p < 64 ? 64 : p > 65472 ? 65472 : p);
    if (n < 254) seen[i] = (uint8_t)(n + 1);
    while (c->range < (1u << 24)) {
        c->range <<= 8;
        c->code = (c->code << 8) | (c->pos < c->len ? c->data[c->pos] : 0);
        c->pos++;
    }
    return b;
}

/* The next n codes, row by row, with every register held in locals for the length of the run
 * (a call per element, and fields reloaded after each model store, cost more than the coding).
 * Returns how many were decoded: fewer than n only at a code above kept_max (codes[n] is it). */
size_t dz__context_codes(dz__context *c, uint32_t *codes, size_t n) {
    coder rc;
    uint64_t col_at = c->c, row_scale = c->row_scale, row_count = c->row_count;
    uint32_t left_code = c->left_code, *count32 = (uint32_t *)c->col_count;
    uint64_t *count64 = (uint64_t *)c->col_count;
    unsigned left_bit = c->left_bit, depth = c->depth, shift = depth > 2 ? depth - 2 : 0;
    const uint64_t cols = c->cols;
    const uint32_t kept_max = c->kept_max, *col_scale = c->col_scale;
    const int wide = c->wide, left_codes = c->left_codes;
    uint16_t *sig_p = c->sig_p, *tree_p = c->tree_p;
    uint8_t *sig_s = c->sig_s, *tree_s = c->tree_s;
    uint64_t r = c->r;
    size_t k;
    rc.data = c->data;
    rc.len = c->len;
    rc.pos = c->pos;
    rc.code = c->code;
    rc.range = c->range;
    for (k = 0; k < n; k++) {
        uint64_t above, cb, rb;
        uint32_t code = 0;
        if (col_at == 0) {
            /* "first row" is row_scale == 0: row 0, and every row past 2^24 (2^24 / r rounds to 0) */
            row_scale = r ? ((uint64_t)16 << SCALE_BITS) / r : 0;
            row_count = 0;
            left_bit = 0;
            left_code = 0;
        }
        above = wide ? count64[col_at] : count32[col_at];
        cb = row_scale == 0 ? 16 : (above * row_scale) >> SCALE_BITS;
        rb = (row_count * col_scale[col_at]) >> SCALE_BITS;
        left_bit = bit(&rc, sig_p, sig_s, (size_t)(((cb > 15 && row_scale ? 15 : cb) * 16 + (rb > 15 ? 15 : rb)) * 2 + left_bit));
        if (left_bit) {
            uint32_t node = 1, tree = (left_codes && left_code) ? 1 + ((left_code - 1) >> shift) : 0;
            unsigned level;
            if (wide) count64[col_at]++; else count32[col_at]++;
            row_count++;
            tree <<= depth;
            for (level = 0; level < depth; level++) {
                node = node * 2 + bit(&rc, tree_p, tree_s, node + tree);
                if (level + 1 == LEFT_LEVELS) tree = 0;
            }
            code = node - (1u << depth) + 1;
        }
        codes[k] = left_code = code;
        if (++col_at == cols) { col_at = 0; r++; }
        if (code > kept_max) break;
    }
    c->c = col_at;
    c->r = r;
    c->row_scale = row_scale;
    c->row_count = row_count;
    c->left_code = left_code;
    c->left_bit = (uint8_t)left_bit;
    c->pos = rc.pos;
    c->code = rc.code;
    c->range = rc.range;
    return k;
}

int dz__context_next(dz__context *c, uint32_t *code) {
    return dz__context_codes(c, code, 1) == 1;
}

uint64_t dz__context_left_over(const dz__context *c) {
    return c->len > c->pos ? c->len - c->pos : 0;
}
