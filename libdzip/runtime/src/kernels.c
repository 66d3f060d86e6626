/* The arithmetic: float32 throughout (a Cortex-M4F has a single-precision FPU only), one sample,
 * channels x height x width. Compressed layers are computed from their packed entries; nothing
 * here ever expands one into a dense matrix. */
#include <math.h>
#include <string.h>

#include "internal.h"

static uint32_t row_start(const dzrt__view *v, const dzrt_layer *l, uint32_t r) {
    return l->ptr_bytes == 2 ? ((const uint16_t *)(const void *)v->ptr)[r] : ((const uint32_t *)(const void *)v->ptr)[r];
}

/* The j-th entry of a shared or sparse layer, widened. */
static uint32_t entry(const dzrt__view *v, const dzrt_layer *l, uint32_t j) {
    switch (l->entry_bytes) {
    case 1: return v->ent[j];
    case 2: return ((const uint16_t *)(const void *)v->ent)[j];
    default: return ((const uint32_t *)(const void *)v->ent)[j];
    }
}

/* The scale, shift and ReLU applied once a row's sum is complete: where a folded batch norm
 * lands, so the codebook itself stays shared. */
static float finish(const dzrt__view *v, uint32_t r, float acc, int relu) {
    if (v->scale) acc *= v->scale[r];
    if (v->shift) acc += v->shift[r];
    return relu && !(acc > 0.0f) ? 0.0f : acc;
}

/* ---- linear: one dot product per output, over the row's kept entries only */

/* The same loop for each entry width: the width is a per-layer constant, and a switch inside
 * the loop would cost more than the multiply-add it guards. */
#define DZRT__SHARED_DOT(T)                                                                  \
    {                                                                                        \
        const T *e = (const T *)(const void *)v->ent;                                        \
        for (; j < end; j++) acc += book[e[j] & mask] * x[e[j] >> bits];                     \
    }
#define DZRT__SPARSE_DOT(T)                                                                  \
    {                                                                                        \
        const T *e = (const T *)(const void *)v->ent;                                        \
        for (; j < end; j++) acc += v->vals[j] * x[e[j]];                                    \
    }

void dzrt__linear(const dzrt_op *op, const dzrt__view *v, const float *x, float *y) {
    const dzrt_layer *l = &op->layer;
    const float *book = v->vals;
    const unsigned bits = l->code_bits;
    const uint32_t mask = (1u << bits) - 1u;
    uint32_t r, j, end;
    int relu = (op->relu & DZRT_RELU_BEFORE_POOL) != 0;
    for (r = 0; r < l->rows; r++) {
        float acc = 0.0f;
        if (l->form == DZRT_FORM_DENSE) {
            const float *w = v->vals + (size_t)r * l->cols;
            for (j = 0; j < l->cols; j++) acc += w[j] * x[j];
        } else {
            j = row_start(v, l, r);
            end = row_start(v, l, r + 1);
            if (l->form == DZRT_FORM_SHARED) {
                if (l->entry_bytes == 1) DZRT__SHARED_DOT(uint8_t)
                else if (l->entry_bytes == 2) DZRT__SHARED_DOT(uint16_t)
                else DZRT__SHARED_DOT(uint32_t)
            } else {
                if (l->entry_bytes == 1) DZRT__SPARSE_DOT(uint8_t)
                else if (l->entry_bytes == 2) DZRT__SPARSE_DOT(uint16_t)
                else DZRT__SPARSE_DOT(uint32_t)
            }
        }
        y[r] = finish(v, r, acc, relu);
    }
}

/* ---- convolution: each kept weight is swept across the output plane it feeds.
 *
 * Per output channel: zero its plane, then for each kept weight (input channel ci, tap ky, kx)
 * add weight x the shifted input plane over the output rows and columns whose tap falls inside
 * the input (computed once per weight, so the inner loop has no padding test). There is no
 * im2col buffer: the only working memory is the output plane itself. */

/* Where a tap (ky or kx) lands: output indices lo .. hi (hi < lo: none) read input o * s + d,
 * the range for which that index lies in [0, n). */
typedef struct dzrt__span {
    int32_t lo, hi, d;
} dzrt__span;

static dzrt__span span(int32_t d, uint32_t s, uint32_t n, uint32_t out) {
    dzrt__span r;
    r.d = d;
    r.lo = d >= 0 ? 0 : (int32_t)(((uint32_t)(-d) + s - 1) / s);
    r.hi = (int32_t)n - 1 - d < 0 ? -1 : ((int32_t)n - 1 - d) / (int32_t)s;
    if (r.hi > (int32_t)out - 1) r.hi = (int32_t)out - 1;
    return r;
}

/* Per conv call: the spans of the first DZRT__TAPS kernel rows and columns (computed once,
 * not per weight: a division costs more than the short row of multiply-adds a tap is), and
 * exact reciprocals to split a column into (channel, ky, kx) without dividing. */
#define DZRT__TAPS 8
typedef struct dzrt__geom {
    dzrt__span y[DZRT__TAPS], x[DZRT__TAPS];
    uint64_t inv_taps, inv_kw;   /* ceil(2^32 / d): n * inv >> 32 == n / d for n, d < 2^16 */
    uint32_t taps;
    int exact;                   /* columns < 2^16, so the reciprocals are exact */
} dzrt__geom;

