/* The packed layout of a layer, and one inference: the op list run in order. */
#include <string.h>

#include "internal.h"

/* The export counts the op list's flash as 144 bytes a record (cplan.OP_BYTES): no pointers, so
 * the same on every target. */
typedef char dzrt__op_size[sizeof(dzrt_op) == 144 ? 1 : -1];

static uint64_t align4(uint64_t n) { return (n + 3) & ~(uint64_t)3; }

int dzrt__has_bn(const dzrt_layer *l) { return l->bn_var >= 0; }

uint64_t dzrt__layout(const dzrt_layer *l, uint64_t off[DZRT__PIECES]) {
    uint64_t at = 0;
    int i;
    for (i = 0; i < DZRT__PIECES; i++) off[i] = DZRT__ABSENT;
    if (l->form == DZRT_FORM_DENSE) {
        off[DZRT__VALS] = 0;
        at = (uint64_t)l->rows * l->cols * 4;
    } else if (l->form == DZRT_FORM_SHARED || l->form == DZRT_FORM_SPARSE) {
        off[DZRT__PTR] = 0;
        at = align4(((uint64_t)l->rows + 1) * l->ptr_bytes);
        off[DZRT__ENT] = at;
        at = align4(at + (uint64_t)l->kept * l->entry_bytes);
        off[DZRT__VALS] = at;
        at += (uint64_t)(l->form == DZRT_FORM_SHARED ? l->book : l->kept) * 4;
    }
    if (dzrt__has_bn(l)) {
        off[DZRT__SCALE] = at;
        at += (uint64_t)l->rows * 4;
    }
    if (dzrt__has_bn(l) || l->bias >= 0) {
        off[DZRT__SHIFT] = at;
        at += (uint64_t)l->rows * 4;
    }
    return at;
}

void dzrt__view_of(const dzrt_layer *l, const uint8_t *arena, dzrt__view *v) {
    uint64_t off[DZRT__PIECES];
    const uint8_t *base = arena + l->offset;
    dzrt__layout(l, off);
    /* The offsets were checked against the arena by dzrt_init, so they fit a size_t. */
    v->ptr = off[DZRT__PTR] == DZRT__ABSENT ? NULL : base + (size_t)off[DZRT__PTR];
    v->ent = off[DZRT__ENT] == DZRT__ABSENT ? NULL : base + (size_t)off[DZRT__ENT];
    v->vals = off[DZRT__VALS] == DZRT__ABSENT ? NULL : (const float *)(const void *)(base + (size_t)off[DZRT__VALS]);
    v->scale = off[DZRT__SCALE] == DZRT__ABSENT ? NULL : (const float *)(const void *)(base + (size_t)off[DZRT__SCALE]);
    v->shift = off[DZRT__SHIFT] == DZRT__ABSENT ? NULL : (const float *)(const void *)(base + (size_t)off[DZRT__SHIFT]);
}

static float *buffer(dzrt *rt, const float *x, uint16_t id) {
    const dzrt_buf *b = &rt->m->bufs[id];
    /* The input is only ever read (dzrt_init refuses an op writing it), hence the cast. */
    return b->offset == DZRT_EXTERNAL ? (float *)(uintptr_t)x : (float *)(void *)(rt->arena + b->offset);
}

int dzrt_run(dzrt *rt, const float *x, float *y) {
    const dzrt_model *m;
    uint16_t i;
    if (!rt || !rt->ready || !x || !y) return -1;
    m = rt->m;
    for (i = 0; i < m->n_ops; i++) {
        const dzrt_op *op = &m->ops[i];
        const float *in = buffer(rt, x, op->in);
        float *out = buffer(rt, x, op->out);
        dzrt__view v;
        uint32_t n = op->c * op->h * op->w;
        switch (op->kind) {
        case DZRT_CONV:
            dzrt__view_of(&op->layer, rt->arena, &v);
            dzrt__conv(op, &v, in, out, op->tmp == DZRT_NONE ? NULL : buffer(rt, x, op->tmp));
            break;
        case DZRT_LINEAR:
            dzrt__view_of(&op->layer, rt->arena, &v);
            dzrt__linear(op, &v, in, out);
            break;
        case DZRT_POOL:
            dzrt__pool(&op->pool, in, op->c, op->h, op->w, out, op->yh, op->yw, op->relu != 0);
            break;
        case DZRT_ADD:
            dzrt__add(in, buffer(rt, x, op->in2), out, n, op->relu != 0);
            break;
        case DZRT_COPY:
            memmove(out + op->at, in, (size_t)n * sizeof *in);
            break;
        case DZRT_AFFINE:
            dzrt__view_of(&op->layer, rt->arena, &v);
            dzrt__affine(&v, in, out, op->c, op->h * op->w, op->relu != 0);
            break;
        case DZRT_RELU:
            dzrt__relu(in, out, n);
            break;
        default: /* DZRT_SOFTMAX; dzrt_init refused any other kind */
            dzrt__softmax(in, out, n);
            break;
        }
    }
    memcpy(y, buffer(rt, x, m->output), (size_t)m->bufs[m->output].numel * sizeof *y);
    return 0;
}

const char *dzrt_message(const dzrt *rt) { return rt ? rt->message : "no runtime (NULL)."; }
