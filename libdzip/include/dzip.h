/* libdzip: a bounded, allocation-free reader of .dzip files, in C99.
 *
 * docs/FORMAT.md is the specification; this reader accepts exactly the files deepzip's Python
 * reader accepts (deepzip.dzip.read_tensors) and decodes them to the same bits. It never calls
 * malloc: the caller passes every piece of memory, and can learn each size before it decodes.
 *
 *   dz_file f;
 *   dz_open(&f, data, size, arena, arena_bytes);      the header: validated, indexed into `arena`
 *   t = dz_tensor_at(&f, i);                          name, dtype, shape, encoding, sizes needed
 *   dz_decode_dense(&f, i, out, t->dense_bytes, scratch, t->scratch_bytes);
 *   dz_decode_kept(...) / dz_iter_next(...) / dz_visit(...)     the kept weights, in order
 *
 * `data` is only read, never copied, and must stay valid while `f` is used: a file in flash
 * (a const uint8_t array) is decoded in place. Every function returns a dz_status; on failure
 * dz_message(&f) is one sentence saying why, and for the three size errors dz_needed(&f) is the
 * size that would have worked. A dz_file is used by one thread at a time (it holds the message).
 */
#ifndef DZIP_H
#define DZIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DZ_FORMAT_VERSION 6   /* the newest version read; 1 to 6 are */
#define DZ_MAX_DIMS 8
#define DZ_MESSAGE_MAX 256

typedef enum dz_status {
    DZ_OK = 0,
    DZ_E_FORMAT = 1,   /* the file is not a valid .dzip: what Python raises DzipFormatError for */
    DZ_E_ARENA = 2,    /* dz_open's arena is too small: dz_needed() bytes would do (see dz_open) */
    DZ_E_SCRATCH = 3,  /* the scratch is too small: dz_needed() bytes (dz_tensor.scratch_bytes) */
    DZ_E_OUTPUT = 4,   /* an output buffer is too small: dz_needed() bytes, or entries for kept lists */
    DZ_E_ARG = 5,      /* a wrong call: index out of range, NULL, a call the tensor's kind has not */
    DZ_E_LIMIT = 6     /* a valid file this build cannot hold (sizes past SIZE_MAX on a 32-bit target) */
} dz_status;

/* dz_dtype, dz_encoding (DZ_RAW, DZ_SHARED, DZ_SPARSE, DZ_ALIAS), dz_positions (DZ_POS_*): the
 * format's closed lists, generated from src/deepzip/dzip/tables.toml with their names. */
#include "dz_tables.h"

/* A string from the header: UTF-8 as Python decodes it (a lone surrogate escape becomes its
 * 3-byte "WTF-8" form), NUL-terminated, `len` bytes (it may hold NULs). ptr is NULL when absent. */
typedef struct dz_str {
    const char *ptr;
    size_t len;
} dz_str;

/* One entry of the header's tensor list, validated when the file was opened. */
typedef struct dz_tensor {
    dz_str name;             /* the state_dict key */
    dz_str alias;            /* DZ_ALIAS: the name it repeats; else absent */
    size_t target;           /* the entry holding the content: this one, or an alias's resolved source */
    dz_encoding encoding;    /* DZ_ALIAS for aliases; every field below is then the target's */
    dz_dtype dtype;
    unsigned ndim;           /* 0 to 8; a 0-dimensional tensor has one element */
    const uint64_t *shape;   /* ndim sides */
    uint64_t numel;          /* product of the sides */
    int has_nonzero;         /* shared and sparse: whether `nonzero` was recorded (informative only) */
    uint64_t nonzero;
    dz_str layer;            /* class of the owning module ("Linear", "Conv2d"), if recorded */
    dz_str kind;             /* its layer kind ("linear", "conv"), if recorded */
    dz_str role;             /* "param" or "buffer", if recorded */
    dz_positions positions;
    uint32_t codebook_size;  /* shared: K, the number of centroids (codes run 0 .. K) */
    unsigned scaled;         /* shared, version 5: 0, or 2 / 4 = bytes of each row's scale (float16 / float32);
                                a weight is codebook[code - 1] x its row's scale (row = dim 0) */
    int half;                /* values or codebook stored as float16, widened exactly on decode */
    int split;               /* raw float32 stored as context-coded sign+exponent and packed mantissas */
    int live;                /* stored as its live rows x live columns (structured pruning) */
    uint64_t live_rows, live_cols;
    unsigned index_bits;     /* DZ_POS_SPARSE: width of a gap */
    /* What the decoding calls need; dz_scratch_max() is the largest scratch_bytes of the file. */
    size_t dense_bytes;      /* dz_decode_dense's output: numel x 4 for float dtypes, numel x itemsize otherwise */
    uint64_t kept_max;       /* shared and sparse: at most this many kept entries (exact: dz_count_kept) */
    size_t scratch_bytes;    /* the scratch any decoding call on this tensor needs (8-byte aligned) */
    size_t stream_bytes;     /* bytes of the file its streams take (informative) */
} dz_tensor;

