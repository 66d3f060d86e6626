/* Shared by the reader's source files; nothing here is public. */
#ifndef DZ_INTERNAL_H
#define DZ_INTERNAL_H

#include <string.h>

#define DZ__OWN_STATE 1  /* dzip.h leaves dz_file and dz_iter to state.h */
#include "dzip.h"
#include "state.h"

#define DZ__NONE UINT32_MAX
#define DZ__MAX_ALPHABET 65536u
#define DZ__MAX_HEADER ((uint64_t)256 << 20)
#define DZ__ELEMENTS_PER_BYTE 256u
#define DZ__MAX_DIM ((uint64_t)1 << 48)
#define DZ__JSON_MAX_DEPTH 512   /* Python gives up near 1000 (its recursion limit); deepzip writes 6 */
#define DZ__INT_MAX_DIGITS 4300  /* Python's int() refuses longer literals, so its json does */

/* The stream coders (DZ__RAW ...) and the fields of a tensor entry that name a stream (DZ__DATA
 * ... DZ__KEYS) are in dz_tables.h, generated from src/deepzip/dzip/tables.toml. */
extern const char *const dz__stream_keys[DZ__KEYS];

struct dz__stream {
    uint64_t offset, length;
    const char *coder, *count, *alphabet, *table, *crc32;  /* JSON values, NULL when absent */
    uint8_t kind;                  /* DZ__RAW ... from `coder` */
    uint8_t named;                 /* a tensor field names it (each must be named once) */
    /* Set when a tensor reads it as a Huffman or ANS stream: */
    const uint8_t *table_bytes;    /* the table's LEB128 varints */
    size_t table_len;
    const uint8_t *body;           /* the coded symbols after the table */
    size_t body_len;
    uint64_t n;                    /* symbols */
    uint32_t alphabet_n, used;     /* alphabet; symbols with a code (Huffman) */
    unsigned top;                  /* Huffman: longest code length */
    size_t scratch;                /* what its decoder keeps in scratch */
};

struct dz__entry {
    dz_tensor t;
    const char *obj;               /* the entry's JSON object */
    uint32_t s[DZ__KEYS];          /* each stream field's stream, DZ__NONE when absent */
    uint64_t size;                 /* elements the codes or gaps describe (live submatrix or all) */
    uint64_t grid_rows, grid_cols; /* the matrix a context stream codes */
    uint8_t left_codes;            /* its context stream is context-left */
    size_t stored_size;            /* bytes per stored value (raw, sparse values, codebook) */
};

