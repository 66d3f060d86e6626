/* dzrt_init: check the op list, then decode each layer's tensors with libdzip and pack them.
 *
 * The op list comes from the export, but it is still checked like input: every buffer and packed
 * layer inside the arena, every shape consistent with its op and with the tensors the file
 * holds, every entry inside its row. A corrupt model.c then fails init with a sentence instead
 * of writing past the arena. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dzip.h"
#include "internal.h"

static int fail(dzrt *rt, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static int fail(dzrt *rt, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rt->message, sizeof rt->message, fmt, ap);
    va_end(ap);
    rt->ready = 0;
    return -1;
}

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static unsigned bit_length(uint64_t v) {
    unsigned n = 0;
    while (v) { n++; v >>= 1; }
    return n;
}

/* ---- the op list against itself and the arena */

static int check_buf(dzrt *rt, uint16_t op, uint16_t id, uint64_t numel, int written) {
    const dzrt_model *m = rt->m;
    const dzrt_buf *b;
    if (id == DZRT_NONE || id >= m->n_bufs) return fail(rt, "Op %u names buffer %u, which the model has not.", op, id);
    b = &m->bufs[id];
    if (b->offset == DZRT_EXTERNAL) {
        if (written || id != m->input) return fail(rt, "Op %u writes the caller's input buffer.", op);
    } else if (b->offset % 4 || b->offset < m->packed_bytes || (uint64_t)b->offset + 4ull * b->numel > rt->arena_size) {
        return fail(rt, "Buffer %u (bytes %lu to %lu) lies outside the arena's %lu bytes of activations.", id,
                    (unsigned long)b->offset, (unsigned long)(b->offset + 4ull * b->numel), (unsigned long)rt->arena_size);
    }
    if (b->numel < numel) return fail(rt, "Op %u needs %lu elements in buffer %u, which holds %lu.", op,
                                      (unsigned long)numel, id, (unsigned long)b->numel);
    return 0;
}

static int check_layer(dzrt *rt, uint16_t i, const dzrt_layer *l) {
    uint64_t off[DZRT__PIECES], bytes = dzrt__layout(l, off);
    unsigned need;
    if (l->form > DZRT_FORM_SPARSE) return fail(rt, "Op %u packs its weight in an unknown form %u.", i, l->form);
    if (dzrt__has_bn(l) && l->bn_mean < 0) return fail(rt, "Op %u folds a batch norm without a running mean.", i);
    if (l->offset % 8 || bytes != l->bytes || (uint64_t)l->offset + bytes > rt->m->packed_bytes)
        return fail(rt, "Op %u's packed weights (%lu bytes at %lu) do not fit the %lu packed bytes of the model.", i,
                    (unsigned long)l->bytes, (unsigned long)l->offset, (unsigned long)rt->m->packed_bytes);
    if (l->form == DZRT_FORM_SHARED || l->form == DZRT_FORM_SPARSE) {
        need = bit_length(l->cols ? l->cols - 1u : 0u) + (l->form == DZRT_FORM_SHARED ? l->code_bits : 0u);
        if ((l->entry_bytes != 1 && l->entry_bytes != 2 && l->entry_bytes != 4) || need > 8u * l->entry_bytes ||
            (l->ptr_bytes != 2 && l->ptr_bytes != 4) || (l->ptr_bytes == 2 && l->kept > 0xFFFFu) ||
            (l->form == DZRT_FORM_SHARED && (l->code_bits > 16 || l->book > (1ul << l->code_bits))))
            return fail(rt, "Op %u's entry widths cannot hold its columns, codes or kept count.", i);
    }
    return 0;
}

static int check_pool(dzrt *rt, uint16_t i, const dzrt_pool *p, uint32_t h, uint32_t w, uint32_t yh, uint32_t yw) {
    if (p->kind == DZRT_POOL_NONE || p->kind > DZRT_POOL_ADAPTIVE_MAX || !h || !w || !yh || !yw)
        return fail(rt, "Op %u has an unknown pool or an empty plane.", i);
    if (p->kind == DZRT_POOL_MAX || p->kind == DZRT_POOL_AVG) {
        /* Every window must hold at least one input: torch's own rule for ceil_mode and padding. */
        if (!p->sh || !p->sw || p->ph >= p->kh || p->pw >= p->kw || (uint64_t)(yh - 1) * p->sh >= (uint64_t)h + p->ph ||
            (uint64_t)(yw - 1) * p->sw >= (uint64_t)w + p->pw)
            return fail(rt, "Op %u's pool has windows that cover no input.", i);
    }
    return 0;
}

