/* dzip-dump: what a .dzip holds, through libdzip.
 *
 *   dzip-dump FILE                 a summary: version, and per tensor its encoding and sizes
 *   dzip-dump --sizes FILE         every buffer a decoder needs, exactly (for a device build)
 *   dzip-dump --verify FILE        decode everything; exit 0 exactly when the file is valid
 *   dzip-dump --dump[=visit|iter] FILE
 *                                  for tests: one JSON line describing each tensor, then the
 *                                  blobs it lists, back to back (kept lists through dz_decode_kept,
 *                                  or the visitor, or the iterator)
 *   dzip-dump --check-sizes FILE   that each reported size is exact: one byte less is refused
 *   dzip-dump --bench FILE         CPU seconds to open, to decode every tensor dense, and to walk
 *                                  every kept list with the iterator (one JSON line)
 *
 * Exit status: 0 success, 1 the file is invalid (the message on stderr), 2 anything else.
 * Unlike the library this tool allocates: it is the library's host-side user. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dzip.h"

static const char *path;

static int die(const dz_file *f, dz_status st) {
    fprintf(stderr, "dzip-dump: %s: %s: %s\n", path, dz_status_name(st), dz_message(f));
    return st == DZ_E_FORMAT ? 1 : 2;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "dzip-dump: out of memory (%lu bytes)\n", (unsigned long)n); exit(2); }
    return p;
}

static uint8_t *read_file(const char *name, size_t *size) {
    FILE *fp = fopen(name, "rb");
    uint8_t *buf;
    long n;
    if (!fp || fseek(fp, 0, SEEK_END) || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET)) {
        fprintf(stderr, "dzip-dump: cannot read %s\n", name);
        exit(2);
    }
    buf = xmalloc((size_t)n);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) { fprintf(stderr, "dzip-dump: cannot read %s\n", name); exit(2); }
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

/* dz_open's protocol: no arena tells the text size, that arena tells the exact size. */
static dz_status open_file(dz_file *f, const uint8_t *data, size_t size, void **arena) {
    size_t have = 0;
    dz_status st;
    int tries;
    *arena = NULL;
    for (tries = 0; tries < 3; tries++) {
        st = dz_open(f, data, size, *arena, have);
        if (st != DZ_E_ARENA) return st;
        free(*arena);
        have = dz_needed(f);
        *arena = xmalloc(have);
    }
    return st;
}

static void summary(dz_file *f) {
    size_t i, n = dz_tensor_count(f);
    printf("version %u, %lu tensors, arena %lu bytes, scratch %lu bytes\n", dz_version(f), (unsigned long)n,
           (unsigned long)dz_arena_used(f), (unsigned long)dz_scratch_max(f));
    for (i = 0; i < n; i++) {
        const dz_tensor *t = dz_tensor_at(f, i);
        unsigned d;
        printf("%-40s %-7s %-8s [", t->name.ptr, dz_encoding_name(t->encoding), dz_dtype_name(t->dtype));
        for (d = 0; d < t->ndim; d++) printf(d ? ", %" PRIu64 : "%" PRIu64, t->shape[d]);
        printf("]");
        if (t->encoding == DZ_ALIAS) printf(" = %s", t->alias.ptr);
        if (t->encoding == DZ_SHARED) printf(" K=%u", (unsigned)t->codebook_size);
        if (t->live) printf(" live %" PRIu64 "x%" PRIu64, t->live_rows, t->live_cols);
        printf(" dense %lu, kept <= %" PRIu64 ", scratch %lu\n", (unsigned long)t->dense_bytes, t->kept_max,
               (unsigned long)t->scratch_bytes);
    }
}

typedef struct {
    uint64_t *pos;
    uint16_t *codes;
    float *values;
    size_t n, cap;
} kept_list;

static int collect(void *ctx, uint64_t position, uint32_t code, float value) {
    kept_list *k = (kept_list *)ctx;
    if (k->n < k->cap) { k->pos[k->n] = position; k->codes[k->n] = (uint16_t)code; k->values[k->n] = value; }
    k->n++;
    return 0;
}