/* A JSON value inside the header (text validated by dz_open; never modified). p is NULL for an
 * absent value. Read arch, widths and meta with these (dz_json_get(dz_header(&f), "arch")). */
typedef struct dz_json {
    const char *p;    /* first byte of the value */
    const char *end;  /* end of the header text */
} dz_json;

typedef enum dz_json_type {
    DZ_JSON_ABSENT, DZ_JSON_NULL, DZ_JSON_FALSE, DZ_JSON_TRUE, DZ_JSON_NUMBER,
    DZ_JSON_STRING, DZ_JSON_ARRAY, DZ_JSON_OBJECT
} dz_json_type;

/* One kept weight: flat position in C order within the whole tensor, its code (shared; 0 for a
 * sparse entry) and its float32 value (codebook[code - 1], or the stored value). */
typedef struct dz_kept {
    uint64_t position;
    uint32_t code;
    float value;
} dz_kept;

/* Called once per kept weight in increasing position order; a nonzero return stops the visit. */
typedef int (*dz_visitor)(void *ctx, uint64_t position, uint32_t code, float value);

/* ---- the reader's state: opaque, sized so that a caller can place it (on the stack, in static
 * memory, in an arena) without malloc. Its layout is libdzip's own (src/state.h) and may change;
 * the sizes hold on every target (libdzip checks its layout fits them when it compiles). */
#define DZ_FILE_BYTES 448
#define DZ_ITER_BYTES 928
typedef struct dz_file dz_file;
typedef struct dz_iter dz_iter;
#ifndef DZ__OWN_STATE  /* libdzip's sources see the layouts instead */
struct dz_file { uint64_t opaque_[DZ_FILE_BYTES / 8]; };
struct dz_iter { uint64_t opaque_[DZ_ITER_BYTES / 8]; };
#endif

/* ---- opening */

/* Validate the file and index its header into `arena` (any alignment; the reader aligns within
 * it). Checks everything that can be checked without decoding a stream: preamble, crc32, the
 * bounded header inflate, the JSON, every stream and tensor entry, code tables, the element
 * budget. On DZ_E_ARENA, dz_needed(f) is the exact arena this file needs, except when the arena
 * could not even hold the inflated header text: then it is that text's size, and a call with it
 * learns the exact figure (so dz_open(f, data, size, NULL, 0) and at most two more calls find it;
 * a tool can print it once for a device: dzip-dump --sizes). Figures assume an 8-byte aligned
 * arena (an unaligned one may need 7 bytes more). `arena` may be NULL when arena_size is 0.
 * data[0 .. size) must stay readable and unchanged while f is used; so must the arena. */
dz_status dz_open(dz_file *f, const uint8_t *data, size_t size, void *arena, size_t arena_size);

dz_status dz_status_of(const dz_file *f);  /* the last call's status */
const char *dz_message(const dz_file *f);  /* one sentence, or "" after DZ_OK */
size_t dz_needed(const dz_file *f);        /* after a size error: the size that would do */
size_t dz_arena_used(const dz_file *f);    /* after DZ_OK: bytes of the arena in use */
unsigned dz_version(const dz_file *f);     /* the file's format version, 1 to 4 */
size_t dz_scratch_max(const dz_file *f);   /* the largest scratch any tensor of the file needs */
const char *dz_status_name(dz_status s);   /* "DZ_E_FORMAT", ... */

/* ---- tensors */

size_t dz_tensor_count(const dz_file *f);
const dz_tensor *dz_tensor_at(const dz_file *f, size_t index);   /* NULL past the end */
/* Index of the last entry named `name` (as Python's dict of them keeps): 0 if none, else 1. */
int dz_find(const dz_file *f, const char *name, size_t name_len, size_t *index);
size_t dz_itemsize(dz_dtype dtype);
const char *dz_dtype_name(dz_dtype dtype);
const char *dz_encoding_name(dz_encoding encoding);

/* The whole tensor: float32 values (native byte order) for float dtypes, the elements'
 * little-endian bytes for int and bool dtypes. out_bytes >= t->dense_bytes; scratch_bytes >=
 * t->scratch_bytes. On DZ_E_FORMAT `out` may hold part of the tensor. */