/* Pieces of dz_open, in order. */
dz_status dz__fail(dz_file *f, dz_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
dz_status dz__header(dz_file *f, uint8_t *arena, size_t arena_size, size_t text_bytes);
dz_status dz__entries(dz_file *f, const char *tensors, uint64_t *spent);
void *dz__take(dz_file *f, size_t bytes);          /* from the arena's pool, sized at open */
const char *dz__quote(const char *s, size_t len, char *buf, size_t cap);  /* 'name' for messages */
/* The members of a tensor entry that the reader looks at. */
enum { K_NAME, K_ALIAS, K_ENCODING, K_DTYPE, K_SHAPE, K_ROLE, K_LAYER, K_KIND, K_NONZERO, K_STORED,
       K_SPLIT, K_POSITIONS, K_INDEX_BITS, K_STREAM, K_COUNT = K_STREAM + DZ__KEYS };
extern const char *const dz__entry_keys[K_COUNT];
dz_status dz__check_entry(dz_file *f, struct dz__entry *e, const char *const *v, uint64_t *spent);
uint64_t dz__row_length(const dz_tensor *t);   /* product of shape[1:] */
dz_status dz__spend(dz_file *f, uint64_t *spent, uint64_t elements, const char *what);
/* A Huffman or ANS stream of `alphabet` symbols, validated as coded() and decode_stream() do. */
dz_status dz__coded(dz_file *f, uint32_t si, uint32_t alphabet, const char *what, uint64_t *spent);
int dz__crc_ok(const dz_file *f, uint32_t si);
const uint8_t *dz__stream_bytes(const dz_file *f, uint32_t si);
size_t dz__align8(size_t n);
uint8_t *dz__align_ptr(void *p);
uint64_t dz__sat_add(uint64_t a, uint64_t b);
uint64_t dz__sat_mul(uint64_t a, uint64_t b);

/* Container pieces. */
uint32_t dz__crc32(uint32_t crc, const uint8_t *p, size_t n);
/* zlib (RFC 1950) inflate of in[0..in_len) into out[0..cap); past cap it only counts. Returns 0 on
 * a complete, checked stream (bytes after its adler32 are ignored, as zlib's unused_data), -1 when
 * it is corrupt (*why says how), -2 when it inflates past `limit`, -3 when it ends early.
 * *out_len = bytes it inflates to (its adler32 is only checked when they fit in cap). */
dz_status dz__files(dz_file *f, const char *files);  /* check the carried files' list (files.c) */
int dz__file_streams(dz_file *f, size_t *uses);      /* mark their streams used; 1 if one already was */
int dz__inflate(const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, uint64_t limit,
                uint64_t *out_len, const char **why);
int dz__utf8_valid(const uint8_t *s, size_t n, size_t *bad_at);

/* JSON (text validated by dz__json_validate before any other call). */
int dz__json_validate(const char *s, size_t n, const char **why, size_t *at);
const char *dz__json_ws(const char *p, const char *end);
const char *dz__json_skip(const char *p, const char *end);      /* past one value */
int dz__json_str_eq(const char *p, const char *lit);             /* p at a string's quote */
size_t dz__json_str_decode(const char *p, char *out);           /* out NULL: length only */
typedef struct dz__num {
    int is_int, neg, huge;         /* integer literal; '-'; more than 64 bits of magnitude */
    uint64_t u;                    /* magnitude (integer literals), saturated */
    double d;
} dz__num;
int dz__json_num(const char *p, const char *end, dz__num *out);   /* p at a number; 1 if it is one */
dz_json dz__at(const dz_file *f, const char *p);                 /* a cursor at p in f's header text */
int dz__json_is_uint(const char *v, const char *end, uint64_t *u); /* Python's checks.is_uint */
/* The values of an object's members named in keys[0..n) (the last of each, as Python's dict);
 * vals[i] NULL when absent. */
void dz__json_members(const char *obj, const char *end, const char *const *keys, size_t n,
                      const char **vals);
int dz__json_type(const char *v);
const char *dz__json_first_item(const char *container, const char *end);   /* NULL when empty */
/* p at an array element or an object key: sets *value (the key's value, or p) and returns the
 * next item, or NULL after the last. */
const char *dz__json_after_item(const char *p, const char *end, const char **value);

/* Tables of coded streams. */
/* One LEB128 varint at *p (< end): 1 and the value, 0 when the bytes end first, -1 past 63 bits. */
int dz__varint(const uint8_t **p, const uint8_t *end, uint64_t *v);
/* The JSON string at v decoded as Python's base64.b64decode(validate=True); 1 on success. */
int dz__base64_json(const char *v, uint8_t *out, size_t cap, size_t *out_len, const char **why);
size_t dz__json_unit(const char **pp, unsigned char out[4]);   /* next decoded bytes of a string */

/* Coders: validation at open (no scratch), set-up into scratch, symbols one at a time. */
dz_status dz__huff_check(dz_file *f, struct dz__stream *s, const char *what);
dz_status dz__ans_check(dz_file *f, struct dz__stream *s, const char *what);
void dz__huff_begin(dz__huff *h, const struct dz__stream *s, uint8_t **scratch);
int dz__huff_symbol(dz__huff *h, uint32_t *sym, const char **why);
int dz__huff_end(const dz__huff *h, const char **why);
void dz__ans_begin(dz__ans *a, const struct dz__stream *s, uint8_t **scratch);
int dz__ans_symbol(dz__ans *a, uint32_t *sym, const char **why);
int dz__ans_end(const dz__ans *a, const char **why);
void dz__symbols_begin(dz__symbols *src, const struct dz__stream *s, uint8_t **scratch);
int dz__symbol(dz__symbols *src, uint32_t *sym, const char **why);   /* 1 ok, 0 error */
int dz__symbols_end(const dz__symbols *src, const char **why);       /* 1 ok: nothing left over */
size_t dz__context_scratch(uint64_t rows, uint64_t cols, uint32_t alphabet, int left);
void dz__context_begin(dz__context *c, const uint8_t *data, size_t len, uint64_t rows, uint64_t cols,
                       uint32_t alphabet, int left, uint8_t **scratch);
/* The next element's code (row by row); 0 past kept_max (corrupt). */
int dz__context_next(dz__context *c, uint32_t *code);
/* The next n codes; returns how many, fewer than n only where codes[returned] is past kept_max. */
size_t dz__context_codes(dz__context *c, uint32_t *codes, size_t n);
uint64_t dz__context_left_over(const dz__context *c);

float dz__half_to_float(uint16_t h);
float dz__bits_float(uint32_t bits);
/* Iterator set-up and scratch carving shared by every decoding call. */
int dz__iter_dense(dz_iter *it, float *out);   /* -2: not a tensor of one symbol per element */
dz_status dz__entry_for(dz_file *f, size_t index, const struct dz__entry **e);
dz_status dz__scratch(dz_file *f, const struct dz__entry *e, void *scratch, size_t bytes, uint8_t **at);

static inline uint16_t dz__rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t dz__rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t dz__rd64(const uint8_t *p) {
    return (uint64_t)dz__rd32(p) | ((uint64_t)dz__rd32(p + 4) << 32);
}

#endif
