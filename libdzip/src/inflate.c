/* A bounded zlib inflate (RFC 1950 around RFC 1951) that refuses what zlib refuses.
 *
 * It writes into the caller's buffer and, past its end, goes on counting: the size a stream
 * inflates to depends only on its codes, never on the bytes, so the reader can tell a caller how
 * large an arena to pass without holding a window. Work is bounded by the input and `limit`.
 * Canonical codes are decoded a bit at a time (as zlib's puff does): a header is small. */
#include "internal.h"

#define MAXBITS 15

typedef struct {
    const uint8_t *in;
    size_t in_len, in_pos;
    uint32_t buf;
    unsigned cnt;
    uint8_t *out;
    size_t cap;
    uint64_t len, limit;
    int err;          /* 0, -1 corrupt, -2 past limit, -3 input ended */
    const char *why;
} inf;

typedef struct {
    short count[MAXBITS + 1];
    short symbol[288];
} code;

static int fail(inf *s, int err, const char *why) {
    if (!s->err) { s->err = err; s->why = why; }
    return -1;
}

static uint32_t bits(inf *s, unsigned need) {
    uint32_t v = s->buf;
    while (s->cnt < need) {
        if (s->in_pos == s->in_len) { fail(s, -3, "it ends early"); return 0; }
        v |= (uint32_t)s->in[s->in_pos++] << s->cnt;
        s->cnt += 8;
    }
    s->buf = (uint32_t)((uint64_t)v >> need);
    s->cnt -= need;
    return v & ((1u << need) - 1);
}

/* Returns how many codes are missing (0: complete), or -1 when over-subscribed. */
static int build(code *h, const short *length, int n) {
    short offs[MAXBITS + 1];
    int len, sym, left = 1;
    for (len = 0; len <= MAXBITS; len++) h->count[len] = 0;
    for (sym = 0; sym < n; sym++) h->count[length[sym]]++;
    if (h->count[0] == n) return 0;  /* no codes: any use of this code fails */
    for (len = 1; len <= MAXBITS; len++) {
        left <<= 1;
        left -= h->count[len];
        if (left < 0) return -1;
    }
    offs[1] = 0;
    for (len = 1; len < MAXBITS; len++) offs[len + 1] = (short)(offs[len] + h->count[len]);
    for (sym = 0; sym < n; sym++) if (length[sym]) h->symbol[offs[length[sym]]++] = (short)sym;
    return left;
}

static int decode(inf *s, const code *h) {
    int len, c = 0, first = 0, index = 0;
    for (len = 1; len <= MAXBITS; len++) {
        int count;
        c |= (int)bits(s, 1);
        if (s->err) return -1;
        count = h->count[len];
        if (c - count < first) return h->symbol[index + (c - first)];
        index += count;
        first = (first + count) << 1;
        c <<= 1;
    }
    return -1;  /* a bit pattern an incomplete code leaves unused */
}

static int put(inf *s, uint8_t byte) {
    if (s->len == s->limit) return fail(s, -2, "it inflates past its bound");
    if (s->len < s->cap) s->out[s->len] = byte;
    s->len++;
    return 0;
}

static int stored(inf *s) {
    unsigned n;
    s->buf = 0;
    s->cnt = 0;
    if (s->in_len - s->in_pos < 4) return fail(s, -3, "it ends early");
    n = s->in[s->in_pos] | (s->in[s->in_pos + 1] << 8);
    if ((s->in[s->in_pos + 2] ^ 0xff) != (n & 0xff) || (s->in[s->in_pos + 3] ^ 0xff) != (n >> 8))
        return fail(s, -1, "invalid stored block lengths");
    s->in_pos += 4;
    if (s->in_len - s->in_pos < n) return fail(s, -3, "it ends early");
    while (n--) if (put(s, s->in[s->in_pos++])) return -1;
    return 0;
}

static int codes(inf *s, const code *lencode, const code *distcode) {
    static const short lbase[29] = {3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43,
                                    51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258};
    static const short lext[29] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0};
    static const unsigned short dbase[30] = {1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257,
                                             385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193,
                                             12289, 16385, 24577};
    static const short dext[30] = {0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9,
                                   10, 10, 11, 11, 12, 12, 13, 13};
    for (;;) {
        int sym = decode(s, lencode);
        uint32_t len, dist;
        if (s->err) return -1;
        if (sym < 0) return fail(s, -1, "invalid literal/length code");
        if (sym < 256) { if (put(s, (uint8_t)sym)) return -1; continue; }
        if (sym == 256) return 0;
        sym -= 257;
        if (sym >= 29) return fail(s, -1, "invalid literal/length code");
        len = (uint32_t)lbase[sym] + bits(s, (unsigned)lext[sym]);
        sym = decode(s, distcode);
        if (s->err) return -1;
        if (sym < 0 || sym >= 30) return fail(s, -1, "invalid distance code");
        dist = dbase[sym] + bits(s, (unsigned)dext[sym]);
        if (s->err) return -1;
        if (dist > s->len) return fail(s, -1, "invalid distance too far back");
        while (len--) {
            uint8_t b = s->len < s->cap ? s->out[s->len - dist] : 0;
            if (put(s, b)) return -1;
        }
    }
}