static void geom(const dzrt_op *op, dzrt__geom *g) {
    uint32_t k;
    for (k = 0; k < op->kh && k < DZRT__TAPS; k++)
        g->y[k] = span((int32_t)(k * op->dh) - (int32_t)op->pad_h, op->sh, op->h, op->oh);
    for (k = 0; k < op->kw && k < DZRT__TAPS; k++)
        g->x[k] = span((int32_t)(k * op->dw) - (int32_t)op->pad_w, op->sw, op->w, op->ow);
    g->taps = (uint32_t)op->kh * op->kw;
    g->inv_taps = 0xFFFFFFFFull / g->taps + 1;
    g->inv_kw = 0xFFFFFFFFull / op->kw + 1;
    g->exact = op->layer.cols <= 0x10000u;
}

static void tap(const dzrt_op *op, const dzrt__geom *g, float *plane, const float *src, uint32_t col, float w) {
    uint32_t ci, t, ky, kx;
    dzrt__span sy, sx;
    int32_t oy, ox;
    if (g->exact) {
        ci = (uint32_t)((col * g->inv_taps) >> 32);
        t = col - ci * g->taps;
        ky = (uint32_t)((t * g->inv_kw) >> 32);
    } else {
        ci = col / g->taps;
        t = col % g->taps;
        ky = t / op->kw;
    }
    kx = t - ky * op->kw;
    src += (size_t)ci * op->h * op->w;
    sy = ky < DZRT__TAPS ? g->y[ky] : span((int32_t)(ky * op->dh) - (int32_t)op->pad_h, op->sh, op->h, op->oh);
    sx = kx < DZRT__TAPS ? g->x[kx] : span((int32_t)(kx * op->dw) - (int32_t)op->pad_w, op->sw, op->w, op->ow);
    if (sx.lo > sx.hi) return;  /* the tap only ever meets padding */
    for (oy = sy.lo; oy <= sy.hi; oy++) {
        /* The row the tap reads; ox * sw + d >= 0 for every ox in the span, so no pointer ever
         * points before the input. */
        const float *restrict s = src + (size_t)(oy * (int32_t)op->sh + sy.d) * op->w;
        float *restrict d = plane + (size_t)oy * op->ow;
        if (op->sw == 1) {
            /* Unrolled by four: a LeNet-5 inference 18 % faster on x86-64 (gcc -O2 does not
             * vectorise this), 2 % more instructions on a Cortex-M4 (QEMU -icount) but a quarter
             * of the taken branches, which cost that core 2 to 4 cycles each. Every output still
             * receives its taps in the same order, so the sums are unchanged. */
            const int32_t dx = sx.d;
            for (ox = sx.lo; ox + 3 <= sx.hi; ox += 4) {
                d[ox] += w * s[ox + dx];
                d[ox + 1] += w * s[ox + 1 + dx];
                d[ox + 2] += w * s[ox + 2 + dx];
                d[ox + 3] += w * s[ox + 3 + dx];
            }
            for (; ox <= sx.hi; ox++) d[ox] += w * s[ox + dx];
        } else
            for (ox = sx.lo; ox <= sx.hi; ox++) d[ox] += w * s[ox * (int32_t)op->sw + sx.d];
    }
}

static void conv_channel(const dzrt_op *op, const dzrt__geom *g, const dzrt__view *v, const float *x, uint32_t o,
                         float *plane) {
    const dzrt_layer *l = &op->layer;
    /* The input channels of o's group. */
    const float *in = x + (size_t)(o / (op->oc / op->groups)) * (op->c / op->groups) * op->h * op->w;
    uint32_t j, end;
    memset(plane, 0, (size_t)op->oh * op->ow * sizeof *plane);
    if (l->form == DZRT_FORM_DENSE) {
        const float *w = v->vals + (size_t)o * l->cols;
        for (j = 0; j < l->cols; j++) tap(op, g, plane, in, j, w[j]);
        return;
    }
    end = row_start(v, l, o + 1);
    for (j = row_start(v, l, o); j < end; j++) {
        uint32_t e = entry(v, l, j);
        if (l->form == DZRT_FORM_SHARED)
            tap(op, g, plane, in, e >> l->code_bits, v->vals[e & ((1u << l->code_bits) - 1u)]);
        else
            tap(op, g, plane, in, e, v->vals[j]);
    }
}

/* finish() over a plane, its tests taken out of the loop: a plane is hundreds of elements. */
static void epilogue(float *p, uint32_t n, float scale, float shift, int scaled, int shifted, int relu) {
    uint32_t i;
    if (scaled)
        for (i = 0; i < n; i++) p[i] *= scale;
    if (shifted)
        for (i = 0; i < n; i++) p[i] += shift;
    if (relu)
        for (i = 0; i < n; i++) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
}