dz_status dz_decode_dense(dz_file *f, size_t index, void *out, size_t out_bytes,
                          void *scratch, size_t scratch_bytes);

/* A raw entry stored as its own dtype: its bytes, in place in the file (no copy, no scratch). */
dz_status dz_raw_bytes(dz_file *f, size_t index, const uint8_t **bytes, size_t *len);

/* A shared entry's codebook, K float32 values (float16 ones widened); cap >= K. */
dz_status dz_codebook(dz_file *f, size_t index, float *out, size_t cap);

/* The kept weights of a shared or sparse entry into caller arrays of `cap` entries, in
 * increasing position order: positions, and codes (shared) and/or values (each may be NULL).
 * *count is how many there are. When cap is too small the decoder goes on counting and
 * returns DZ_E_OUTPUT with dz_needed(f) = the exact count. */
dz_status dz_decode_kept(dz_file *f, size_t index, uint64_t *positions, uint16_t *codes,
                         float *values, size_t cap, size_t *count, void *scratch, size_t scratch_bytes);

/* The same entries through a callback, with no buffer: for packing a layer into a runtime's
 * own form. A visitor may see entries of a tensor whose stream then proves corrupt (the error
 * comes at the end); dz_verify a file first where that matters. */
dz_status dz_visit(dz_file *f, size_t index, void *scratch, size_t scratch_bytes,
                   dz_visitor visit, void *ctx);

/* ... or pulled one at a time: dz_iter_next returns 1 with *out filled, 0 at the end (the
 * stream then fully validated), -1 on an error (dz_message). The iterator keeps pointers into
 * scratch, which must outlive it. */
dz_status dz_iter_begin(dz_iter *it, dz_file *f, size_t index, void *scratch, size_t scratch_bytes);
int dz_iter_next(dz_iter *it, dz_kept *out);

/* The number of kept entries, by decoding the tensor (the header's `nonzero` is not trusted). */
dz_status dz_count_kept(dz_file *f, size_t index, void *scratch, size_t scratch_bytes, uint64_t *count);

/* Decode every tensor without storing anything: DZ_OK exactly when Python's read_tensors
 * would load the file. scratch_bytes >= dz_scratch_max(f). */
dz_status dz_verify(dz_file *f, void *scratch, size_t scratch_bytes);

/* ---- carried files (version 6): a tokenizer and the like, stored deflated beside the tensors.
 * Their list is checked by dz_open; each one's bytes when it is read. A name is one or two path
 * segments of [A-Za-z0-9._-] joined by '/', a segment 1 to 64 bytes not starting with '.'. */
#define DZ_MAX_FILES 64
#define DZ_FILE_NAME_MAX 129     /* bytes of the longest name, without its NUL */
size_t dz_file_count(const dz_file *f);
/* Carried file `index`'s name (NUL-terminated into name[name_cap]; NULL: not wanted) and the
 * bytes it inflates to. */
dz_status dz_file_info(dz_file *f, size_t index, char *name, size_t name_cap, uint64_t *length);
/* Inflate carried file `index` into out[cap] (at least its length; DZ_E_OUTPUT and dz_needed
 * otherwise); DZ_E_FORMAT when its stream does not inflate to exactly that length. */
dz_status dz_file_read(dz_file *f, size_t index, uint8_t *out, size_t cap);

/* ---- the header's JSON (arch, widths, meta and anything else) */

dz_json dz_header(const dz_file *f);                    /* the whole header object */
dz_json_type dz_json_kind(dz_json v);
dz_json dz_json_get(dz_json object, const char *key);   /* the last member named key, else absent */
size_t dz_json_size(dz_json v);                         /* members of an array or object */
dz_json dz_json_first(dz_json container);               /* array: first element; object: first key */
dz_json dz_json_next(dz_json item);                     /* the next element / key, else absent */
dz_json dz_json_value(dz_json key);                     /* an object key's value */
int dz_json_uint(dz_json v, uint64_t *out);             /* an integer literal in 0 .. 2^64-1 (-0 too) */
int dz_json_int(dz_json v, int64_t *out);               /* an integer literal that fits int64 */
int dz_json_number(dz_json v, double *out);             /* any number (within an ulp or two) */
/* A string's UTF-8 bytes: returns its length, writes at most cap bytes (NUL-terminated when
 * the length is below cap); returns (size_t)-1 for a value that is not a string. */
size_t dz_json_string(dz_json v, char *buf, size_t cap);
int dz_json_is(dz_json v, const char *string);          /* a string equal to `string` */

#ifdef __cplusplus
}
#endif
#endif