static int fixed(inf *s) {
    code lencode, distcode;
    short lengths[288];
    int i;
    for (i = 0; i < 144; i++) lengths[i] = 8;
    for (; i < 256; i++) lengths[i] = 9;
    for (; i < 280; i++) lengths[i] = 7;
    for (; i < 288; i++) lengths[i] = 8;
    build(&lencode, lengths, 288);
    for (i = 0; i < 30; i++) lengths[i] = 5;  /* codes 30 and 31 stay unused: invalid, as in zlib */
    build(&distcode, lengths, 30);
    return codes(s, &lencode, &distcode);
}

static int read_lengths(inf *s, short *lengths, int nlen, int ndist) {
    static const short order[19] = {16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15};
    code lencode;
    int index, ncode = (int)bits(s, 4) + 4;
    for (index = 0; index < ncode; index++) lengths[order[index]] = (short)bits(s, 3);
    for (; index < 19; index++) lengths[order[index]] = 0;
    if (s->err) return -1;
    if (build(&lencode, lengths, 19) != 0) return fail(s, -1, "invalid code lengths set");
    for (index = 0; index < nlen + ndist;) {
        int sym = decode(s, &lencode), len = 0, rep;
        if (s->err) return -1;
        if (sym < 0) return fail(s, -1, "invalid code lengths set");
        if (sym < 16) { lengths[index++] = (short)sym; continue; }
        if (sym == 16) {
            if (index == 0) return fail(s, -1, "invalid bit length repeat");
            len = lengths[index - 1];
            rep = 3 + (int)bits(s, 2);
        } else {
            rep = sym == 17 ? 3 + (int)bits(s, 3) : 11 + (int)bits(s, 7);
        }
        if (s->err) return -1;
        if (index + rep > nlen + ndist) return fail(s, -1, "invalid bit length repeat");
        while (rep--) lengths[index++] = (short)len;
    }
    return 0;
}

static int dynamic(inf *s) {
    code lencode, distcode;
    short lengths[320];
    int nlen = (int)bits(s, 5) + 257, ndist = (int)bits(s, 5) + 1, err;
    if (s->err) return -1;
    if (nlen > 286 || ndist > 30) return fail(s, -1, "too many length or distance symbols");
    if (read_lengths(s, lengths, nlen, ndist)) return -1;
    if (lengths[256] == 0) return fail(s, -1, "invalid code -- missing end-of-block");
    /* zlib allows one incomplete code only: a single symbol, of length 1 */
    err = build(&lencode, lengths, nlen);
    if (err < 0 || (err > 0 && !(nlen - lencode.count[0] == 1 && lencode.count[1] == 1)))
        return fail(s, -1, "invalid literal/lengths set");
    err = build(&distcode, lengths + nlen, ndist);
    if (err < 0 || (err > 0 && !(ndist - distcode.count[0] == 1 && distcode.count[1] == 1)))
        return fail(s, -1, "invalid distances set");
    return codes(s, &lencode, &distcode);
}

static uint32_t adler32(const uint8_t *p, uint64_t n) {
    uint32_t a = 1, b = 0;
    while (n) {
        unsigned k = n > 5552 ? 5552 : (unsigned)n;  /* the most bytes before b can overflow */
        n -= k;
        while (k--) { a += *p++; b += a; }
        a %= 65521;
        b %= 65521;
    }
    return (b << 16) | a;
}

static int zlib_header(inf *s) {
    unsigned cmf, flg;
    if (s->in_len < 2) return fail(s, -3, "it ends early");
    cmf = s->in[0];
    flg = s->in[1];
    s->in_pos = 2;
    if (((cmf << 8) | flg) % 31) return fail(s, -1, "incorrect header check");
    if ((cmf & 15) != 8) return fail(s, -1, "unknown compression method");
    if ((cmf >> 4) + 8 > 15) return fail(s, -1, "invalid window size");
    if (flg & 0x20) return fail(s, -1, "it needs a preset dictionary");
    return 0;
}

int dz__inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, uint64_t limit,
                uint64_t *out_len, const char **why) {
    inf s;
    int last = 0;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.in_len = in_len;
    s.out = out;
    s.cap = out ? cap : 0;
    s.limit = limit;
    if (!zlib_header(&s)) {
        while (!last && !s.err) {
            unsigned type;
            last = (int)bits(&s, 1);
            type = bits(&s, 2);
            if (s.err) break;
            if (type == 0) stored(&s);
            else if (type == 1) fixed(&s);
            else if (type == 2) dynamic(&s);
            else fail(&s, -1, "invalid block type");
        }
    }
    if (!s.err) {
        s.buf = 0;
        s.cnt = 0;
        if (s.in_len - s.in_pos < 4) fail(&s, -3, "it ends early");
        else if (s.len <= s.cap && adler32(out, s.len) != (((uint32_t)in[s.in_pos] << 24) |
                 ((uint32_t)in[s.in_pos + 1] << 16) | ((uint32_t)in[s.in_pos + 2] << 8) | in[s.in_pos + 3]))
            fail(&s, -1, "incorrect data check");
    }
    *out_len = s.len;
    *why = s.why;
    return s.err;
}