static int check_op(dzrt *rt, uint16_t i) {
    const dzrt_op *op = &rt->m->ops[i];
    uint64_t n = (uint64_t)op->c * op->h * op->w, yn = (uint64_t)op->yc * op->yh * op->yw;
    int unary = 1;
    if (!n || n > 0xFFFFFFFFu || yn > 0xFFFFFFFFu) return fail(rt, "Op %u has an empty or huge input.", i);
    switch (op->kind) {
    case DZRT_CONV:
        if (!op->groups || op->c % op->groups || op->oc % op->groups || !op->sh || !op->sw || !op->dh || !op->dw ||
            !op->oh || !op->ow || op->yc != op->oc || op->layer.rows != op->oc ||
            (uint64_t)op->layer.cols != (uint64_t)(op->c / op->groups) * op->kh * op->kw || op->layer.form == DZRT_FORM_NONE)
            return fail(rt, "Op %u is a convolution of inconsistent shapes.", i);
        if (op->pool.kind == DZRT_POOL_NONE) {
            if (op->yh != op->oh || op->yw != op->ow || op->tmp != DZRT_NONE)
                return fail(rt, "Op %u is a convolution of inconsistent shapes.", i);
        } else if (check_pool(rt, i, &op->pool, op->oh, op->ow, op->yh, op->yw) ||
                   check_buf(rt, i, op->tmp, (uint64_t)op->oh * op->ow, 1)) {
            return -1;
        }
        if (check_layer(rt, i, &op->layer)) return -1;
        break;
    case DZRT_LINEAR:
        if (op->layer.cols != n || op->layer.rows != op->oc || op->yc != op->oc || op->yh != 1 || op->yw != 1 ||
            op->layer.form == DZRT_FORM_NONE)
            return fail(rt, "Op %u is a linear layer of inconsistent shapes.", i);
        if (check_layer(rt, i, &op->layer)) return -1;
        break;
    case DZRT_POOL:
        if (op->yc != op->c || check_pool(rt, i, &op->pool, op->h, op->w, op->yh, op->yw)) return fail(rt, "Op %u is a pool of inconsistent shapes.", i);
        break;
    case DZRT_ADD:
        unary = 0;
        if (yn != n) return fail(rt, "Op %u adds tensors of other sizes.", i);
        if (check_buf(rt, i, op->in2, n, 0)) return -1;
        break;
    case DZRT_COPY:
        if ((uint64_t)op->at + n > yn) return fail(rt, "Op %u copies past the end of its output.", i);
        break;
    case DZRT_AFFINE:
        if (yn != n || op->layer.form != DZRT_FORM_NONE || op->layer.rows != op->c || !dzrt__has_bn(&op->layer))
            return fail(rt, "Op %u is a batch norm of inconsistent shapes.", i);
        if (check_layer(rt, i, &op->layer)) return -1;
        break;
    case DZRT_RELU:
    case DZRT_SOFTMAX:
        if (yn != n) return fail(rt, "Op %u changes the size of its input.", i);
        break;
    default:
        return fail(rt, "Op %u is of unknown kind %u.", i, op->kind);
    }
    if (unary && op->in2 != DZRT_NONE) return fail(rt, "Op %u has a second input it does not use.", i);
    return check_buf(rt, i, op->in, n, 0) || check_buf(rt, i, op->out, yn, 1) ? -1 : 0;
}

/* ---- packing */

/* libdzip's state while the weights are packed: placed in the arena's transient part (it is
 * ~1 KB, and on the stack it would add to the RAM a device must reserve for the stack). */
typedef struct dzrt__state {
    dz_file f;
    dz_iter it;
} dzrt__state;

