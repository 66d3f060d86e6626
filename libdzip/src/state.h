/* The reader's state behind dz_file and dz_iter, which dzip.h declares opaque with fixed sizes:
 * only libdzip's sources see these layouts (internal.h includes this file). */
#ifndef DZ_STATE_H
#define DZ_STATE_H

struct dz__stream;
struct dz__entry;

typedef struct dz__huff {          /* canonical Huffman decoder over one stream */
    const uint8_t *data;
    size_t len, next;
    uint64_t acc, used, nbits;
    unsigned held, top, fast_bits;
    const uint32_t *fast;          /* 2^fast_bits entries: symbol << 4 | length, 0 = longer code */
    const uint16_t *symbols;       /* used symbols in (length, symbol) order */
    uint16_t count[16];
    uint16_t first[16];            /* canonical first code of each length */
    uint32_t start[16];            /* index in `symbols` of each length's first code */
} dz__huff;

typedef struct dz__ans {           /* constriction's stack ANS decoder (32-bit words, 64-bit state) */
    const uint8_t *words;
    size_t left;                   /* words not yet read, read from the last one down */
    uint64_t state;
    const uint32_t *cdf;           /* nprobs + 1 entries, cdf[nprobs] = 2^24 */
    const uint8_t *absent;         /* bit per symbol of the table: count 0 */
    const uint16_t *lut;           /* the symbol at each 2^14-wide slice of quantiles */
    uint32_t nprobs, alphabet;
} dz__ans;

typedef struct dz__symbols {       /* a Huffman or ANS stream of `remaining` symbols */
    int coder;
    uint64_t remaining;
    union { dz__huff huff; dz__ans ans; } u;
} dz__symbols;

typedef struct dz__context {       /* the adaptive binary range decoder over a matrix of codes */
    const uint8_t *data;
    size_t len;
    uint64_t pos;                  /* bytes consumed, past-the-end zeros included */
    uint32_t code, range;
    uint16_t *sig_p, *tree_p;
    uint8_t *sig_s, *tree_s;
    void *col_count;               /* uint32_t or (wide) uint64_t per column */
    uint32_t *col_scale;
    uint64_t rows, cols, r, c, row_scale, row_count;
    uint32_t kept_max, left_code;
    unsigned depth;
    uint8_t left_bit, left_codes, wide;
} dz__context;

struct dz_file {
    const uint8_t *data;
    size_t size;
    unsigned version, flags;
    const uint8_t *payload;
    size_t payload_len;
    const char *text;              /* the header JSON, in the arena */
    size_t text_len;
    struct dz__stream *streams;
    size_t n_streams;
    struct dz__entry *entries;
    size_t n_entries;
    size_t arena_used, needed, scratch_max;
    uint8_t *pool;                 /* dz_open's bump allocators within the arena */
    size_t pool_left;
    uint64_t *dims;
    size_t dims_left;
    uint32_t *names;               /* hash of entry names: index + 1 of the last entry of each */
    size_t name_slots;
    const char *files;             /* version 6: the header's "files" list (checked), else NULL */
    size_t n_files;
    int opened;                    /* dz_open succeeded */
    dz_status status;
    char message[DZ_MESSAGE_MAX];
};

typedef struct dz__cursor {        /* walks the set bits of a live bitmap */
    const uint8_t *bits;
    uint64_t nbits, at, ord;       /* `at` is the ord-th set bit (nbits when past the last) */
} dz__cursor;

struct dz_iter {
    dz_file *f;
    const struct dz__entry *e;
    int kind;
    dz__symbols gaps, codes;
    dz__context ctx;
    const float *codebook;
    const uint8_t *values;         /* sparse: the raw float32 / float16 values */
    const uint8_t *scales;         /* shared, scaled rows: the raw scale per row (NULL: none) */
    uint64_t scale_row;            /* elements of a row (dim 0), to find an element's row */
    uint64_t done, total;          /* entries (or elements) read, and how many there are */
    uint64_t sub;                  /* position within the stored (live) matrix, +1 */
    dz__cursor rows, cols;         /* live layouts: the current live row and column */
    uint32_t run[32];              /* context streams: codes decoded ahead, run_at of run_n used */
    unsigned run_at, run_n;
    uint64_t row_len, live_cols;
    int status;                    /* 0 running, 1 finished and validated, -1 failed */
};

/* The public sizes hold these layouts on every target. */
typedef char dz__file_fits[sizeof(struct dz_file) <= DZ_FILE_BYTES ? 1 : -1];
typedef char dz__iter_fits[sizeof(struct dz_iter) <= DZ_ITER_BYTES ? 1 : -1];

#endif