static dz_status kept(dz_file *f, size_t i, const char *how, kept_list *k, void *scratch, size_t sb) {
    const dz_tensor *t = dz_tensor_at(f, i);
    dz_status st;
    k->cap = (size_t)t->kept_max;
    k->pos = xmalloc(8 * k->cap);
    k->codes = xmalloc(2 * k->cap);
    k->values = xmalloc(4 * k->cap);
    k->n = 0;
    if (!strcmp(how, "visit")) return dz_visit(f, i, scratch, sb, collect, k);
    if (!strcmp(how, "iter")) {
        dz_iter it;
        dz_kept e;
        int rc;
        if ((st = dz_iter_begin(&it, f, i, scratch, sb)) != DZ_OK) return st;
        while ((rc = dz_iter_next(&it, &e)) > 0) collect(k, e.position, e.code, e.value);
        return rc < 0 ? DZ_E_FORMAT : DZ_OK;
    }
    return dz_decode_kept(f, i, k->pos, k->codes, k->values, k->cap, &k->n, scratch, sb);
}

static void put_hex(const dz_str *s) {
    size_t j;
    putchar('"');
    for (j = 0; s->ptr && j < s->len; j++) printf("%02x", (unsigned char)s->ptr[j]);
    putchar('"');
}

typedef struct {
    void *blob[5];
    size_t len[5];
    int n;
} blobs;

static void add(blobs *b, const char *key, void *p, size_t len) {
    printf(",\"%s\":%lu", key, (unsigned long)len);
    b->blob[b->n] = p;
    b->len[b->n++] = len;
}

static void describe(const dz_tensor *t, size_t i) {
    unsigned d;
    printf("{\"index\":%lu,\"name\":", (unsigned long)i);
    put_hex(&t->name);
    printf(",\"target\":%lu,\"encoding\":\"%s\",\"dtype\":\"%s\",\"shape\":[", (unsigned long)t->target,
           dz_encoding_name(t->encoding), dz_dtype_name(t->dtype));
    for (d = 0; d < t->ndim; d++) printf(d ? ",%" PRIu64 : "%" PRIu64, t->shape[d]);
    printf("],\"kept_max\":%" PRIu64 ",\"K\":%u,\"live\":%d", t->kept_max, (unsigned)t->codebook_size, t->live);
    if (t->has_nonzero) printf(",\"nonzero\":%" PRIu64, t->nonzero);
}

/* One tensor's JSON and blobs; returns 0, or the failing status. */
static dz_status dump_one(dz_file *f, size_t i, const char *how, void *scratch, size_t sb, blobs *b) {
    const dz_tensor *t = dz_tensor_at(f, i);
    kept_list k;
    dz_status st;
    void *dense;
    b->n = 0;
    describe(t, i);
    if (t->encoding != DZ_ALIAS) {
        const uint8_t *raw;
        size_t rawlen;
        dense = xmalloc(t->dense_bytes);
        if ((st = dz_decode_dense(f, i, dense, t->dense_bytes, scratch, sb)) != DZ_OK) return st;
        add(b, "dense", dense, t->dense_bytes);
        if (t->encoding == DZ_RAW && dz_raw_bytes(f, i, &raw, &rawlen) == DZ_OK) add(b, "raw", (void *)raw, rawlen);
        if (t->encoding != DZ_RAW) {
            if ((st = kept(f, i, how, &k, scratch, sb)) != DZ_OK) return st;
            /* scaled rows: the values, as deepzip's nonzeros() gives them (no one codebook holds them) */
            int codes = t->encoding == DZ_SHARED && !t->scaled;
            add(b, "positions", k.pos, 8 * k.n);
            add(b, codes ? "codes" : "values", codes ? (void *)k.codes : (void *)k.values, (codes ? 2 : 4) * k.n);
        }
        if (t->encoding == DZ_SHARED && !t->scaled) {
            float *book = xmalloc(4 * (size_t)t->codebook_size);
            if ((st = dz_codebook(f, i, book, t->codebook_size)) != DZ_OK) return st;
            add(b, "codebook", book, 4 * (size_t)t->codebook_size);
        }
    }
    printf("}");
    return DZ_OK;
}

/* The carried files (version 6) as JSON, their inflated bytes kept in *data. */
static dz_status dump_files(dz_file *f, uint8_t **data, uint64_t *lengths) {
    char name[DZ_FILE_NAME_MAX + 1];
    dz_status st;
    size_t i;
    for (i = 0; i < dz_file_count(f); i++) {
        if ((st = dz_file_info(f, i, name, sizeof name, &lengths[i])) != DZ_OK) return st;
        data[i] = xmalloc((size_t)lengths[i]);
        if ((st = dz_file_read(f, i, data[i], (size_t)lengths[i])) != DZ_OK) return st;
        printf("%s{\"name\":\"%s\",\"length\":%" PRIu64 "}", i ? "," : "", name, lengths[i]);
    }
    return DZ_OK;
}