/* The export reserves DZRT_STATE_BYTES for it whatever the target's pointer size. */
typedef char dzrt__state_fits[sizeof(dzrt__state) <= DZRT_STATE_BYTES ? 1 : -1];

typedef struct dzrt__init {
    dzrt *rt;
    dzrt__state *st;
    uint8_t *scratch, *temp;     /* libdzip's decoder scratch; one vector of floats for batch norms */
    size_t scratch_bytes, temp_bytes;
} dzrt__init;

static int dz_fail(dzrt__init *s, const char *what, int32_t index) {
    const dz_tensor *t = dz_tensor_at(&s->st->f, (size_t)index);
    return fail(s->rt, "libdzip cannot read %s '%.60s': %s", what, t ? t->name.ptr : "?", dz_message(&s->st->f));
}

/* Tensor `index` as `rows` float32 into out (a bias or batch-norm vector). */
static int vector(dzrt__init *s, int32_t index, uint32_t rows, float *out, const char *what) {
    const dz_tensor *t = dz_tensor_at(&s->st->f, (size_t)index);
    if (!t || t->numel != rows || t->dense_bytes != 4ull * rows || t->dtype > DZ_BFLOAT16)
        return fail(s->rt, "The %s of a layer (tensor %ld) is not %lu floats in the file.", what, (long)index, (unsigned long)rows);
    if (dz_decode_dense(&s->st->f, (size_t)index, out, 4ull * rows, s->scratch, s->scratch_bytes) != DZ_OK)
        return dz_fail(s, what, index);
    return 0;
}

/* scale = gamma / sqrt(var + eps), shift = (bias - mean) * scale + beta: torch's batch norm on
 * the layer's output, folded so that it costs one multiply-add per output and the codes stay
 * those of the file (scaling the codebook instead would need one codebook per channel). */
static int fold(dzrt__init *s, const dzrt_layer *l, float *scale, float *shift) {
    float *t = (float *)(void *)s->temp;
    uint32_t r;
    if (l->bias >= 0) {
        if (vector(s, l->bias, l->rows, shift, "bias")) return -1;
    } else if (shift) {
        memset(shift, 0, 4ull * l->rows);
    }
    if (!dzrt__has_bn(l)) return 0;
    if (4ull * l->rows > s->temp_bytes) return fail(s->rt, "The arena leaves no room to fold a batch norm of %lu channels.", (unsigned long)l->rows);
    if (vector(s, l->bn_var, l->rows, scale, "running variance")) return -1;
    if (l->bn_weight >= 0 && vector(s, l->bn_weight, l->rows, t, "batch-norm weight")) return -1;
    /* torch's own order (aten batch_norm: invstd = 1 / sqrt(var + eps), alpha = invstd * weight),
     * so that the folded scale is the very float torch multiplies by. */
    for (r = 0; r < l->rows; r++) {
        float inv = 1.0f / sqrtf(scale[r] + l->eps);
        scale[r] = l->bn_weight >= 0 ? inv * t[r] : inv;
    }
    if (vector(s, l->bn_mean, l->rows, t, "running mean")) return -1;
    for (r = 0; r < l->rows; r++) shift[r] = (shift[r] - t[r]) * scale[r];
    if (l->bn_bias >= 0) {
        if (vector(s, l->bn_bias, l->rows, t, "batch-norm bias")) return -1;
        for (r = 0; r < l->rows; r++) shift[r] += t[r];
    }
    return 0;
}

static void put(uint8_t *p, unsigned bytes, uint32_t i, uint32_t v) {
    if (bytes == 1) p[i] = (uint8_t)v;
    else if (bytes == 2) ((uint16_t *)(void *)p)[i] = (uint16_t)v;
    else ((uint32_t *)(void *)p)[i] = v;
}

/* The kept weights of a shared or sparse tensor, in position order, into row pointers and
 * entries: the row advances as positions pass each row's end, so no 64-bit division is needed
 * (a library call on a Cortex-M). */