void dzrt__conv(const dzrt_op *op, const dzrt__view *v, const float *x, float *y, float *tmp) {
    const uint32_t ohw = op->oh * op->ow, yhw = op->yh * op->yw;
    const int relu = (op->relu & DZRT_RELU_BEFORE_POOL) != 0;
    dzrt__geom g;
    uint32_t o;
    geom(op, &g);
    for (o = 0; o < op->oc; o++) {
        /* With a fused pool the full-size plane lives only in tmp, one channel at a time. */
        float *plane = tmp ? tmp : y + (size_t)o * ohw;
        conv_channel(op, &g, v, x, o, plane);
        epilogue(plane, ohw, v->scale ? v->scale[o] : 1.0f, v->shift ? v->shift[o] : 0.0f, v->scale != NULL,
                 v->shift != NULL, relu);
        if (tmp)
            dzrt__pool(&op->pool, plane, 1, op->oh, op->ow, y + (size_t)o * yhw, op->yh, op->yw,
                       (op->relu & DZRT_RELU_AFTER_POOL) != 0);
    }
}

/* ---- pooling, as torch computes it: windows clipped to the input; an average divides by the
 * window including its padding (count_include_pad) or by the inputs it covers. */

typedef struct dzrt__window {
    int32_t a, b, padded;   /* inputs [a, b), and the window's extent counting padding */
} dzrt__window;

static dzrt__window window(const dzrt_pool *p, int adaptive, uint32_t o, uint32_t out, uint32_t n, int vertical) {
    dzrt__window r;
    if (adaptive) {  /* torch: floor(o n / out) to ceil((o + 1) n / out); 32 bits hold o n (both < 2^16) */
        r.a = (int32_t)(o * n / out);
        r.b = (int32_t)(((o + 1) * n + out - 1) / out);
        r.padded = r.b - r.a;
    } else {
        int32_t k = vertical ? p->kh : p->kw, s = vertical ? p->sh : p->sw, pad = vertical ? p->ph : p->pw;
        int32_t start = (int32_t)o * s - pad, end = start + k;
        if (end > (int32_t)n + pad) end = (int32_t)n + pad;
        r.padded = end - start;
        r.a = start < 0 ? 0 : start;
        r.b = end > (int32_t)n ? (int32_t)n : end;
    }
    return r;
}

void dzrt__pool(const dzrt_pool *p, const float *x, uint32_t c, uint32_t h, uint32_t w, float *y,
                uint32_t yh, uint32_t yw, int relu) {
    const int adaptive = p->kind == DZRT_POOL_ADAPTIVE_AVG || p->kind == DZRT_POOL_ADAPTIVE_MAX;
    const int is_max = p->kind == DZRT_POOL_MAX || p->kind == DZRT_POOL_ADAPTIVE_MAX;
    uint32_t ch, oy, ox;
    for (ch = 0; ch < c; ch++) {
        const float *in = x + (size_t)ch * h * w;
        for (oy = 0; oy < yh; oy++) {
            const dzrt__window wy = window(p, adaptive, oy, yh, h, 1);
            float *out = y + ((size_t)ch * yh + oy) * yw;
            for (ox = 0; ox < yw; ox++) {
                const dzrt__window wx = window(p, adaptive, ox, yw, w, 0);
                int32_t iy, ix;
                float acc;
                if (is_max) {
                    acc = in[(size_t)wy.a * w + wx.a];
                    for (iy = wy.a; iy < wy.b; iy++)
                        for (ix = wx.a; ix < wx.b; ix++) {
                            float t = in[(size_t)iy * w + ix];
                            if (t > acc || t != t) acc = t;  /* NaN wins, as in torch */
                        }
                } else {
                    acc = 0.0f;
                    for (iy = wy.a; iy < wy.b; iy++)
                        for (ix = wx.a; ix < wx.b; ix++) acc += in[(size_t)iy * w + ix];
                    acc /= (float)(p->count_pad && !adaptive ? wy.padded * wx.padded : (wy.b - wy.a) * (wx.b - wx.a));
                }
                out[ox] = relu && !(acc > 0.0f) ? 0.0f : acc;
            }
        }
    }
}

/* ---- elementwise */

void dzrt__add(const float *a, const float *b, float *y, uint32_t n, int relu) {
    uint32_t i;
    for (i = 0; i < n; i++) {
        float t = a[i] + b[i];
        y[i] = relu && !(t > 0.0f) ? 0.0f : t;
    }
}

void dzrt__affine(const dzrt__view *v, const float *x, float *y, uint32_t c, uint32_t hw, int relu) {
    uint32_t ch, i;
    for (ch = 0; ch < c; ch++)
        for (i = 0; i < hw; i++) {
            size_t k = (size_t)ch * hw + i;
            y[k] = finish(v, ch, x[k], relu);
        }
}

void dzrt__relu(const float *x, float *y, uint32_t n) {
    uint32_t i;
    for (i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void dzrt__softmax(const float *x, float *y, uint32_t n) {
    float top = x[0], sum = 0.0f;
    uint32_t i;
    for (i = 1; i < n; i++)
        if (x[i] > top) top = x[i];
    for (i = 0; i < n; i++) sum += (y[i] = expf(x[i] - top));
    for (i = 0; i < n; i++) y[i] /= sum;
}