static int dump(dz_file *f, const char *how) {
    size_t i, n = dz_tensor_count(f), sb = dz_scratch_max(f), nf = dz_file_count(f);
    void *scratch = xmalloc(sb);
    blobs *all = xmalloc(sizeof(blobs) * (n ? n : 1));
    uint8_t **files = xmalloc(sizeof(uint8_t *) * (nf ? nf : 1));
    uint64_t *lengths = xmalloc(sizeof(uint64_t) * (nf ? nf : 1));
    dz_status st;
    int j;
    if ((st = dz_verify(f, scratch, sb)) != DZ_OK) return die(f, st);
    printf("{\"version\":%u,\"arena\":%lu,\"scratch\":%lu,\"tensors\":[", dz_version(f), (unsigned long)dz_arena_used(f),
           (unsigned long)sb);
    for (i = 0; i < n; i++) {
        if (i) printf(",");
        if ((st = dump_one(f, i, how, scratch, sb, &all[i])) != DZ_OK) return die(f, st);
    }
    printf("],\"files\":[");
    if ((st = dump_files(f, files, lengths)) != DZ_OK) return die(f, st);
    printf("]}\n");
    for (i = 0; i < n; i++)
        for (j = 0; j < all[i].n; j++) fwrite(all[i].blob[j], 1, all[i].len[j], stdout);
    for (i = 0; i < nf; i++) fwrite(files[i], 1, (size_t)lengths[i], stdout);
    return 0;
}

static int sizes(dz_file *f) {
    size_t i, n = dz_tensor_count(f);
    printf("{\"arena\":%lu,\"scratch_max\":%lu,\"tensors\":[", (unsigned long)dz_arena_used(f), (unsigned long)dz_scratch_max(f));
    for (i = 0; i < n; i++) {
        const dz_tensor *t = dz_tensor_at(f, i);
        printf("%s{\"name\":\"%s\",\"dense_bytes\":%lu,\"kept_max\":%" PRIu64 ",\"scratch_bytes\":%lu}", i ? "," : "",
               t->name.ptr, (unsigned long)t->dense_bytes, t->kept_max, (unsigned long)t->scratch_bytes);
    }
    printf("]}\n");
    return 0;
}

int check_sizes(dz_file *f, const uint8_t *data, size_t size);

static double seconds(clock_t since) { return (double)(clock() - since) / CLOCKS_PER_SEC; }

static int bench(dz_file *f, const uint8_t *data, size_t size, void *arena) {
    size_t i, n = dz_tensor_count(f), sb = dz_scratch_max(f), most = 0;
    uint64_t elements = 0, kept = 0;
    double t_open, t_dense, t_kept;
    void *scratch = xmalloc(sb), *out;
    dz_status st = DZ_OK;
    clock_t t = clock();
    for (i = 0; i < 10; i++) st = dz_open(f, data, size, arena, dz_arena_used(f));
    t_open = seconds(t) / 10;
    for (i = 0; i < n; i++) if (dz_tensor_at(f, i)->dense_bytes > most) most = dz_tensor_at(f, i)->dense_bytes;
    out = xmalloc(most);
    t = clock();
    for (i = 0; i < n && st == DZ_OK; i++) {
        const dz_tensor *t1 = dz_tensor_at(f, i);
        if (t1->encoding == DZ_ALIAS) continue;
        st = dz_decode_dense(f, i, out, t1->dense_bytes, scratch, sb);
        elements += t1->numel;
    }
    t_dense = seconds(t);
    t = clock();
    for (i = 0; i < n && st == DZ_OK; i++) {
        dz_iter it;
        dz_kept k;
        const dz_tensor *t1 = dz_tensor_at(f, i);
        if (t1->encoding != DZ_SHARED && t1->encoding != DZ_SPARSE) continue;
        if ((st = dz_iter_begin(&it, f, i, scratch, sb)) == DZ_OK)
            while (dz_iter_next(&it, &k) > 0) kept++;
    }
    t_kept = seconds(t);
    if (st != DZ_OK) return die(f, st);
    printf("{\"open_s\":%.6f,\"dense_s\":%.4f,\"kept_s\":%.4f,\"elements\":%" PRIu64 ",\"kept\":%" PRIu64 "}\n",
           t_open, t_dense, t_kept, elements, kept);
    return 0;
}