static int pack_kept(dzrt__init *s, uint16_t i, const dzrt_layer *l, uint8_t *base, const uint64_t *off) {
    uint8_t *ptr = base + off[DZRT__PTR], *ent = base + off[DZRT__ENT];
    float *vals = (float *)(void *)(base + off[DZRT__VALS]);
    uint64_t row_end = l->cols;
    uint32_t row = 0, n = 0;
    dz_iter *it = &s->st->it;
    dz_kept k;
    int rc;
    if (l->form == DZRT_FORM_SHARED && dz_tensor_at(&s->st->f, (size_t)l->weight)->scaled)
        return fail(s->rt, "Op %u's weight has a scale per row, which this runtime does not compute from.", i);
    if (l->form == DZRT_FORM_SHARED &&
        (dz_tensor_at(&s->st->f, (size_t)l->weight)->codebook_size != l->book ||
         dz_codebook(&s->st->f, (size_t)l->weight, vals, l->book) != DZ_OK))
        return fail(s->rt, "Op %u's codebook is not the %lu values the op list was written for.", i, (unsigned long)l->book);
    if (dz_iter_begin(it, &s->st->f, (size_t)l->weight, s->scratch, s->scratch_bytes) != DZ_OK) return dz_fail(s, "weight", l->weight);
    put(ptr, l->ptr_bytes, 0, 0);
    while ((rc = dz_iter_next(it, &k)) > 0) {
        uint32_t col;
        while (k.position >= row_end) {
            if (++row >= l->rows) return fail(s->rt, "Op %u's weight has a kept entry past its last row.", i);
            put(ptr, l->ptr_bytes, row, n);
            row_end += l->cols;
        }
        if (n == l->kept) return fail(s->rt, "Op %u's weight keeps more than the %lu entries planned.", i, (unsigned long)l->kept);
        col = (uint32_t)(k.position - (row_end - l->cols));
        if (l->form == DZRT_FORM_SHARED) {
            if (!k.code || k.code > l->book) return fail(s->rt, "Op %u's weight has a code outside its codebook.", i);
            put(ent, l->entry_bytes, n, col << l->code_bits | (k.code - 1u));
        } else {
            put(ent, l->entry_bytes, n, col);
            vals[n] = k.value;
        }
        n++;
    }
    if (rc < 0) return dz_fail(s, "weight", l->weight);
    if (n != l->kept) return fail(s->rt, "Op %u's weight keeps %lu entries, not the %lu planned.", i, (unsigned long)n, (unsigned long)l->kept);
    while (++row <= l->rows) put(ptr, l->ptr_bytes, row, n);
    return 0;
}

static int check_weight(dzrt__init *s, uint16_t i, const dzrt_op *op) {
    const dzrt_layer *l = &op->layer;
    const dz_tensor *t = dz_tensor_at(&s->st->f, (size_t)l->weight);
    static const dz_encoding want[] = {DZ_RAW, DZ_RAW, DZ_SHARED, DZ_SPARSE};
    uint64_t cols = 1;
    unsigned d;
    if (!t) return fail(s->rt, "Op %u names tensor %ld, which the file has not.", i, (long)l->weight);
    for (d = 1; d < t->ndim; d++) cols *= t->shape[d];
    if (t->ndim < 2 || t->shape[0] != l->rows || cols != l->cols || t->dtype > DZ_BFLOAT16 ||
        (op->kind == DZRT_CONV && (t->ndim != 4 || t->shape[2] != op->kh || t->shape[3] != op->kw)))
        return fail(s->rt, "Op %u expects a %lu x %lu weight, and tensor '%.60s' is not one.", i, (unsigned long)l->rows,
                    (unsigned long)l->cols, t->name.ptr);
    if (t->encoding != want[l->form])
        return fail(s->rt, "Op %u expects tensor '%.60s' to be %s, and the file stores it %s.", i, t->name.ptr,
                    dz_encoding_name(want[l->form]), dz_encoding_name(t->encoding));
    return 0;
}

static int pack(dzrt__init *s, uint16_t i) {
    const dzrt_op *op = &s->rt->m->ops[i];
    const dzrt_layer *l = &op->layer;
    uint64_t off[DZRT__PIECES];
    uint8_t *base = s->rt->arena + l->offset;
    dzrt__layout(l, off);
    if (l->form != DZRT_FORM_NONE) {
        if (check_weight(s, i, op)) return -1;
        if (l->form == DZRT_FORM_DENSE) {
            if (dz_decode_dense(&s->st->f, (size_t)l->weight, base, (size_t)l->rows * l->cols * 4, s->scratch, s->scratch_bytes) != DZ_OK)
                return dz_fail(s, "weight", l->weight);
        } else if (pack_kept(s, i, l, base, off)) {
            return -1;
        }
    }
    return fold(s, l, off[DZRT__SCALE] == DZRT__ABSENT ? NULL : (float *)(void *)(base + off[DZRT__SCALE]),
                off[DZRT__SHIFT] == DZRT__ABSENT ? NULL : (float *)(void *)(base + off[DZRT__SHIFT]));
}

int dzrt_init(dzrt *rt, const dzrt_model *m, void *arena, size_t arena_size) {
    dzrt__init s;
    size_t transient, used, rows_max = 0;
    uint16_t i;
    dz_status st;
    if (!rt) return -1;
    memset(rt, 0, sizeof *rt);
    rt->m = m;
    rt->arena = (uint8_t *)arena;
    rt->arena_size = arena_size;
    if (!m || m->abi != DZRT_ABI || !m->ops || !m->bufs || !m->file || !m->n_ops)
        return fail(rt, "The model record is empty or was written for another runtime version (ABI %lu, this is %d).",
                    m ? (unsigned long)m->abi : 0ul, DZRT_ABI);
    if (!arena || (uintptr_t)arena % 8) return fail(rt, "The arena must be 8-byte aligned.");
    if (m->packed_bytes > arena_size)
        return fail(rt, "The arena of %lu bytes cannot hold the %lu bytes of packed weights.", (unsigned long)arena_size,
                    (unsigned long)m->packed_bytes);
    if (m->input >= m->n_bufs || m->output >= m->n_bufs || m->bufs[m->output].offset == DZRT_EXTERNAL)
        return fail(rt, "The model's input or output buffer is not one of its buffers.");
    for (i = 0; i < m->n_ops; i++) {
        if (check_op(rt, i)) return -1;
        /* The vector is for folding batch norms only; a net without one needs none. */
        if (dzrt__has_bn(&m->ops[i].layer) && m->ops[i].layer.rows > rows_max) rows_max = m->ops[i].layer.rows;
    }
    /* Everything after the packed weights is free until the first run: libdzip's index of the
     * header, its scratch and one vector go there. */
    memset(&s, 0, sizeof s);
    s.rt = rt;
    transient = align8(m->packed_bytes);
    if (transient + DZRT_STATE_BYTES > arena_size)
        return fail(rt, "The arena of %lu bytes leaves no room to open the file.", (unsigned long)arena_size);
    s.st = (dzrt__state *)(void *)(rt->arena + transient);
    transient += DZRT_STATE_BYTES;
    st = dz_open(&s.st->f, m->file, m->file_size, rt->arena + transient, arena_size - transient);
    if (st == DZ_E_ARENA)
        return fail(rt, "The arena of %lu bytes is too small to open the file: init needs %lu bytes before the scratch.",
                    (unsigned long)arena_size, (unsigned long)(transient + dz_needed(&s.st->f)));
    if (st != DZ_OK) return fail(rt, "libdzip refuses the model's file: %s", dz_message(&s.st->f));
    used = transient + align8(dz_arena_used(&s.st->f));
    s.scratch = rt->arena + used;
    s.scratch_bytes = align8(dz_scratch_max(&s.st->f));
    s.temp = s.scratch + s.scratch_bytes;
    s.temp_bytes = 4 * rows_max;
    used += s.scratch_bytes + s.temp_bytes;
    if (used > arena_size)
        return fail(rt, "The arena of %lu bytes is too small: init needs %lu.", (unsigned long)arena_size, (unsigned long)used);
    rt->init_peak = used;
    for (i = 0; i < m->n_ops; i++)
        if ((m->ops[i].kind == DZRT_CONV || m->ops[i].kind == DZRT_LINEAR || m->ops[i].kind == DZRT_AFFINE) && pack(&s, i))
            return -1;
    rt->ready = 1;
    rt->message[0] = '\0';
    return 0;
}