int main(int argc, char **argv) {
    const char *mode = argc == 3 ? argv[1] : "";
    size_t size;
    uint8_t *data;
    void *arena;
    dz_file f;
    dz_status st;
    int rc;
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: dzip-dump [--sizes|--verify|--dump[=visit|iter]|--check-sizes|--bench] FILE\n");
        return 2;
    }
    path = argv[argc - 1];
    data = read_file(path, &size);
    if ((st = open_file(&f, data, size, &arena)) != DZ_OK) return die(&f, st);
    if (!strcmp(mode, "--sizes")) rc = sizes(&f);
    else if (!strcmp(mode, "--dump")) rc = dump(&f, "buffer");
    else if (!strncmp(mode, "--dump=", 7)) rc = dump(&f, mode + 7);
    else if (!strcmp(mode, "--check-sizes")) rc = check_sizes(&f, data, size);
    else if (!strcmp(mode, "--bench")) rc = bench(&f, data, size, arena);
    else if (!strcmp(mode, "--verify")) {
        void *scratch = xmalloc(dz_scratch_max(&f));
        rc = (st = dz_verify(&f, scratch, dz_scratch_max(&f))) == DZ_OK ? 0 : die(&f, st);
    } else if (!*mode) {
        summary(&f);
        rc = 0;
    } else {
        fprintf(stderr, "dzip-dump: unknown option %s\n", mode);
        rc = 2;
    }
    fflush(stdout);
    return rc;
}

/* Each size the library reports is the least that works: one byte (or entry) less is refused
 * with the same figure, the figure itself is accepted. Prints "sizes exact" and exits 0. */
static int expect(dz_file *f, dz_status got, dz_status want, size_t needed, const char *what) {
    if (got == want && (want == DZ_OK || dz_needed(f) == needed)) return 0;
    fprintf(stderr, "dzip-dump: %s: %s: got %s (%s), needed %lu, reported %lu\n", path, what, dz_status_name(got),
            dz_message(f), (unsigned long)needed, (unsigned long)dz_needed(f));
    return 1;
}

int check_sizes(dz_file *f, const uint8_t *data, size_t size) {
    size_t i, n = dz_tensor_count(f), need = dz_arena_used(f), sb = dz_scratch_max(f);
    uint8_t *arena = xmalloc(need), *scratch = xmalloc(sb);
    dz_file g;
    int bad = 0;
    bad |= expect(&g, dz_open(&g, data, size, arena, need - 1), DZ_E_ARENA, need, "arena - 1");
    bad |= expect(&g, dz_open(&g, data, size, arena, need), DZ_OK, need, "arena");
    for (i = 0; i < n && !bad; i++) {
        const dz_tensor *t = dz_tensor_at(&g, i);
        float *out = xmalloc(t->dense_bytes + 4);
        size_t cnt;
        if (t->scratch_bytes)
            bad |= expect(&g, dz_decode_dense(&g, i, out, t->dense_bytes, scratch, t->scratch_bytes - 1), DZ_E_SCRATCH,
                          t->scratch_bytes, "scratch - 1");
        if (t->dense_bytes)
            bad |= expect(&g, dz_decode_dense(&g, i, out, t->dense_bytes - 1, scratch, t->scratch_bytes), DZ_E_OUTPUT,
                          t->dense_bytes, "output - 1");
        bad |= expect(&g, dz_decode_dense(&g, i, out, t->dense_bytes, scratch, t->scratch_bytes), DZ_OK, 0, "dense");
        if (!bad && t->encoding != DZ_RAW && dz_count_kept(&g, i, scratch, sb, NULL) == DZ_OK) {
            uint64_t k = 0;
            dz_count_kept(&g, i, scratch, sb, &k);
            if (k) bad |= expect(&g, dz_decode_kept(&g, i, NULL, NULL, NULL, (size_t)k - 1, &cnt, scratch, sb), DZ_E_OUTPUT,
                                 (size_t)k, "kept - 1");
        }
        free(out);
    }
    (void)f;
    if (!bad) printf("sizes exact\n");
    return bad ? 2 : 0;
}
